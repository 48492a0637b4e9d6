@testable import ELIPEval
import ELIPImage
import Foundation
import XCTest

final class BitmapFontTests: XCTestCase {
    /// Rows of a glyph as '#'/'.' strings.
    func art(_ c: Unicode.Scalar) -> [String] {
        (0..<BitmapFont.glyphHeight).map { y in String((0..<BitmapFont.glyphWidth).map { BitmapFont.isSet(c, x: $0, y: y) ? "#" : "." }) }
    }

    func testKnownGlyphPixels() {
        XCTAssertEqual(art("A"), [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#", "....."])
        XCTAssertEqual(art("1"), ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.", "....."])
        XCTAssertEqual(art("g"), [".....", ".....", ".####", "#...#", "#...#", ".####", "....#", ".###."])  // descender
        XCTAssertEqual(art(" "), [String](repeating: ".....", count: 8))
        XCTAssertFalse(BitmapFont.isSet("A", x: 5, y: 0))
        XCTAssertFalse(BitmapFont.isSet("A", x: -1, y: 3))
        XCTAssertEqual(BitmapFont.rows("é"), BitmapFont.rows("?"))  // outside ASCII: '?'
        XCTAssertEqual(BitmapFont.rows("\u{7F}"), BitmapFont.rows("?"))
    }

    /// Every printable glyph has ink, fits the 5-column box, and no two glyphs look alike.
    func testEveryPrintableGlyphIsDistinct() {
        XCTAssertEqual(BitmapFont.table.count, 95)
        var seen: [[UInt8]: Unicode.Scalar] = [:]
        for v in 33...126 {
            let s = Unicode.Scalar(UInt8(v))
            let rows = BitmapFont.rows(s)
            XCTAssertEqual(rows.count, 8)
            XCTAssertTrue(rows.contains { $0 != 0 }, "\(s) is blank")
            XCTAssertTrue(rows.allSatisfy { $0 < 32 }, "\(s) is wider than 5 pixels")
            if let other = seen[rows] { XCTFail("\(s) looks like \(other)") }
            seen[rows] = s
        }
    }

    func testDrawTextPutsGlyphPixelsAtScale() throws {
        var img = try RGBImage(width: 40, height: 20)
        let w = img.drawText("A1", x: 2, y: 1, scale: 2, color: .white)
        XCTAssertEqual(w, BitmapFont.width(of: "A1", scale: 2))
        XCTAssertEqual(w, (2 * 6 - 1) * 2)
        // 'A' row 0 is .###. -> pixels x = 2 + 2..<2 + 8 at y = 1, 2 are set; x = 2, 3 are not.
        XCTAssertEqual(img.pixel(x: 2 + 2, y: 1), .white)
        XCTAssertEqual(img.pixel(x: 2 + 7, y: 2), .white)
        XCTAssertEqual(img.pixel(x: 2, y: 1), .black)
        XCTAssertEqual(img.pixel(x: 2 + 8, y: 1), .black)
        // Row 3 of 'A' is all set: y = 1 + 6, 7.
        for x in 2..<12 { XCTAssertEqual(img.pixel(x: x, y: 7), .white) }
        // '1' starts 12 pixels later; its row 0 is ..#.. -> x = 14 + 4, 5.
        XCTAssertEqual(img.pixel(x: 14 + 4, y: 1), .white)
        XCTAssertEqual(img.pixel(x: 14 + 3, y: 1), .black)
        // Clipped text neither traps nor writes outside.
        img.drawText("clipped", x: 30, y: 15, scale: 3, color: .white)
        img.drawText("neg", x: -20, y: -5, color: .white)
    }

    func testWrapAndWidth() {
        XCTAssertEqual(BitmapFont.width(of: "", scale: 2), 0)
        XCTAssertEqual(BitmapFont.width(of: "abc", scale: 1), 17)
        // 10 characters fit in (10 * 6 - 1) * 2 = 118 pixels.
        XCTAssertEqual(BitmapFont.wrap("aaaa bbbb cccc", maxWidth: 118, scale: 2), ["aaaa bbbb", "cccc"])
        XCTAssertEqual(BitmapFont.wrap("abcdefghijklmnop", maxWidth: 59, scale: 1), ["abcdefghij", "klmnop"])
        XCTAssertEqual(BitmapFont.wrap("", maxWidth: 100), [""])
        for line in BitmapFont.wrap("a caption that is long enough to need several lines of text", maxWidth: 150, scale: 2) {
            XCTAssertLessThanOrEqual(BitmapFont.width(of: line, scale: 2), 150)
        }
    }
}

final class ChartTests: XCTestCase {
    func testNiceTicks() {
        XCTAssertEqual(ChartAxis.niceStep(lo: 0, hi: 10, count: 5), 2)
        XCTAssertEqual(ChartAxis.ticks(lo: 0, hi: 10, count: 5), [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(ChartAxis.ticks(lo: 0.3, hi: 1.2, count: 4), [0.5, 0.75, 1.0])
        XCTAssertEqual(ChartAxis.ticks(lo: 5, hi: 6, count: 5, minimumStep: 1), [5, 6])
        XCTAssertEqual(ChartAxis.ticks(lo: 3, hi: 3), [3])
        XCTAssertEqual(ChartAxis.ticks(lo: .nan, hi: 3), [])
        let lr = ChartAxis.ticks(lo: 1e-5, hi: 1e-4, count: 5)
        XCTAssertEqual(lr.count, 5)
        XCTAssertEqual(lr.first!, 2e-5, accuracy: 1e-12)
    }

    func testTickLabels() {
        XCTAssertEqual(ChartAxis.label(0, step: 1), "0")
        XCTAssertEqual(ChartAxis.label(15, step: 5), "15")
        XCTAssertEqual(ChartAxis.label(0.75, step: 0.25), "0.75")
        XCTAssertEqual(ChartAxis.label(1.5, step: 0.5), "1.5")
        XCTAssertEqual(ChartAxis.label(2e-5, step: 2e-5), "2e-5")
        XCTAssertEqual(ChartAxis.label(1e-4, step: 2e-5), "1.0e-4")
        XCTAssertEqual(ChartAxis.label(1.05e-4, step: 5e-6), "1.05e-4")
        XCTAssertEqual(ChartAxis.label(3e6, step: 1e6), "3e6")
        // One style per axis.
        XCTAssertEqual(ChartAxis.labels([2.5e-4, 5e-4, 7.5e-4, 1e-3], step: 2.5e-4), ["2.5e-4", "5.0e-4", "7.5e-4", "1.00e-3"])
        XCTAssertEqual(ChartAxis.labels([0, 0.5, 1], step: 0.5), ["0", "0.5", "1.0"])
    }

    func testHeatColoursGetBrighter() {
        func lum(_ c: RGB) -> Double { 0.299 * Double(c.r) + 0.587 * Double(c.g) + 0.114 * Double(c.b) }
        var last = -1.0
        for i in 0...100 {
            let l = lum(ColorMap.heat(Double(i) / 100))
            XCTAssertGreaterThan(l, last - 1e-9, "at \(i)")
            last = l
        }
        XCTAssertEqual(ColorMap.heat(0), RGB(0, 0, 4))
        XCTAssertEqual(ColorMap.heat(1), RGB(252, 255, 164))
        XCTAssertEqual(ColorMap.heat(-3), ColorMap.heat(0))
        XCTAssertEqual(ColorMap.heat(.nan), ColorMap.heat(0))
        XCTAssertEqual(ColorMap.normalize([2, 4, 3]), [0, 1, 0.5])
        XCTAssertEqual(ColorMap.normalize([1, 1]), [0.5, 0.5])
        XCTAssertEqual(ColorMap.normalize([1, .nan, 3]), [0, 0, 1])
    }

    func testLineChartDrawsSeriesAxesAndLegend() throws {
        let red = RGB(220, 0, 0), blue = RGB(0, 0, 220)
        let xs = (0..<20).map(Double.init)
        var chart = LineChart(title: "loss", xLabel: "step", series: [
            ChartSeries(name: "up", color: red, xs: xs, ys: xs.map { $0 * $0 }),
            ChartSeries(name: "gap", color: blue, xs: xs, ys: xs.map { $0 == 7 ? .nan : 100 - $0 }),
        ])
        chart.integerX = true
        var img = try RGBImage(width: 600, height: 300)
        chart.render(into: &img, x: 0, y: 0, width: 600, height: 300)
        let area = chart.plotArea(x: 0, y: 0, width: 600, height: 300)
        var count: [RGB: Int] = [:]
        for y in 0..<img.height { for x in 0..<img.width { count[img.pixel(x: x, y: y)!, default: 0] += 1 } }
        XCTAssertGreaterThan(count[red] ?? 0, 400)
        XCTAssertGreaterThan(count[blue] ?? 0, 400)
        // The first point of "up" (0, 0) is the bottom-left of the data range.
        XCTAssertEqual(chart.ranges()!.x, 0...19)
        // The axes frame the plot area.
        XCTAssertEqual(img.pixel(x: area.x, y: area.y + area.height / 2), chart.axisColor)
        // Legend right of the plot area with the series colours.
        let legend = (area.y..<(area.y + 60)).flatMap { y in ((area.x + area.width)..<600).compactMap { img.pixel(x: $0, y: y) } }
        XCTAssertTrue(legend.contains(red) && legend.contains(blue))
        // No data: a message, no trap.
        var empty = try RGBImage(width: 200, height: 120)
        LineChart(title: "t", xLabel: "x", series: [ChartSeries(name: "a", color: red, xs: [1], ys: [.nan])])
            .render(into: &empty, x: 0, y: 0, width: 200, height: 120)
        // A single point is drawn as a dot.
        var one = try RGBImage(width: 300, height: 200)
        LineChart(title: "t", xLabel: "x", series: [ChartSeries(name: "a", color: red, xs: [5], ys: [2])])
            .render(into: &one, x: 0, y: 0, width: 300, height: 200)
        XCTAssertTrue(one.pixels.withUnsafeBufferPointer { p in stride(from: 0, to: p.count, by: 3).contains { p[$0] == 220 && p[$0 + 1] == 0 } })
    }

    func testLinesAreClipped() throws {
        var img = try RGBImage(width: 10, height: 10)
        img.drawLine(x0: -100, y0: -100, x1: 100, y1: 100, color: .white, thickness: 3)
        XCTAssertEqual(img.pixel(x: 5, y: 5), .white)
        img.drawLine(x0: 0, y0: 0, x1: .infinity, y1: 0, color: .white)
        img.drawLine(x0: 0, y0: 0, x1: 1e12, y1: 0, color: .white)
    }
}

import ELIPImage
import Foundation

// A tiny line-chart renderer on RGBImage (axes, tick labels, legend, title in the bitmap font),
// line drawing, and a heat-map colour scale.

extension RGBImage {
    /// A straight line from (x0, y0) to (x1, y1), `thickness` pixels wide (square pen), clipped.
    public mutating func drawLine(x0: Double, y0: Double, x1: Double, y1: Double, color: RGB, thickness: Int = 1) {
        guard x0.isFinite, y0.isFinite, x1.isFinite, y1.isFinite else { return }
        let t = max(1, thickness), half = (t - 1) / 2
        let steps = Int(max(abs(x1 - x0), abs(y1 - y0)).rounded(.up))
        guard steps < 1 << 20 else { return }  // absurd coordinates: draw nothing
        for i in 0...max(steps, 0) {
            let f = steps == 0 ? 0 : Double(i) / Double(steps)
            let x = Int((x0 + (x1 - x0) * f).rounded()), y = Int((y0 + (y1 - y0) * f).rounded())
            fill(x: x - half, y: y - half, width: t, height: t, with: color)
        }
    }

    /// The outline of a rectangle, 1 pixel wide.
    public mutating func strokeRect(x: Int, y: Int, width w: Int, height h: Int, color: RGB) {
        fill(x: x, y: y, width: w, height: 1, with: color)
        fill(x: x, y: y + h - 1, width: w, height: 1, with: color)
        fill(x: x, y: y, width: 1, height: h, with: color)
        fill(x: x + w - 1, y: y, width: 1, height: h, with: color)
    }

    /// Pastes `other` with its top-left corner at (x, y), each pixel a `scale` x `scale` block
    /// (nearest neighbour), clipped to this image.
    public mutating func paste(_ other: RGBImage, x: Int, y: Int, scale: Int = 1) {
        let s = max(1, scale)
        for oy in 0..<other.height {
            for ox in 0..<other.width {
                if let p = other.pixel(x: ox, y: oy) { fill(x: x + ox * s, y: y + oy * s, width: s, height: s, with: p) }
            }
        }
    }
}

/// Colour scales for heat maps.
public enum ColorMap {
    /// Control points of an inferno-like scale (black-purple-red-orange-pale yellow).
    static let inferno: [(Double, Double, Double)] = [
        (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21), (250, 193, 39), (252, 255, 164),
    ]

    /// Colour of t in [0, 1] (clamped; NaN -> 0) on the inferno-like scale: dark for low, bright
    /// for high, luminance increasing monotonically.
    public static func heat(_ t: Double) -> RGB {
        let v = t.isNaN ? 0 : min(max(t, 0), 1)
        let pos = v * Double(inferno.count - 1)
        let i = min(Int(pos), inferno.count - 2), f = pos - Double(i)
        let a = inferno[i], b = inferno[i + 1]
        func mix(_ p: Double, _ q: Double) -> UInt8 { UInt8(max(0, min(255, (p + (q - p) * f).rounded()))) }
        return RGB(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    /// Values mapped linearly to [0, 1] by their min and max (all 0.5 when constant or empty;
    /// non-finite values map to 0).
    public static func normalize(_ values: [Float]) -> [Double] {
        let finite = values.filter { $0.isFinite }
        guard let lo = finite.min(), let hi = finite.max(), hi > lo else { return values.map { _ in 0.5 } }
        return values.map { $0.isFinite ? Double(($0 - lo) / (hi - lo)) : 0 }
    }
}

/// Axis ticks at "nice" values (1, 2, 2.5, 5 x 10^k) and their labels.
public enum ChartAxis {
    /// Tick step giving about `count` intervals over [lo, hi].
    public static func niceStep(lo: Double, hi: Double, count: Int = 5, minimum: Double = 0) -> Double {
        max(minimum, rawNiceStep(lo: lo, hi: hi, count: count))
    }

    static func rawNiceStep(lo: Double, hi: Double, count: Int) -> Double {
        let span = hi - lo
        guard span > 0, span.isFinite else { return 1 }
        let raw = span / Double(max(1, count))
        let mag = pow(10, floor(log10(raw)))
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * mag >= raw { return m * mag }
        return 10 * mag
    }

    /// Ticks k * step within [lo, hi].
    public static func ticks(lo: Double, hi: Double, count: Int = 5, minimumStep: Double = 0) -> [Double] {
        guard lo.isFinite, hi.isFinite, hi >= lo else { return [] }
        if hi == lo { return [lo] }
        let step = niceStep(lo: lo, hi: hi, count: count, minimum: minimumStep)
        var out: [Double] = []
        var k = (lo / step).rounded(.up)
        while k * step <= hi + step * 1e-9, out.count < 100 {
            let v = k * step
            out.append(abs(v) < step * 1e-9 ? 0 : v)
            k += 1
        }
        return out
    }

    /// The leading digits of `v` in [1, 10) (2.5 for 0.025).
    static func mantissa(_ v: Double) -> Double {
        guard v != 0, v.isFinite else { return 0 }
        let m = abs(v) / pow(10, floor(log10(abs(v))))
        return (m * 1e6).rounded() / 1e6
    }

    /// Labels for the ticks of one axis, all in the same style: exponent form when the largest
    /// magnitude is at least 1e6 or below 1e-2 (learning rates), plain decimals otherwise.
    public static func labels(_ ticks: [Double], step: Double) -> [String] {
        let mag = max(ticks.map(abs).max() ?? 0, abs(step))
        let exponent = mag >= 1e6 || mag < 1e-2
        return ticks.map { label($0, step: step, exponent: exponent) }
    }

    /// A short label for a tick value, with as many decimals as `step` needs; exponent form
    /// (e.g. 1e-4, 2.5e-5, 1.2e6) when `exponent` says so, by default for magnitudes of at least
    /// 1e6 or below 1e-3.
    public static func label(_ v: Double, step: Double, exponent: Bool? = nil) -> String {
        if v == 0 { return "0" }
        let mag = max(abs(v), abs(step))
        if exponent ?? (mag >= 1e6 || mag < 1e-3) {
            // Mantissa digits enough to tell ticks `step` apart.
            var e = Int(floor(log10(abs(v))))
            let stepExp = Int(floor(log10(abs(step)))) - (mantissa(step) == 2.5 ? 1 : 0)
            let digits = max(0, min(6, e - stepExp))
            var m = v / pow(10, Double(e))
            let q = pow(10, Double(digits))
            m = (m * q).rounded() / q
            if abs(m) >= 10 { m /= 10; e += 1 }
            return String(format: "%.\(digits)f", m) + "e\(e)"
        }
        let decimals = max(0, min(6, Int(ceil(-log10(step) - 1e-9)) + (mantissa(step) == 2.5 ? 1 : 0)))
        return String(format: "%.\(decimals)f", v)
    }
}

/// One line of a chart; non-finite points break the line.
public struct ChartSeries {
    public var name: String
    public var color: RGB
    public var xs: [Double]
    public var ys: [Double]
    public init(name: String, color: RGB, xs: [Double], ys: [Double]) {
        self.name = name
        self.color = color
        self.xs = xs
        self.ys = ys
    }
}

/// A line chart: title, axes with ticks and labels, series, legend.
public struct LineChart {
    public var title: String
    public var xLabel: String
    public var series: [ChartSeries]
    /// Text scale of title, labels and legend.
    public var textScale = 2
    public var background = RGB(255, 255, 255)
    public var axisColor = RGB(40, 40, 40)
    public var gridColor = RGB(225, 225, 225)
    /// x values are integers (steps): ticks at least 1 apart.
    public var integerX = false
    /// Width kept free right of the plot for the legend (default: the legend's own width), so
    /// stacked charts can share one plot width.
    public var legendWidth: Int?

    public init(title: String, xLabel: String, series: [ChartSeries]) {
        self.title = title
        self.xLabel = xLabel
        self.series = series
    }

    /// Data ranges over the finite points of all series (padded when flat); nil without points.
    public func ranges() -> (x: ClosedRange<Double>, y: ClosedRange<Double>)? {
        var xlo = Double.infinity, xhi = -Double.infinity, ylo = Double.infinity, yhi = -Double.infinity
        for s in series {
            for (x, y) in zip(s.xs, s.ys) where x.isFinite && y.isFinite {
                xlo = min(xlo, x); xhi = max(xhi, x); ylo = min(ylo, y); yhi = max(yhi, y)
            }
        }
        guard xlo <= xhi, ylo <= yhi else { return nil }
        if xhi == xlo { xlo -= 1; xhi += 1 }
        if yhi == ylo {
            let pad = abs(ylo) > 0 ? abs(ylo) * 0.1 : 1
            ylo -= pad; yhi += pad
        } else {
            let pad = (yhi - ylo) * 0.05
            ylo -= pad; yhi += pad
        }
        return (xlo...xhi, ylo...yhi)
    }

    /// Width and height of the legend box (zero without named series).
    public var legendSize: (width: Int, height: Int) {
        let s = textScale
        let named = series.filter { !$0.name.isEmpty }
        guard !named.isEmpty else { return (0, 0) }
        let w = (named.map { BitmapFont.width(of: $0.name, scale: s) }.max() ?? 0) + 6 * s + 10 * s
        return (w, named.count * BitmapFont.lineHeight(scale: s) + 4 * s)
    }

    /// The plot area (inside the axes) for a chart drawn in the given box.
    public func plotArea(x: Int, y: Int, width: Int, height: Int) -> (x: Int, y: Int, width: Int, height: Int) {
        let s = textScale, lh = BitmapFont.lineHeight(scale: s)
        let left = x + 12 * BitmapFont.advance * s / 2 + 8 * s
        let top = y + lh + 6 * s
        let legend = legendWidth ?? legendSize.width
        let right = x + width - max(4 * BitmapFont.advance * s, legend > 0 ? legend + 8 * s : 0)
        let bottom = y + height - 2 * lh - 6 * s
        return (left, top, max(1, right - left), max(1, bottom - top))
    }

    /// Draws the chart into `image` inside the box (x, y, width, height).
    public func render(into image: inout RGBImage, x: Int, y: Int, width: Int, height: Int) {
        let s = textScale, lh = BitmapFont.lineHeight(scale: s)
        image.fill(x: x, y: y, width: width, height: height, with: background)
        image.drawText(title, x: x + (width - BitmapFont.width(of: title, scale: s)) / 2, y: y + 2 * s, scale: s, color: axisColor)
        let area = plotArea(x: x, y: y, width: width, height: height)
        guard let r = ranges() else {
            let msg = "no data"
            image.drawText(msg, x: area.x + (area.width - BitmapFont.width(of: msg, scale: s)) / 2,
                           y: area.y + area.height / 2, scale: s, color: axisColor)
            image.strokeRect(x: area.x, y: area.y, width: area.width, height: area.height, color: axisColor)
            return
        }
        func px(_ v: Double) -> Double { Double(area.x) + (v - r.x.lowerBound) / (r.x.upperBound - r.x.lowerBound) * Double(area.width - 1) }
        func py(_ v: Double) -> Double { Double(area.y + area.height - 1) - (v - r.y.lowerBound) / (r.y.upperBound - r.y.lowerBound) * Double(area.height - 1) }

        // Grid, ticks and labels.
        let yTicks = ChartAxis.ticks(lo: r.y.lowerBound, hi: r.y.upperBound, count: max(2, area.height / (3 * lh)))
        let yStep = ChartAxis.niceStep(lo: r.y.lowerBound, hi: r.y.upperBound, count: max(2, area.height / (3 * lh)))
        for (v, label) in zip(yTicks, ChartAxis.labels(yTicks, step: yStep)) {
            let yy = Int(py(v).rounded())
            image.fill(x: area.x, y: yy, width: area.width, height: 1, with: gridColor)
            image.fill(x: area.x - 4 * s, y: yy, width: 4 * s, height: 1, with: axisColor)
            image.drawText(label, x: area.x - 6 * s - BitmapFont.width(of: label, scale: s), y: yy - 7 * s / 2, scale: s, color: axisColor)
        }
        let maxXLabel = max(BitmapFont.width(of: "0000000", scale: s), 1)
        let xCount = max(2, min(10, area.width / (maxXLabel + 8 * s)))
        let minX = integerX ? 1.0 : 0
        let xTicks = ChartAxis.ticks(lo: r.x.lowerBound, hi: r.x.upperBound, count: xCount, minimumStep: minX)
        let xStep = ChartAxis.niceStep(lo: r.x.lowerBound, hi: r.x.upperBound, count: xCount, minimum: minX)
        for (v, label) in zip(xTicks, ChartAxis.labels(xTicks, step: xStep)) {
            let xx = Int(px(v).rounded())
            image.fill(x: xx, y: area.y, width: 1, height: area.height, with: gridColor)
            image.fill(x: xx, y: area.y + area.height, width: 1, height: 4 * s, with: axisColor)
            image.drawText(label, x: xx - BitmapFont.width(of: label, scale: s) / 2, y: area.y + area.height + 6 * s, scale: s, color: axisColor)
        }
        image.drawText(xLabel, x: area.x + (area.width - BitmapFont.width(of: xLabel, scale: s)) / 2,
                       y: area.y + area.height + 6 * s + lh, scale: s, color: axisColor)
        image.strokeRect(x: area.x, y: area.y, width: area.width, height: area.height, color: axisColor)

        // Lines (a single finite point is drawn as a dot).
        for ser in series {
            var last: (Double, Double)?
            let pts = zip(ser.xs, ser.ys).map { ($0, $1) }
            for (i, (x, y)) in pts.enumerated() {
                guard x.isFinite, y.isFinite else { last = nil; continue }
                let p = (px(x), py(y))
                if let l = last {
                    image.drawLine(x0: l.0, y0: l.1, x1: p.0, y1: p.1, color: ser.color, thickness: 2)
                } else {
                    let nextFinite = i + 1 < pts.count && pts[i + 1].0.isFinite && pts[i + 1].1.isFinite
                    if !nextFinite { image.fill(x: Int(p.0) - 2, y: Int(p.1) - 2, width: 5, height: 5, with: ser.color) }
                }
                last = p
            }
        }

        // Legend right of the plot area, at its top.
        let named = series.filter { !$0.name.isEmpty }
        guard !named.isEmpty else { return }
        let swatch = 6 * s, rowH = lh
        let (legendW, legendH) = legendSize
        let lx = area.x + area.width + 8 * s, ly = area.y
        image.strokeRect(x: lx, y: ly, width: legendW, height: legendH, color: gridColor)
        for (i, ser) in named.enumerated() {
            let ry = ly + 3 * s + i * rowH
            image.fill(x: lx + 3 * s, y: ry + s, width: swatch, height: swatch, with: ser.color)
            image.drawText(ser.name, x: lx + 6 * s + swatch, y: ry, scale: s, color: axisColor)
        }
    }
}

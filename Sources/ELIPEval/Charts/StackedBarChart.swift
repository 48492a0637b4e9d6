import ELIPImage

/// Vertical bars of shares stacked to 100% (e.g. a step's FLOPs by module), one bar per label,
/// with percentages written in segments tall enough to hold them, and a legend.
public struct StackedBarChart {
    public var title: String
    /// One entry per bar: its label (under the bar) and the shares of each segment (summing to ~1).
    public var bars: [(label: String, shares: [Double])]
    /// Segment names and colours, bottom first.
    public var segments: [(name: String, color: RGB)]
    public var textScale = 2
    public var background = RGB(255, 255, 255)
    public var axisColor = RGB(40, 40, 40)
    public var gridColor = RGB(225, 225, 225)

    public init(title: String, bars: [(label: String, shares: [Double])], segments: [(name: String, color: RGB)]) {
        self.title = title
        self.bars = bars
        self.segments = segments
    }

    /// The chart as an image of at least `width` x `height` (widened to fit the bar labels).
    public func render(width: Int = 900, height: Int = 520) throws -> RGBImage {
        let s = textScale, lh = BitmapFont.lineHeight(scale: s)
        let labelLines = bars.map { $0.label.split(separator: "\n").map(String.init) }
        let labelRows = labelLines.map(\.count).max() ?? 1
        let widestLabel = labelLines.flatMap { $0 }.map { BitmapFont.width(of: $0, scale: s) }.max() ?? 0
        let legendW = (segments.map { BitmapFont.width(of: $0.name, scale: s) }.max() ?? 0) + 16 * s
        let left = BitmapFont.width(of: "100%", scale: s) + 10 * s
        let slot = max(widestLabel + 8 * s, 40 * s)
        let w = max(width, left + slot * bars.count + legendW + 20 * s)
        var image = try RGBImage(width: w, height: height, fill: background)
        image.drawText(title, x: (w - BitmapFont.width(of: title, scale: s)) / 2, y: 2 * s, scale: s, color: axisColor)
        let top = lh + 8 * s, bottom = height - labelRows * lh - 8 * s
        let plotH = max(1, bottom - top), plotW = slot * bars.count
        for pct in stride(from: 0, through: 100, by: 20) {
            let y = bottom - plotH * pct / 100
            image.fill(x: left, y: y, width: plotW, height: 1, with: gridColor)
            let label = "\(pct)%"
            image.drawText(label, x: left - 4 * s - BitmapFont.width(of: label, scale: s), y: y - 7 * s / 2, scale: s, color: axisColor)
        }
        for (i, bar) in bars.enumerated() {
            let barW = slot * 2 / 3, x = left + i * slot + (slot - barW) / 2
            var y = Double(bottom)
            for (j, share) in bar.shares.enumerated() where j < segments.count && share.isFinite && share > 0 {
                let h = share * Double(plotH)
                let y0 = Int((y - h).rounded()), y1 = Int(y.rounded())
                image.fill(x: x, y: y0, width: barW, height: max(0, y1 - y0), with: segments[j].color)
                let text = "\(Int((100 * share).rounded()))%"
                if y1 - y0 >= lh, BitmapFont.width(of: text, scale: s) <= barW {
                    image.drawText(text, x: x + (barW - BitmapFont.width(of: text, scale: s)) / 2, y: (y0 + y1) / 2 - 7 * s / 2,
                                   scale: s, color: RGB(255, 255, 255))
                }
                y -= h
            }
            for (k, line) in labelLines[i].enumerated() {
                image.drawText(line, x: left + i * slot + (slot - BitmapFont.width(of: line, scale: s)) / 2, y: bottom + 4 * s + k * lh,
                               scale: s, color: axisColor)
            }
        }
        image.fill(x: left, y: bottom, width: plotW, height: 1, with: axisColor)
        image.fill(x: left, y: top, width: 1, height: plotH, with: axisColor)
        // Legend, top segment first (as the bars read from top to bottom).
        let lx = left + plotW + 12 * s
        for (k, seg) in segments.reversed().enumerated() {
            let ry = top + k * lh
            image.fill(x: lx, y: ry + s, width: 6 * s, height: 6 * s, with: seg.color)
            image.drawText(seg.name, x: lx + 9 * s, y: ry, scale: s, color: axisColor)
        }
        return image
    }
}

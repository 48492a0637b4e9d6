import ELIPImage
import ELIPTrain
import Foundation

/// The picture `elip plot` writes from a run's metrics.jsonl: loss parts and total, learning
/// rate and throughput over steps, as three line charts stacked vertically.
public enum TrainingPlot {
    /// Reads metrics.jsonl, tolerating damage: lines that do not decode (a torn last line after a
    /// crash, say) are skipped and reported in `warnings`. Records are sorted by step; when a
    /// step appears twice (a run resumed from an earlier checkpoint) the later line wins.
    public static func readMetrics(_ url: URL) throws -> (records: [MetricsRecord], warnings: [String]) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainError.data("\(url.path): cannot read (\(error.localizedDescription))")
        }
        let decoder = JSONDecoder()
        var byStep: [Int: MetricsRecord] = [:]
        var warnings: [String] = []
        for (n, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            do {
                let r = try decoder.decode(MetricsRecord.self, from: Data(line))
                byStep[r.step] = r
            } catch {
                warnings.append("\(url.path):\(n + 1): skipped a line that is not a metrics record")
            }
        }
        return (byStep.keys.sorted().map { byStep[$0]! }, warnings)
    }

    public static let colors = (total: RGB(20, 20, 20), lr: RGB(148, 103, 189), speed: RGB(214, 39, 40))

    /// Colours of the named loss curves, in name order (matplotlib's tab10 without black).
    public static let lossPalette = [RGB(31, 119, 180), RGB(255, 127, 14), RGB(44, 160, 44), RGB(214, 39, 40),
                                     RGB(148, 103, 189), RGB(140, 86, 75), RGB(227, 119, 194), RGB(188, 189, 34), RGB(23, 190, 207)]

    /// The three charts for `records`: the total and one curve per loss name, the learning rate,
    /// the throughput (skipped steps are left out of the loss lines).
    public static func charts(_ records: [MetricsRecord]) -> [LineChart] {
        let steps = records.map { Double($0.step) }
        func loss(_ f: (MetricsRecord) -> Double) -> [Double] { records.map { $0.skipped ? .nan : f($0) } }
        let names = Set(records.flatMap(\.losses.keys)).sorted()
        var series = [ChartSeries(name: "total", color: colors.total, xs: steps, ys: loss(\.totalLoss))]
        for (i, name) in names.enumerated() {
            series.append(ChartSeries(name: name, color: lossPalette[i % lossPalette.count], xs: steps, ys: loss { $0.losses[name] ?? .nan }))
        }
        let losses = LineChart(title: "loss", xLabel: "step", series: series)
        let lr = LineChart(title: "learning rate", xLabel: "step", series: [
            ChartSeries(name: "lr", color: colors.lr, xs: steps, ys: records.map(\.lr)),
        ])
        let speed = LineChart(title: "throughput (images/s, all ranks)", xLabel: "step", series: [
            ChartSeries(name: "images/s", color: colors.speed, xs: steps, ys: records.map(\.imagesPerSecond)),
        ])
        var charts = [losses, lr, speed]
        let legend = charts.map(\.legendSize.width).max()
        for i in charts.indices {
            charts[i].integerX = true
            charts[i].legendWidth = legend
        }
        return charts
    }

    /// Renders the charts under a title line.
    public static func render(_ records: [MetricsRecord], title: String, width: Int = 1000, chartHeight: Int = 340) throws -> RGBImage {
        let charts = charts(records)
        let margin = 12, s = 2, lh = BitmapFont.lineHeight(scale: s)
        let titleLines = BitmapFont.wrap(title, maxWidth: width - 2 * margin, scale: s)
        let top = margin + titleLines.count * lh + margin / 2
        var image = try RGBImage(width: width, height: top + charts.count * (chartHeight + margin), fill: RGB(255, 255, 255))
        image.drawLines(titleLines, x: margin, y: margin, scale: s, color: RGB(20, 20, 20))
        for (i, chart) in charts.enumerated() {
            chart.render(into: &image, x: margin, y: top + i * (chartHeight + margin), width: width - 2 * margin, height: chartHeight)
        }
        return image
    }
}

import ELIPImage

/// The picture of `elip analyze-tokens`: [CLS] attention entropy and patch-token cosine
/// similarity over depth, one curve per model, in two stacked line charts; with `visionOnlyKL`
/// (AttentionDiscrepancy's curve) a third chart of it below.
public enum TokenRedundancyChart {
    public static func render(_ models: [(name: String, curves: TokenRedundancy)], visionOnlyKL: [Double]? = nil, title: String,
                              width: Int = 900, chartHeight: Int = 320) throws -> RGBImage {
        let colors = [RGB(200, 50, 50), RGB(50, 90, 200), RGB(40, 150, 60)]
        func series(_ values: (TokenRedundancy) -> [Double]) -> [ChartSeries] {
            models.enumerated().map { i, m in
                let ys = values(m.curves)
                return ChartSeries(name: m.name, color: colors[i % colors.count], xs: ys.indices.map(Double.init), ys: ys)
            }
        }
        var charts = [LineChart(title: "[CLS]-to-patch attention entropy / log(patches)", xLabel: "ViT layer", series: series(\.normalizedEntropy)),
                      LineChart(title: "mean cosine similarity of patch tokens", xLabel: "ViT layer", series: series(\.patchCosine))]
        if let kl = visionOnlyKL {
            charts.append(LineChart(title: "KL(model || vision-only) of the [CLS]-to-patch attention (nats)", xLabel: "ViT layer",
                                    series: [ChartSeries(name: "model", color: RGB(120, 60, 160), xs: kl.indices.map(Double.init), ys: kl)]))
        }
        for i in charts.indices { charts[i].integerX = true }
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

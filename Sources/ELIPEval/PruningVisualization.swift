import ELIPImage
import ELIPModel
import ELIPNN
import ELIPPruning
import ELIPTrain
import ELIPTensor
import Foundation

/// Which original patches ELIP keeps at each pruning stage, and the fused query's attention at
/// the first stage, for one image-caption pair.
public struct PruningTrace: Equatable {
    /// Patch grid side (patches per row) and N0 = grid * grid.
    public let grid: Int
    public var patchCount: Int { grid * grid }
    /// Per stage: the ORIGINAL patches (row-major index in the grid) that survive up to and
    /// including that stage, ascending.
    public let survivingPatches: [[Int]]
    /// Per stage: whether the stage kept the previous stage's merged token (always false at the
    /// first stage, which has none).
    public let mergedTokenKept: [Bool]
    /// Per stage: tokens kept (K_j, the merged token included when kept).
    public let keptCounts: [Int]
    /// Fused-query attention to each original patch at the first stage (N0 values; what the
    /// first selection ranks, and the merge weights of the tokens it drops).
    public let firstStageScores: [Float]
    /// ViT layer where each stage begins (0-based).
    public let beginLayers: [Int]

    public init(grid: Int, survivingPatches: [[Int]], mergedTokenKept: [Bool], keptCounts: [Int],
                firstStageScores: [Float], beginLayers: [Int]) {
        self.grid = grid
        self.survivingPatches = survivingPatches
        self.mergedTokenKept = mergedTokenKept
        self.keptCounts = keptCounts
        self.firstStageScores = firstStageScores
        self.beginLayers = beginLayers
    }

    /// Maps each stage's kept positions back to original patches.
    ///
    /// `keptIndices[j]` are positions among stage j's non-[CLS] input tokens (as `VisionOutput`
    /// reports them for one sample). Stage 0's input tokens are the N0 patches in order; stage
    /// j's input is `[kept tokens of stage j-1 in order, merged token]`, so position `T - 2` of a
    /// later stage (the last one) is the previous merged token, which is not an original patch.
    /// With `merged: false` (`img_prune: {merge: false}`) there is no merged token: stage j's
    /// input is the kept tokens of stage j-1 only.
    public static func survivingPatches(keptIndices: [[Int]], patchCount: Int, merged mergesPruned: Bool = true) throws -> (patches: [[Int]], mergedKept: [Bool]) {
        var origins: [Int?] = Array(0..<patchCount)  // what each non-[CLS] position holds
        var patches: [[Int]] = [], merged: [Bool] = []
        for (j, kept) in keptIndices.enumerated() {
            guard kept == kept.sorted(), Set(kept).count == kept.count else {
                throw RetrievalError("stage \(j + 1): kept positions must be distinct and ascending, got \(kept.prefix(10))...")
            }
            if let bad = kept.first(where: { $0 < 0 || $0 >= origins.count }) {
                throw RetrievalError("stage \(j + 1): kept position \(bad) outside the \(origins.count) tokens of the stage")
            }
            patches.append(kept.compactMap { origins[$0] })
            merged.append(kept.contains { origins[$0] == nil })
            origins = kept.map { origins[$0] } + (mergesPruned ? [nil] : [])
        }
        return (patches, merged)
    }

    /// Runs the text encoder and the pruned vision encoder on one image ([1, 3, res, res],
    /// normalised) and its caption, and records what each stage keeps. Throws when the model
    /// prunes nothing. `scoring` overrides the config's scoring mode (to compare look-ahead with
    /// inline).
    public static func trace(model: any TextGuidedPruningModel, image: Tensor, text: TextBatch,
                             scoring: PruneScoring? = nil) throws -> PruningTrace {
        guard var schedule = model.pruning else {
            throw TrainError.config("the model's config has no pruning schedule (img_prune): nothing to visualize")
        }
        guard image.shape.first == 1, text.batch == 1 else {
            throw RetrievalError("trace takes one image and one caption (got \(image.shape.first ?? 0) and \(text.batch))")
        }
        if let scoring { schedule.scoring = scoring }
        return try Autograd.noGrad {
            let pruning = try model.pruning(guidedBy: text, schedule: schedule)
            let vit = model.prunableVisionEncoder
            let out = try vit.encode(image, pruning: pruning)
            let kept = out.keptIndices.map { $0.first ?? [] }
            // Tokens entering the first stage, to score them as the selection did.
            var x = try vit.embed(image)
            for i in 0..<schedule.beginLayer[0] { x = try vit.runBlock(i, x) }
            let scores = try pruning.scores(0, tokens: x, encoder: vit)
            let patchCount = vit.patchGrid * vit.patchGrid
            let mapped = try survivingPatches(keptIndices: kept, patchCount: patchCount, merged: schedule.merge)
            return PruningTrace(grid: vit.patchGrid, survivingPatches: mapped.patches,
                                mergedTokenKept: mapped.mergedKept, keptCounts: kept.map(\.count),
                                firstStageScores: scores, beginLayers: schedule.beginLayer)
        }
    }
}

/// The picture `elip visualize` writes: a title, then one panel per pruning stage (kept patches
/// in their colours, merged ones dimmed), the input image and a heat map of the first stage's
/// fused-query attention, each labelled.
public enum PruningPicture {
    public static let background = RGB(255, 255, 255)
    public static let ink = RGB(30, 30, 30)
    /// Factor applied to the colours of merged (pruned) patches.
    public static let dimFactor = 0.25
    /// Outline between kept and merged patches (so kept dark objects stay visible).
    public static let outline = RGB(0, 220, 255)

    /// Integer upscale so a panel is at least `minimum` pixels wide.
    public static func panelScale(imageRes: Int, minimum: Int = 256) -> Int {
        max(1, (minimum + imageRes - 1) / max(1, imageRes))
    }

    /// The image with patches outside `kept` dimmed (patch p covers rows (p / grid) * size ..<
    /// +size and columns (p % grid) * size ..< +size).
    public static func keptPanel(_ image: RGBImage, kept: Set<Int>, grid: Int) -> RGBImage {
        var out = image
        let size = max(1, image.width / max(1, grid))
        for y in 0..<image.height {
            for x in 0..<image.width {
                let p = min(y / size, grid - 1) * grid + min(x / size, grid - 1)
                if kept.contains(p) { continue }
                guard let c = image.pixel(x: x, y: y) else { continue }
                out.setPixel(x: x, y: y, dim(c))
            }
        }
        return out
    }

    static func dim(_ c: RGB) -> RGB {
        // Darken and pull towards grey so dimmed colours read as "off".
        let l = 0.299 * Double(c.r) + 0.587 * Double(c.g) + 0.114 * Double(c.b)
        func f(_ v: UInt8) -> UInt8 { UInt8(max(0, min(255, (0.6 * l + 0.4 * Double(v)) * dimFactor))) }
        return RGB(f(c.r), f(c.g), f(c.b))
    }

    /// Draws the borders between kept and merged patches of a panel shown at (x, y) with
    /// `panelSize` pixels, on the kept side, `width` pixels wide.
    public static func outlineKept(_ kept: Set<Int>, grid: Int, in image: inout RGBImage, x: Int, y: Int, panelSize: Int, width: Int = 2) {
        let cell = panelSize / max(1, grid)
        for p in kept where p >= 0 && p < grid * grid {
            let r = p / grid, c = p % grid
            let px = x + c * cell, py = y + r * cell
            if r > 0, !kept.contains(p - grid) { image.fill(x: px, y: py, width: cell, height: width, with: outline) }
            if r < grid - 1, !kept.contains(p + grid) { image.fill(x: px, y: py + cell - width, width: cell, height: width, with: outline) }
            if c > 0, !kept.contains(p - 1) { image.fill(x: px, y: py, width: width, height: cell, with: outline) }
            if c < grid - 1, !kept.contains(p + 1) { image.fill(x: px + cell - width, y: py, width: width, height: cell, with: outline) }
        }
    }

    /// Heat map of per-patch scores (min-max normalised) blended over the image's grey levels:
    /// 70% colour scale, 30% image.
    public static func heatPanel(_ image: RGBImage, scores: [Float], grid: Int) -> RGBImage {
        var out = image
        let t = ColorMap.normalize(scores)
        let size = max(1, image.width / max(1, grid))
        for y in 0..<image.height {
            for x in 0..<image.width {
                let p = min(y / size, grid - 1) * grid + min(x / size, grid - 1)
                guard p < t.count, let c = image.pixel(x: x, y: y) else { continue }
                let h = ColorMap.heat(t[p])
                let l = 0.299 * Double(c.r) + 0.587 * Double(c.g) + 0.114 * Double(c.b)
                func mix(_ v: UInt8) -> UInt8 { UInt8(max(0, min(255, 0.7 * Double(v) + 0.3 * l))) }
                out.setPixel(x: x, y: y, RGB(mix(h.r), mix(h.g), mix(h.b)))
            }
        }
        return out
    }

    /// Panel labels (one or two lines each), in panel order: input, stages, heat map.
    public static func labels(_ trace: PruningTrace) -> [[String]] {
        var out: [[String]] = [["input", "\(trace.patchCount) patches"]]
        for (j, patches) in trace.survivingPatches.enumerated() {
            let second = trace.mergedTokenKept[j] ? "kept + merged tok" : "kept (layer \(trace.beginLayers[j]))"
            out.append(["stage \(j + 1): \(patches.count)/\(trace.patchCount)", second])
        }
        out.append(["query attention", "stage 1 (layer \(trace.beginLayers.first ?? 0))"])
        return out
    }

    /// Geometry of the picture: panel size and positions, title lines.
    public struct Layout: Equatable {
        public let width: Int, height: Int
        public let panelSize: Int
        /// Top-left corners of the panels (input, stages..., heat map).
        public let panels: [(x: Int, y: Int)]
        public let titleLines: [String]
        public let titleY: Int
        public let textScale: Int
        public static func == (a: Layout, b: Layout) -> Bool {
            a.width == b.width && a.height == b.height && a.panelSize == b.panelSize && a.titleLines == b.titleLines
                && a.panels.map { [$0.x, $0.y] } == b.panels.map { [$0.x, $0.y] }
        }
    }

    /// Panels in one row, `margin` around and between them; the title (wrapped) above, two
    /// label lines under each panel, a legend line and the colour bar under the last panel.
    public static func layout(imageRes: Int, stages: Int, title: String, textScale s: Int = 2, margin: Int = 16) -> Layout {
        let panelSize = imageRes * panelScale(imageRes: imageRes)
        let count = stages + 2
        let width = margin + count * (panelSize + margin)
        let lh = BitmapFont.lineHeight(scale: s)
        let titleLines = BitmapFont.wrap(title, maxWidth: width - 2 * margin, scale: s)
        let top = margin + titleLines.count * lh + margin / 2
        let panels = (0..<count).map { (x: margin + $0 * (panelSize + margin), y: top) }
        // Under the panels: 2 label lines, the colour bar (10 px + its labels) and a legend line.
        let height = top + panelSize + margin / 2 + 2 * lh + margin / 2 + 10 * s / 2 + lh + margin / 2 + lh + margin
        return Layout(width: width, height: height, panelSize: panelSize, panels: panels,
                      titleLines: titleLines, titleY: margin, textScale: s)
    }

    /// Renders the picture. `image` is the eval-transformed image (res x res).
    public static func render(image: RGBImage, trace: PruningTrace, title: String) throws -> RGBImage {
        guard image.width == image.height, image.width > 0 else {
            throw RetrievalError("the picture needs a square image, got \(image.width)x\(image.height)")
        }
        guard trace.firstStageScores.count == trace.patchCount else {
            throw RetrievalError("\(trace.firstStageScores.count) first-stage scores for \(trace.patchCount) patches")
        }
        let l = layout(imageRes: image.width, stages: trace.survivingPatches.count, title: title)
        let s = l.textScale, lh = BitmapFont.lineHeight(scale: s), scale = panelScale(imageRes: image.width)
        var out = try RGBImage(width: l.width, height: l.height, fill: background)
        out.drawLines(l.titleLines, x: l.panels[0].x, y: l.titleY, scale: s, color: ink)
        var panels = [image]
        for kept in trace.survivingPatches { panels.append(keptPanel(image, kept: Set(kept), grid: trace.grid)) }
        panels.append(heatPanel(image, scores: trace.firstStageScores, grid: trace.grid))
        let labels = labels(trace)
        for (k, panel) in panels.enumerated() {
            let p = l.panels[k]
            out.paste(panel, x: p.x, y: p.y, scale: scale)
            if k >= 1 && k <= trace.survivingPatches.count {
                outlineKept(Set(trace.survivingPatches[k - 1]), grid: trace.grid, in: &out, x: p.x, y: p.y, panelSize: l.panelSize)
            }
            out.strokeRect(x: p.x - 1, y: p.y - 1, width: l.panelSize + 2, height: l.panelSize + 2, color: RGB(160, 160, 160))
            out.drawLines(labels[k], x: p.x, y: p.y + l.panelSize + 8, scale: s, color: ink)
        }
        // Colour bar under the heat map, with its ends labelled.
        let hp = l.panels[l.panels.count - 1]
        let barY = hp.y + l.panelSize + 8 + 2 * lh + 4, barH = 5 * s
        for x in 0..<l.panelSize {
            out.fill(x: hp.x + x, y: barY, width: 1, height: barH, with: ColorMap.heat(Double(x) / Double(max(1, l.panelSize - 1))))
        }
        out.drawText("low", x: hp.x, y: barY + barH + 4, scale: s, color: ink)
        out.drawText("high", x: hp.x + l.panelSize - BitmapFont.width(of: "high", scale: s), y: barY + barH + 4, scale: s, color: ink)
        let legend = "kept patches: original colours, outlined; merged (pruned) patches: dimmed"
        out.drawText(legend, x: l.panels[0].x, y: barY + barH + 4 + lh + 4, scale: s, color: RGB(90, 90, 90))
        return out
    }
}

import ELIPImage
import ELIPModel
import ELIPNN
import ELIPPruning
import ELIPTrain
import ELIPTensor
import ELIPText
import Foundation

/// Does the caption guide the pruning? For images with object masks (the synthetic corpus),
/// compares the share of object pixels under the tokens ELIP keeps with the share of object
/// pixels in the whole image. Unguided (random) pruning keeps both equal in expectation; the
/// text-guided selection should keep more object than the image holds.
public enum PruningAnalysis {
    /// Fraction of object pixels (mask > 0) in each patch of a `grid` x `grid` layout.
    public static func objectFractions(mask: RGBImage, grid: Int) -> [Double] {
        let p = mask.width / grid
        var f = [Double](repeating: 0, count: grid * grid)
        guard p > 0 else { return f }
        for gy in 0..<grid {
            for gx in 0..<grid {
                var n = 0
                for y in (gy * p)..<((gy + 1) * p) {
                    for x in (gx * p)..<((gx + 1) * p) where (mask.pixel(x: x, y: y)?.r ?? 0) > 0 { n += 1 }
                }
                f[gy * grid + gx] = Double(n) / Double(p * p)
            }
        }
        return f
    }

    public struct Result: Codable, Equatable {
        public var images = 0
        /// Mean over images of: object pixels under the kept patches / pixels under them, per stage.
        public var keptObjectShare: [Double] = []
        /// Mean over images of: object pixels / all pixels.
        public var imageObjectShare = 0.0
        /// With a second scoring mode: per stage, the mean share of the patches surviving under
        /// the model's scoring that also survive under the other mode (1 = same selection).
        public var otherScoring: String?
        public var survivingOverlapWithOtherScoring: [Double]?
    }

    /// Runs the pruned ViT on each (image, caption, mask) and accumulates the shares.
    public static func run(model: any TextGuidedPruningModel, tokenizer: BertTokenizer,
                           samples: [(image: RGBImage, caption: String, mask: RGBImage)],
                           compareScoring: PruneScoring? = nil) throws -> Result {
        let res = model.modelConfig.imageRes, grid = model.prunableVisionEncoder.patchGrid
        var sums: [Double] = [], overlapSums: [Double] = []
        var result = Result()
        for s in samples {
            let image = try EvalImage.transform(s.image, res: res)
            var pixels: [Float] = []
            ImageNormalization.append(pixels: image.pixels, width: res, height: res, to: &pixels)
            let style = model.modelConfig.captionStyle
            let ids = try tokenizer.encode(style.clean(s.caption), framing: style.framing, maxLength: min(30, style.maxLength, model.modelConfig.maxTextPositions))
            let text = try TextBatch(ids: ids.map(Int.init), mask: [Int](repeating: 1, count: ids.count), batch: 1, length: ids.count)
            let input = try Tensor(pixels, shape: [1, 3, res, res])
            let trace = try PruningTrace.trace(model: model, image: input, text: text)
            if let other = compareScoring {
                let alt = try PruningTrace.trace(model: model, image: input, text: text, scoring: other)
                if overlapSums.isEmpty { overlapSums = [Double](repeating: 0, count: trace.survivingPatches.count) }
                for (j, (a, b)) in zip(trace.survivingPatches, alt.survivingPatches).enumerated() where !a.isEmpty {
                    overlapSums[j] += Double(Set(a).intersection(b).count) / Double(a.count)
                }
            }
            // Patch fractions at the mask's own resolution (the patch grid is the same).
            let fractions = objectFractions(mask: s.mask, grid: grid)
            if sums.isEmpty { sums = [Double](repeating: 0, count: trace.survivingPatches.count) }
            for (j, kept) in trace.survivingPatches.enumerated() where !kept.isEmpty {
                sums[j] += kept.reduce(0) { $0 + fractions[$1] } / Double(kept.count)
            }
            result.imageObjectShare += fractions.reduce(0, +) / Double(fractions.count)
            result.images += 1
        }
        guard result.images > 0 else { return result }
        result.keptObjectShare = sums.map { $0 / Double(result.images) }
        result.imageObjectShare /= Double(result.images)
        if let compareScoring {
            result.otherScoring = compareScoring.rawValue
            result.survivingOverlapWithOtherScoring = overlapSums.map { $0 / Double(result.images) }
        }
        return result
    }
}

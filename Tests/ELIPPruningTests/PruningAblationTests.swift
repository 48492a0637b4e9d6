import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import XCTest

/// The two ablations of the paper's Figure 3 (issue 18 part 4): the mixing coefficient λ of the
/// fused query and dropping the pruned tokens instead of merging them.
final class PruningAblationTests: XCTestCase {
    /// A tiny 4-block ViT at 64 px with 16-px patches (16 patches), random weights.
    private func tinyViT(seed: UInt64, imageRes: Int = 64) throws -> VisionTransformer {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 2; vision.depth = 4
        let arena = ParameterArena(capacity: 1 << 22)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: imageRes)
        var g = SeededGenerator(seed: seed)
        for (e, t) in zip(arena.entries, arena.tensors) {
            let isNormWeight = e.name.hasSuffix("norm1.weight") || e.name.hasSuffix("norm2.weight") || e.name.hasSuffix("norm.weight")
            try t.assign(isNormWeight ? [Float](repeating: 1, count: t.count) : (0..<t.count).map { _ in g.nextNormal() * 0.8 })
        }
        return vit
    }

    /// The kept set of guidance by a given query [CLS] (one row per sample), computed without
    /// ELIPPruning's mixing: position 0 of x is replaced by `query`, the stage's layers run, and
    /// the head-averaged attention of position 0 in the last of them ranks the tokens.
    private func keptByQuery(_ query: [Float], x: Tensor, vit: VisionTransformer, first: Int, layers: Int, keep: Int) throws -> [[Int]] {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2]
        let h0 = x.copy()
        h0.withUnsafeMutableBufferPointer { p in
            for i in 0..<b { for k in 0..<d { p[i * t * d + k] = query[i * d + k] } }
        }
        return try Autograd.noGrad {
            var h = h0
            for i in first..<(first + layers - 1) { h = try vit.runBlock(i, h) }
            let probs = try vit.blocks[first + layers - 1].attentionProbabilities(h).toArray()  // [B, H, T, T]
            let heads = probs.count / (b * t * t)
            return (0..<b).map { i in
                let score = (1..<t).map { k in (0..<heads).reduce(Float(0)) { $0 + probs[((i * heads + $1) * t) * t + k] } }
                let order = score.indices.sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
                return order.prefix(keep).sorted()
            }
        }
    }

    /// λ = 1: the kept sets are those of guidance by the image [CLS] alone (the text has no
    /// influence); λ = 0: those of the text [CLS] alone (the image [CLS] has no influence). Both
    /// scorings, several seeds.
    func testLambdaOneIsImageOnlyAndZeroIsTextOnlyGuidance() throws {
        var differing = 0
        for seed in UInt64(0)..<4 {
            let vit = try tinyViT(seed: 30 + seed)
            var g = SeededGenerator(seed: 40 + seed)
            let (b, t, d) = (2, 17, 16)
            let xs = (0..<(b * t * d)).map { _ in g.nextNormal() }
            let x = try Tensor(xs, shape: [b, t, d])
            let text = (0..<(b * d)).map { _ in g.nextNormal() * 3 }
            let imageCLS = (0..<b).flatMap { i in xs[(i * t * d)..<(i * t * d + d)] }
            for scoring in PruneScoring.allCases {
                let layers = scoring == .inline ? 1 : 2
                let imageOnly = try keptByQuery(imageCLS, x: x, vit: vit, first: 1, layers: layers, keep: 8)
                let textOnly = try keptByQuery(text, x: x, vit: vit, first: 1, layers: layers, keep: 8)
                if imageOnly != textOnly { differing += 1 }
                for (lambda, expected) in [(Float(1), imageOnly), (0, textOnly)] {
                    let schedule = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5], scoring: scoring, lambda: lambda)
                    let pruning = ELIPPruning(schedule: schedule, patchCount: 16, textCLS: try Tensor(text, shape: [b, d]))
                    let r = try Autograd.noGrad { try pruning.pruneStage(0, tokens: x, encoder: vit) }
                    XCTAssertEqual(r.keptIndices, expected, "seed \(seed), \(scoring), λ \(lambda)")
                }
                // λ = 0 ignores the image [CLS]; λ = 1 ignores the text.
                let otherText = try Tensor(text.map { -$0 }, shape: [b, d])
                let imageGuided = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5], scoring: scoring, lambda: 1)
                XCTAssertEqual(try Autograd.noGrad { try ELIPPruning(schedule: imageGuided, patchCount: 16, textCLS: otherText).pruneStage(0, tokens: x, encoder: vit) }.keptIndices,
                               imageOnly)
            }
        }
        XCTAssertGreaterThan(differing, 0, "image-only and text-only guidance never differed: the property test would be vacuous")
    }

    /// The default λ is the paper's 0.8, and the fused query is exactly (1 - λ) text + λ image.
    func testDefaultLambdaIsPointEight() throws {
        XCTAssertEqual(PruneConfig.albef.lambda, 0.8)
        XCTAssertTrue(PruneConfig.albef.merge)
        let vit = try tinyViT(seed: 50)
        var g = SeededGenerator(seed: 51)
        let xs = (0..<(17 * 16)).map { _ in g.nextNormal() }
        let text = (0..<16).map { _ in g.nextNormal() * 3 }
        let x = try Tensor(xs, shape: [1, 17, 16])
        let fused = (0..<16).map { k in Float(0.2) * text[k] + Float(0.8) * xs[k] }
        let expected = try keptByQuery(fused, x: x, vit: vit, first: 1, layers: 2, keep: 8)
        let schedule = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5])
        let pruning = ELIPPruning(schedule: schedule, patchCount: 16, textCLS: try Tensor(text, shape: [1, 16]))
        XCTAssertEqual(try Autograd.noGrad { try pruning.pruneStage(0, tokens: x, encoder: vit) }.keptIndices, expected)
    }

    /// merge: false drops the pruned tokens: ViT-B/16's sequence lengths at 256 px become 257,
    /// 257, 231 x 2, 167 x 6, 103 x 2, and a later stage's kept positions index only the
    /// previous stage's kept tokens (no merged token among its candidates).
    func testDroppingKeepsOnlyCLSAndKeptTokens() throws {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 1
        let arena = ParameterArena(capacity: 1 << 22)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 256)
        var g = SeededGenerator(seed: 60)
        for t in arena.tensors { try t.assign((0..<t.count).map { _ in g.nextNormal() * 0.3 }) }
        let images = try Tensor((0..<(2 * 3 * 256 * 256)).map { _ in g.nextNormal() }, shape: [2, 3, 256, 256])
        let text = try Tensor((0..<32).map { _ in g.nextNormal() }, shape: [2, 16])
        var schedule = PruneConfig.albef
        schedule.merge = false
        let out = try Autograd.noGrad { try vit(images, pruning: ELIPPruning(schedule: schedule, patchCount: 256, textCLS: text)) }
        XCTAssertEqual(out.sequenceLengths, [257, 257, 231, 231] + [Int](repeating: 167, count: 6) + [103, 103])
        XCTAssertEqual(out.tokens.shape, [2, 103, 16])
        XCTAssertEqual(out.keptIndices.map { $0.map(\.count) }, [[230, 230], [166, 166], [102, 102]])
        for (j, stage) in out.keptIndices.enumerated() {
            let candidates = j == 0 ? 256 : [230, 166][j - 1]
            for kept in stage { XCTAssertLessThan(kept.max()!, candidates, "stage \(j) kept a position past its \(candidates) candidates") }
        }
        XCTAssertEqual(schedule.tokensAfterStage(kept: 230), 230)
        XCTAssertEqual(PruneConfig.albef.tokensAfterStage(kept: 230), 231)
    }

    /// Without merging, the stage is a gather: the gradient of a kept token is the upstream
    /// gradient, of a dropped token zero; it passes a finite-difference check, and the scoring
    /// (no gradient) contributes nothing.
    func testGradientThroughADroppingStage() throws {
        let vit = try tinyViT(seed: 70, imageRes: 48)  // 9 patches
        var schedule = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5])
        schedule.merge = false
        var g = SeededGenerator(seed: 71)
        let text = try Tensor((0..<32).map { _ in g.nextNormal() }, shape: [2, 16])
        let pruning = ELIPPruning(schedule: schedule, patchCount: 9, textCLS: text)
        let x = try Tensor((0..<(2 * 10 * 16)).map { _ in g.nextNormal() }, shape: [2, 10, 16]).requiringGrad()
        let out = try pruning.pruneStage(0, tokens: x, encoder: vit)
        XCTAssertEqual(out.tokens.shape, [2, 4 + 1, 16])
        let r = (0..<out.tokens.count).map { _ in g.nextNormal() }
        try Autograd.backward(from: (out.tokens * Tensor(r, shape: out.tokens.shape)).sum())
        let grad = try XCTUnwrap(x.grad).toArray()
        for i in 0..<2 {
            let rows = [0] + out.keptIndices[i].map { $0 + 1 }  // input rows of [CLS, kept...]
            for p in 0..<10 {
                for c in 0..<16 {
                    let expected = rows.firstIndex(of: p).map { r[(i * 5 + $0) * 16 + c] } ?? 0
                    XCTAssertEqual(grad[(i * 10 + p) * 16 + c], expected, "sample \(i), token \(p)")
                }
            }
        }
        let selection = pruning.select(scores: try pruning.scores(0, tokens: x, encoder: vit), batch: 2, tokens: 10, keep: 4)
        try GradientCheck.check(inputs: [x]) { try pruning.apply(selection, to: x) }
    }

    /// λ outside [0, 1] (or NaN) set in code is refused by `validate`, as the config reader
    /// refuses it in a file.
    func testValidateRefusesLambdaOutsideTheUnitInterval() throws {
        for bad: Float in [-0.1, 1.5, .nan, .infinity] {
            var c = PruneConfig.albef
            c.lambda = bad
            XCTAssertThrowsError(try c.validate(depth: 12, patchCount: 256)) {
                XCTAssertTrue("\($0)".contains("lambda"), "\($0)")
            }
        }
        var ok = PruneConfig.albef
        for good: Float in [0, 0.4, 1] { ok.lambda = good; XCTAssertNoThrow(try ok.validate(depth: 12, patchCount: 256)) }
    }
}

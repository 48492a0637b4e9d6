import ELIPEncoders
import ELIPEval
import ELIPNN
import ELIPTensor
import XCTest

/// Issue 18 part 3: KL(model || vision-only) of the [CLS]-to-patch attention per ViT layer.
final class AttentionDiscrepancyTests: XCTestCase {
    func testKLAndHeadMeanByHand() throws {
        // Unsmoothed: KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 log 2 + 1/2 log(2/3).
        XCTAssertEqual(AttentionDiscrepancy.klDivergence([0.5, 0.5], [0.25, 0.75], smoothing: 0), 0.5 * log(2) + 0.5 * log(2.0 / 3), accuracy: 1e-15)
        // Smoothed with ε = 0.2 over 2 outcomes: p -> [0.5, 0.5], q -> [0.3, 0.7].
        XCTAssertEqual(AttentionDiscrepancy.klDivergence([0.5, 0.5], [0.25, 0.75], smoothing: 0.2), 0.5 * log(0.5 / 0.3) + 0.5 * log(0.5 / 0.7), accuracy: 1e-15)
        // A zero weight in q stays finite with the default smoothing; identical inputs give 0.
        let kl = AttentionDiscrepancy.klDivergence([0.5, 0.5], [1, 0])
        XCTAssertTrue(kl.isFinite && kl > 5, "\(kl)")
        XCTAssertEqual(AttentionDiscrepancy.klDivergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]), 0)
        // Heads [CLS, a, b]: [0.4, 0.3, 0.3] and [0.2, 0.6, 0.2] -> patch mean [0.45, 0.25] -> / 0.7.
        let probs = try Tensor([0.4, 0.3, 0.3, 0.2, 0.6, 0.2], shape: [1, 2, 1, 3])
        let map = AttentionDiscrepancy.headMeanPatchAttention(probs)
        XCTAssertEqual(map.count, 1)
        XCTAssertEqual(map[0][0], 0.45 / 0.7, accuracy: 1e-7)
        XCTAssertEqual(map[0][1], 0.25 / 0.7, accuracy: 1e-7)
    }

    func tinyViT(depth: Int = 3, seed: UInt64) throws -> VisionTransformer {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 2; vision.depth = depth
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 48)  // 9 patches
        var g = SeededGenerator(seed: seed)
        for t in arena.tensors { try t.assign((0..<t.count).map { _ in g.nextNormal() * 0.5 }) }
        return vit
    }

    /// Same weights: exactly 0 at every layer. Other weights: one value per layer, > 0, equal to a
    /// direct computation from the full attention matrices of both ViTs.
    func testCurvesOfTinyViTs() throws {
        let model = try tinyViT(seed: 91), same = try tinyViT(seed: 91), other = try tinyViT(seed: 92)
        var g = SeededGenerator(seed: 93)
        let images = try Tensor((0..<(3 * 3 * 48 * 48)).map { _ in g.nextNormal() }, shape: [3, 3, 48, 48])
        let batches = [try images.slice(axis: 0, start: 0, length: 2), try images.slice(axis: 0, start: 2, length: 1)]
        XCTAssertEqual(try AttentionDiscrepancy.measure(model: model, visionOnly: same, batches: batches), [0, 0, 0])
        let kl = try AttentionDiscrepancy.measure(model: model, visionOnly: other, batches: batches)
        XCTAssertEqual(kl.count, 3)
        XCTAssertTrue(kl.allSatisfy { $0 > 0 && $0.isFinite }, "\(kl)")
        var x = try Autograd.noGrad { try model.embed(images) }, y = try Autograd.noGrad { try other.embed(images) }
        for layer in 0..<3 {
            let p = try Autograd.noGrad { try model.blocks[layer].attentionProbabilities(x) }.toArray()  // [3, 2, 10, 10]
            let q = try Autograd.noGrad { try other.blocks[layer].attentionProbabilities(y) }.toArray()
            var sum = 0.0
            for b in 0..<3 {
                func map(_ a: [Float]) -> [Double] {
                    let row = (1..<10).map { k in (0..<2).reduce(0.0) { $0 + Double(a[((b * 2 + $1) * 10) * 10 + k]) } / 2 }
                    let total = row.reduce(0, +)
                    return row.map { (1 - 1e-6) * $0 / total + 1e-6 / 9 }
                }
                let pb = map(p), qb = map(q)
                sum += zip(pb, qb).reduce(0) { $0 + $1.0 * log($1.0 / $1.1) }
            }
            XCTAssertEqual(kl[layer], sum / 3, accuracy: 1e-5)
            x = try Autograd.noGrad { try model.runBlock(layer, x) }
            y = try Autograd.noGrad { try other.runBlock(layer, y) }
        }
    }

    func testMismatchedViTsAreRefused() throws {
        let images = try Tensor([Float](repeating: 0.1, count: 3 * 48 * 48), shape: [1, 3, 48, 48])
        XCTAssertThrowsError(try AttentionDiscrepancy.measure(model: tinyViT(seed: 1), visionOnly: tinyViT(depth: 2, seed: 1), batches: [images])) {
            XCTAssertTrue("\($0)".contains("3 layers, the vision-only ViT 2"), "\($0)")
        }
    }
}

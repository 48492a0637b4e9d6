import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import XCTest

/// Issue 18 part 5: the vision tokens a schedule leaves per layer and the share removed.
final class TokenBudgetTests: XCTestCase {
    /// ViT-B/16 at 256 px, the paper's schedule: 257, 257, 232, 232, 168 x 6, 104, 104 tokens;
    /// Σ = 2194 of 12 x 257 = 3084, so 890 / 3084 = 28.9% removed.
    func testPaperScheduleByHand() throws {
        let b = try TokenBudget(schedule: .albef, depth: 12, patchCount: 256)
        XCTAssertEqual(b.tokensPerLayer, [257, 257, 232, 232] + [Int](repeating: 168, count: 6) + [104, 104])
        XCTAssertEqual(b.keepCounts, [230, 166, 102])
        XCTAssertEqual(b.unprunedTokens, 257)
        XCTAssertEqual(b.removedShare, 890.0 / 3084.0, accuracy: 1e-12)
        // Dropping instead of merging: one token fewer after every stage; Σ = 2184.
        var drop = PruneConfig.albef
        drop.merge = false
        let d = try TokenBudget(schedule: drop, depth: 12, patchCount: 256)
        XCTAssertEqual(d.tokensPerLayer, [257, 257, 231, 231] + [Int](repeating: 167, count: 6) + [103, 103])
        XCTAssertEqual(d.removedShare, 900.0 / 3084.0, accuracy: 1e-12)
    }

    /// BLIP at 224 px: keep counts of (224 // 16)^2 = 196 patches, 176 / 127 / 78;
    /// Σ = 2 x 197 + 2 x 178 + 6 x 129 + 2 x 80 = 1684 of 12 x 197 = 2364.
    func testBLIPAt224ByHand() throws {
        let b = try TokenBudget(schedule: .albef, depth: 12, patchCount: 196, keepBase: 196)
        XCTAssertEqual(b.keepCounts, [176, 127, 78])
        XCTAssertEqual(b.removedShare, 680.0 / 2364.0, accuracy: 1e-12)
        // A small case: 4 layers, 9 patches, one stage at layer 1 keeping 4: 10, 6, 6, 6 -> 1 - 28/40.
        let small = try TokenBudget(schedule: PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5]), depth: 4, patchCount: 9)
        XCTAssertEqual(small.tokensPerLayer, [10, 6, 6, 6])
        XCTAssertEqual(small.removedShare, 0.3, accuracy: 1e-12)
        let none = try TokenBudget(schedule: nil, depth: 4, patchCount: 9)
        XCTAssertEqual(none.tokensPerLayer, [10, 10, 10, 10])
        XCTAssertEqual(none.removedShare, 0)
    }

    /// The arithmetic is what the pruned ViT does: its sequence lengths, merging or not.
    func testBudgetMatchesTheSequenceLengthsOfARun() throws {
        var vision = VisionConfig()
        vision.embedDim = 8; vision.numHeads = 2; vision.mlpRatio = 1; vision.depth = 6
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 80)  // 25 patches
        var g = SeededGenerator(seed: 80)
        for t in arena.tensors { try t.assign((0..<t.count).map { _ in g.nextNormal() * 0.3 }) }
        let images = try Tensor((0..<(3 * 80 * 80)).map { _ in g.nextNormal() }, shape: [1, 3, 80, 80])
        let text = try Tensor((0..<8).map { _ in g.nextNormal() }, shape: [1, 8])
        for merge in [true, false] {
            let schedule = PruneConfig(beginLayer: [1, 3], numActLayers: [2, 2], keepRatio: [0.7, 0.3], merge: merge)
            let out = try Autograd.noGrad { try vit(images, pruning: ELIPPruning(schedule: schedule, patchCount: 25, textCLS: text)) }
            XCTAssertEqual(try TokenBudget(schedule: schedule, depth: 6, patchCount: 25).tokensPerLayer, out.sequenceLengths, "merge \(merge)")
        }
    }

    func testImpossibleSchedulesAreErrors() {
        // Keep counts of 20 patches (18 first) on a ViT of only 16 patches.
        XCTAssertThrowsError(try TokenBudget(schedule: .albef, depth: 12, patchCount: 16, keepBase: 20)) {
            XCTAssertTrue("\($0)".contains("keeps 18 of 16 patches"), "\($0)")
        }
        XCTAssertThrowsError(try TokenBudget(schedule: .albef, depth: 8, patchCount: 256))  // stage 3 past depth 8
        XCTAssertThrowsError(try TokenBudget(schedule: nil, depth: 0, patchCount: 256))
    }
}

import ELIPEncoders
import ELIPPruning
import ELIPNN
import ELIPTensor
import XCTest

private func randomize(_ arena: ParameterArena, seed: UInt64, scale: Float = 0.3) throws {
    var g = SeededGenerator(seed: seed)
    for (e, t) in zip(arena.entries, arena.tensors) {
        if e.name.hasSuffix("norm1.weight") || e.name.hasSuffix("norm2.weight") || e.name.hasSuffix("norm.weight") {
            try t.assign([Float](repeating: 1, count: t.count))
        } else {
            try t.assign((0..<t.count).map { _ in g.nextNormal() * scale })
        }
    }
}

final class PruningTests: XCTestCase {
    func testKeepCountsAndSequenceLengthsForViTB16At256() throws {
        XCTAssertEqual(PruneConfig.albef.keepCounts(patchCount: 256), [230, 166, 102])
        // Token counts depend on the patch grid and the schedule only: a narrow ViT at 256 px with
        // 16-px patches has ViT-B/16's sequence lengths.
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 1
        let arena = ParameterArena(capacity: 1 << 22)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 256)
        try randomize(arena, seed: 1)
        var g = SeededGenerator(seed: 2)
        let images = try Tensor((0..<(3 * 256 * 256)).map { _ in g.nextNormal() }, shape: [1, 3, 256, 256])
        let text = try Tensor((0..<16).map { _ in g.nextNormal() }, shape: [1, 16])
        let pruning = ELIPPruning(schedule: .albef, patchCount: 256, textCLS: text)
        let out = try Autograd.noGrad { try vit(images, pruning: pruning) }
        XCTAssertEqual(out.sequenceLengths, [257, 257, 232, 232] + [Int](repeating: 168, count: 6) + [104, 104])
        XCTAssertEqual(out.tokens.shape, [1, 104, 16])
        XCTAssertEqual(out.keptIndices.map { $0[0].count }, [230, 166, 102])
        // Without pruning: the plain ViT.
        let plain = try Autograd.noGrad { try vit(images) }
        XCTAssertEqual(plain.sequenceLengths, [Int](repeating: 257, count: 12))
        XCTAssertTrue(plain.keptIndices.isEmpty)
    }

    /// Kept indices are ascending, unique, and the merge weights of every sample sum to ~1 over
    /// exactly the pruned tokens.
    func testSelectionInvariants() throws {
        let pruning = ELIPPruning(schedule: .albef, patchCount: 16, textCLS: Tensor.zeros([2, 4]))
        var g = SeededGenerator(seed: 3)
        let t = 17
        let scores = (0..<(2 * (t - 1))).map { _ in g.nextUniform() }
        let s = pruning.select(scores: scores, batch: 2, tokens: t, keep: 10)
        for i in 0..<2 {
            let kept = s.kept[i]
            XCTAssertEqual(kept, kept.sorted())
            XCTAssertEqual(Set(kept).count, 10)
            let row = Array(scores[(i * 16)..<((i + 1) * 16)])
            // Every kept token scores at least as high as every pruned one.
            let pruned = Set(0..<16).subtracting(kept)
            XCTAssertGreaterThanOrEqual(kept.map { row[$0] }.min()!, pruned.map { row[$0] }.max()!)
            let w = Array(s.mergeWeights[(i * t)..<((i + 1) * t)])
            XCTAssertEqual(w[0], 0)
            for k in kept { XCTAssertEqual(w[k + 1], 0) }
            XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-4)
        }
    }

    /// Gradients flow into kept and merged tokens with the merge weights as constants, and not
    /// through the (no-grad) scoring: the stage's gradient equals that of the frozen selection,
    /// which passes a finite-difference check.
    func testGradientThroughOnePruningStage() throws {
        var vision = VisionConfig()
        vision.embedDim = 8; vision.numHeads = 2; vision.mlpRatio = 2; vision.depth = 4
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 48)  // 9 patches
        try randomize(arena, seed: 4)
        let schedule = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5])
        var g = SeededGenerator(seed: 5)
        let text = try Tensor((0..<16).map { _ in g.nextNormal() }, shape: [2, 8])
        let pruning = ELIPPruning(schedule: schedule, patchCount: 9, textCLS: text)
        let x = try Tensor((0..<(2 * 10 * 8)).map { _ in g.nextNormal() }, shape: [2, 10, 8]).requiringGrad()

        let full = try pruning.pruneStage(0, tokens: x, encoder: vit)
        XCTAssertEqual(full.tokens.shape, [2, 4 + 2, 8])
        let r = try (0..<full.tokens.count).map { _ in g.nextNormal() }
        try Autograd.backward(from: (full.tokens * Tensor(r, shape: full.tokens.shape)).sum())
        let gradFull = try XCTUnwrap(x.grad).toArray()
        x.zeroGradient()

        let selection = pruning.select(scores: try pruning.scores(0, tokens: x, encoder: vit), batch: 2, tokens: 10, keep: 4)
        XCTAssertEqual(selection.kept, full.keptIndices)
        let frozen = try pruning.apply(selection, to: x)
        try Autograd.backward(from: (frozen * Tensor(r, shape: frozen.shape)).sum())
        XCTAssertEqual(try XCTUnwrap(x.grad).toArray(), gradFull, "no gradient may flow through the scoring")

        // Merged-token gradient reaches every pruned token, weighted by its merge weight.
        for i in 0..<2 {
            let pruned = Set(0..<9).subtracting(full.keptIndices[i])
            for k in pruned {
                let w = selection.mergeWeights[i * 10 + 1 + k]
                for c in 0..<8 {
                    let expected = w * r[(i * 6 + 5) * 8 + c]
                    XCTAssertEqual(gradFull[(i * 10 + 1 + k) * 8 + c], expected, accuracy: 1e-5)
                }
            }
        }
        try GradientCheck.check(inputs: [x]) { try pruning.apply(selection, to: x) }
    }

    /// Text guidance changes the choice: a different text [CLS] keeps different tokens.
    /// The scoring layer computes only query position 0: it must equal row 0 of the full
    /// attention probabilities.
    func testCLSAttentionEqualsRowZeroOfFullAttention() throws {
        let arena = ParameterArena(capacity: 1 << 20)
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 4; vision.mlpRatio = 2
        let block = try VisionTransformer.block(Scope(arena: arena), config: vision)
        try randomize(arena, seed: 11)
        var g = SeededGenerator(seed: 12)
        let x = try Tensor((0..<(2 * 9 * 16)).map { _ in g.nextNormal() }, shape: [2, 9, 16])
        let full = try Autograd.noGrad { try block.attentionProbabilities(x) }.toArray()  // [2, 4, 9, 9]
        let row0 = try Autograd.noGrad { try block.firstQueryAttention(x) }
        XCTAssertEqual(row0.shape, [2, 4, 1, 9])
        let r = row0.toArray()
        var worst: Float = 0
        for bh in 0..<8 { for k in 0..<9 { worst = max(worst, abs(r[bh * 9 + k] - full[bh * 81 + k])) } }
        XCTAssertLessThan(worst, 1e-6)
    }

    /// `scoring: inline` scores with the fused query's attention in the stage's first layer (no
    /// look-ahead); the look-ahead scores with the stage's last layer after running the others.
    func testInlineScoringUsesTheStagesFirstLayer() throws {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 1; vision.depth = 4
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 64)
        try randomize(arena, seed: 21)
        var g = SeededGenerator(seed: 22)
        let x = try Tensor((0..<(2 * 17 * 16)).map { _ in g.nextNormal() }, shape: [2, 17, 16])
        let text = try Tensor((0..<32).map { _ in g.nextNormal() }, shape: [2, 16])
        var schedule = PruneConfig(beginLayer: [1], numActLayers: [3], keepRatio: [0.5])
        let lookAhead = try ELIPPruning(schedule: schedule, patchCount: 16, textCLS: text).scores(0, tokens: x, encoder: vit)
        schedule.scoring = .inline
        let inline = ELIPPruning(schedule: schedule, patchCount: 16, textCLS: text)
        let scores = try inline.scores(0, tokens: x, encoder: vit)
        // Expected: head-averaged row 0 of block 1's attention on the fused query.
        let fused = x.copy()
        let t = text.toArray()
        fused.withUnsafeMutableBufferPointer { q in
            for i in 0..<2 { for k in 0..<16 { q[i * 17 * 16 + k] = 0.2 * t[i * 16 + k] + 0.8 * q[i * 17 * 16 + k] } }
        }
        let probs = try Autograd.noGrad { try vit.blocks[1].attentionProbabilities(fused) }.toArray()  // [2, 2, 17, 17]
        for i in 0..<2 {
            for k in 1..<17 {
                let expected = (probs[((i * 2 + 0) * 17) * 17 + k] + probs[((i * 2 + 1) * 17) * 17 + k]) / 2
                XCTAssertEqual(scores[i * 16 + k - 1], expected, accuracy: 1e-6)
            }
        }
        XCTAssertNotEqual(scores, lookAhead, "inline and look-ahead scoring should differ on a 3-layer stage")
        let pruned = try inline.pruneStage(0, tokens: x, encoder: vit)
        XCTAssertEqual(pruned.tokens.shape, [2, 8 + 2, 16])
    }

    func testTextChangesTheKeptTokens() throws {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 2; vision.depth = 4
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 64)
        try randomize(arena, seed: 6, scale: 1)
        var g = SeededGenerator(seed: 7)
        let images = try Tensor((0..<(3 * 64 * 64)).map { _ in g.nextNormal() }, shape: [1, 3, 64, 64])
        let schedule = PruneConfig(beginLayer: [1], numActLayers: [2], keepRatio: [0.5])
        var choices = Set<[Int]>()
        for s in 0..<6 {
            var tg = SeededGenerator(seed: UInt64(100 + s))
            let text = try Tensor((0..<16).map { _ in tg.nextNormal() * 10 }, shape: [1, 16])
            let out = try Autograd.noGrad { try vit(images, pruning: ELIPPruning(schedule: schedule, patchCount: 16, textCLS: text)) }
            choices.insert(out.keptIndices[0][0])
        }
        XCTAssertGreaterThan(choices.count, 1, "the caption must influence which tokens are kept")
    }
}

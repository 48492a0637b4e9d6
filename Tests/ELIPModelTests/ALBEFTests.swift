import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPTensor
import XCTest

/// Whole-model checks on tiny shapes that differ from the reference case.
final class ALBEFTests: XCTestCase {
    func makeBatch(_ c: ALBEFConfig, batch: Int, length: Int, seed: UInt64) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed)
        let images = try Tensor((0..<(batch * 3 * c.imageRes * c.imageRes)).map { _ in g.nextNormal() },
                                shape: [batch, 3, c.imageRes, c.imageRes])
        var ids: [Int] = [], mask: [Int] = []
        for b in 0..<batch {
            let len = length - (b % 3)  // some padding
            for i in 0..<length {
                ids.append(i == 0 ? 101 : (i < len ? 1000 % c.bert.vocabSize + Int(g.next() % 150) + 1 : 0))
                mask.append(i < len ? 1 : 0)
            }
        }
        return ImageTextBatch(images: images, text: try TextBatch(ids: ids, mask: mask, batch: batch, length: length))
    }

    /// d(loss_mlm + loss_ita + loss_itm)/d(parameters) against central differences, through
    /// every part of the model (ViT, text and fusion encoders, heads, temperature, MLM head).
    /// Momentum 1 keeps the EMA from moving the teacher while the loss is re-evaluated.
    /// Pruning is off here: a finite difference could flip a token choice (its own test covers it).
    func testFullLossGradientMatchesFiniteDifferences() throws {
        var c = try tinyConfig(prune: nil)
        c.momentum = 1
        let model = try ALBEFModel(config: c)
        try model.initialiseRandomly(seed: 11)
        // Larger weights than the 0.02 init so every path carries signal.
        for (e, t) in zip(model.parameters.entries, model.parameters.tensors) where !e.name.contains("norm") && !e.name.contains("LayerNorm") && e.name != "temp" {
            try t.assign(t.toArray().map { $0 * 10 })
        }
        model.momentum.copyOnlineToMomentum()
        let batch = try makeBatch(c, batch: 3, length: 6, seed: 12)
        let imageQueue = model.queue.imageQueue.toArray(), textQueue = model.queue.textQueue.toArray()
        func loss(alpha: Float = 0.4) throws -> Tensor {
            // Every evaluation starts from the same queues (forward enqueues).
            try model.queue.imageQueue.assign(imageQueue); try model.queue.textQueue.assign(textQueue); model.queue.pointer = 0
            var r = StepContext(seed: 1, dropout: false)
            r.recorded.ints["itm_neg_image_index"] = [1, 2, 0]; r.recorded.ints["itm_neg_text_index"] = [2, 0, 1]
            r.recorded.ints["mlm_input_ids"] = batch.text.ids.enumerated().map { $0.offset % 6 == 2 ? 103 : $0.element }
            r.recorded.ints["mlm_labels"] = batch.text.ids.enumerated().map { $0.offset % 6 == 2 ? $0.element : -100 }
            r.recorded.floats["alpha"] = [alpha]
            return try model.step(batch, context: &r).total
        }
        // The distillation targets depend on temp (without gradient, as in PyTorch), so temp is
        // checked with alpha = 0, where the targets are one-hot.
        try GradientCheck.check(inputs: [model.temp], eps: 1e-4, atol: 2e-3, rtol: 3e-2) { try loss(alpha: 0) }
        let names = ["itm_head.weight", "vision_proj.weight", "text_proj.bias",
                     "visual_encoder.patch_embed.proj.weight", "visual_encoder.blocks.1.attn.qkv.weight",
                     "visual_encoder.pos_embed", "text_encoder.bert.encoder.layer.3.crossattention.self.key.weight",
                     "text_encoder.bert.encoder.layer.0.attention.self.query.weight",
                     "text_encoder.cls.predictions.transform.dense.weight", "text_encoder.cls.predictions.bias"]
        let inputs = names.map { model.parameters.tensor($0)! }
        try GradientCheck.check(inputs: inputs, eps: 2e-3, atol: 2e-3, rtol: 3e-2, maxElements: 12) { try loss() }
    }

    /// Training-mode step: dropout on, negatives and masks drawn from seeded generators; the
    /// same seed replays the same losses and gradients bit for bit, and every loss is finite.
    func testSeededTrainingStepReplays() throws {
        let c = try tinyConfig()
        var results: [[Float]] = []
        for _ in 0..<2 {
            let model = try ALBEFModel(config: c)
            try model.initialiseRandomly(seed: 21)
            let batch = try makeBatch(c, batch: 4, length: 7, seed: 22)
            var r = StepContext(seed: 23, dropout: true)
            r.recorded.floats["alpha"] = [0.2]
            let out = try model.step(batch, context: &r)
            try Autograd.backward(from: out.total)
            XCTAssertEqual(Set(out.losses.keys), ["ita", "itm", "mlm"])
            for l in out.losses.values { XCTAssertTrue(l.scalar.isFinite) }
            XCTAssertEqual(out.keptIndices.count, 2)
            XCTAssertEqual(model.queue.pointer, 4)
            results.append([out.losses["ita"]!.scalar, out.losses["itm"]!.scalar, out.losses["mlm"]!.scalar] + Array(model.parameters.gradients))
        }
        XCTAssertEqual(results[0], results[1])
    }

    /// The queue wraps around: 12 slots, batches of 5 -> pointer 5, 10, 3 and the wrapped
    /// columns hold the newest features.
    func testQueueWrapsAround() throws {
        let c = try tinyConfig()
        let model = try ALBEFModel(config: c)
        try model.initialiseRandomly(seed: 31)
        var pointers: [Int] = []
        for s in 0..<3 {
            let batch = try makeBatch(c, batch: 5, length: 5, seed: UInt64(40 + s))
            var r = StepContext(seed: UInt64(s), dropout: false)
            _ = try Autograd.noGrad { try model.step(batch, context: &r) }
            Autograd.reset()
            pointers.append(model.queue.pointer)
        }
        XCTAssertEqual(pointers, [5, 10, 3])
        // Every queue column is unit-norm (momentum features are normalised).
        let q = model.queue.imageQueue.toArray()
        for col in 0..<12 {
            let n = (0..<8).reduce(Float(0)) { $0 + q[$1 * 12 + col] * q[$1 * 12 + col] }
            XCTAssertEqual(n, 1, accuracy: 1e-4)
        }
    }

    /// ALBEF masking statistics: ~15% of maskable tokens, never [PAD]/[CLS], 80/10/10 split.
    func testMaskingStatistics() {
        let ids = (0..<200_000).map { $0 % 10 == 0 ? 101 : ($0 % 10 == 9 ? 0 : 2000 + $0 % 7) }
        let mlm = MaskedLanguageModeling(probability: 0.15, vocabularySize: 30522, specials: .bertBaseUncased)
        let (input, labels) = mlm.mask(ids, seed: 5)
        // Split in two halves with the right token offsets, the draws are the same.
        let (a, la) = mlm.mask(Array(ids[..<100_000]), seed: 5)
        let (b, lb) = mlm.mask(Array(ids[100_000...]), seed: 5, firstToken: 100_000)
        XCTAssertTrue(a + b == input && la + lb == labels)
        let masked = labels.indices.filter { labels[$0] != -100 }
        XCTAssertFalse(masked.contains { ids[$0] == 101 || ids[$0] == 0 })
        let share = Double(masked.count) / Double(ids.count * 8 / 10)
        XCTAssertEqual(share, 0.15, accuracy: 0.005)
        let toMask = masked.filter { input[$0] == 103 }.count
        XCTAssertEqual(Double(toMask) / Double(masked.count), 0.8, accuracy: 0.01)
        let unchanged = masked.filter { input[$0] == ids[$0] }.count
        XCTAssertEqual(Double(unchanged) / Double(masked.count), 0.1, accuracy: 0.01)
        for i in ids.indices where labels[i] == -100 { XCTAssertEqual(input[i], ids[i]) }
    }
}

final class ALBEFLayoutTests: XCTestCase {
    /// The EMA pairs every momentum tensor with its online twin, and only those.
    func testMomentumPairsEveryTensorWithItsTwin() throws {
        var c = try tinyConfig()
        c.momentum = 0  // p_m = p
        let model = try ALBEFModel(config: c)
        try model.initialiseRandomly(seed: 3)
        for t in model.momentumParameters.tensors { try t.assign([Float](repeating: 7, count: t.count)) }
        model.momentum.update()
        for (e, t) in zip(model.momentumParameters.entries, model.momentumParameters.tensors) {
            let twin = e.name.replacingOccurrences(of: "_m.", with: ".")
            XCTAssertEqual(t.toArray(), model.parameters.tensor(twin)?.toArray(), e.name)
        }
        XCTAssertEqual(model.momentumParameters.parameterCount,
                       model.parameters.parameterCount - model.itmHead.weight.count - model.itmHead.bias!.count - 1)
        // The MLM decoder is tied to the word embeddings in both arenas, under both names.
        XCTAssertTrue(model.parameters.tensor("text_encoder.cls.predictions.decoder.weight") === model.textEmbeddings.wordEmbeddings.weight)
        XCTAssertTrue(model.momentumParameters.tensor("text_encoder_m.cls.predictions.decoder.bias") === model.momentumParameters.tensor("text_encoder_m.cls.predictions.bias"))
    }

    /// The online arena is in forward first-use order, so backward finishes gradients from the
    /// end of the arena towards the start: the MLM head last, the text embeddings first.
    func testArenaOrderFollowsFirstUse() throws {
        let model = try ALBEFModel(config: tinyConfig())
        let names = model.parameters.entries.map(\.name)
        func index(_ prefix: String) -> Int { names.firstIndex { $0.hasPrefix(prefix) }! }
        XCTAssertEqual(index("text_encoder.bert.embeddings"), 0)
        XCTAssertLessThan(index("text_encoder.bert.encoder.layer.1."), index("text_proj"))
        XCTAssertLessThan(index("text_proj"), index("visual_encoder"))
        XCTAssertLessThan(index("visual_encoder"), index("vision_proj"))
        XCTAssertLessThan(index("vision_proj"), index("temp"))
        XCTAssertLessThan(index("temp"), index("text_encoder.bert.encoder.layer.2."))
        XCTAssertLessThan(index("text_encoder.bert.encoder.layer.3."), index("itm_head"))
        XCTAssertLessThan(index("itm_head"), index("text_encoder.cls"))
    }
}

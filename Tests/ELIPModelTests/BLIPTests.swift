import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// A tiny BLIP configuration (no files needed).
func tinyBLIPConfig(prune: PruneConfig? = PruneConfig(beginLayer: [1, 2], numActLayers: [1, 2], keepRatio: [0.75, 0.5])) throws -> BLIPConfig {
    var c = BLIPConfig()
    c.imageRes = 64  // (64 // 16)^2 = 16 patches at patch 16
    c.vision.embedDim = 16; c.vision.depth = 4; c.vision.numHeads = 2; c.vision.mlpRatio = 2
    c.embedDim = 8
    c.queueSize = 12
    c.maxTextLength = 8
    c.prune = prune
    var b = BLIPConfig.medConfig
    b.hiddenSize = 16; b.numAttentionHeads = 2; b.numHiddenLayers = 3; b.intermediateSize = 24
    b.vocabSize = 200; b.maxPositionEmbeddings = 16; b.encoderWidth = 16
    c.bert = b
    try c.validate(file: "tiny")
    return c
}

final class BLIPTests: XCTestCase {
    /// One ELIP-BLIP step against the official code (shared/reference/blip-tiny): every tensor
    /// of expected.safetensors within tolerance, under the same names.
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/blip-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "blip")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "kept_index", "gradients", "state", "momentum (after EMA)"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        let gradNames = expected.names.filter { $0.hasPrefix("grad.") }
        XCTAssertEqual(gradNames.count, 598)
        XCTAssertEqual(Set(output.floats.keys.filter { $0.hasPrefix("grad.") }), Set(gradNames), "exactly the official trainable tensors")
        XCTAssertEqual(output.lossNames, ["ita", "itm", "lm"])
    }

    /// The decoder owns only its self-attention: its cross-attention and feed-forward are the
    /// encoder's tensors, named under both; the LM output is the word-embedding table.
    func testDecoderSharesAllButSelfAttention() throws {
        let m = try BLIPModel(config: tinyBLIPConfig())
        let p = m.parameters
        let shared = ["encoder.layer.1.crossattention.self.key.weight", "encoder.layer.2.intermediate.dense.bias",
                      "encoder.layer.0.output.LayerNorm.weight", "embeddings.word_embeddings.weight", "embeddings.LayerNorm.bias"]
        for n in shared {
            XCTAssertTrue(try XCTUnwrap(p.tensor("text_decoder.bert.\(n)")) === p.tensor("text_encoder.\(n)"), n)
        }
        XCTAssertNil(p.entries.first { $0.name.hasPrefix("text_decoder.bert.encoder.layer.0.crossattention") }, "shared tensors are stored once")
        let own = try XCTUnwrap(p.tensor("text_decoder.bert.encoder.layer.0.attention.self.query.weight"))
        XCTAssertFalse(own === p.tensor("text_encoder.encoder.layer.0.attention.self.query.weight"))
        XCTAssertTrue(p.tensor("text_decoder.cls.predictions.decoder.weight") === m.textEmbeddings.wordEmbeddings.weight)
        XCTAssertNil(p.tensor("text_encoder.embeddings.token_type_embeddings.weight"), "med.py has no token types")
        XCTAssertTrue(m.decays(parameter: "text_encoder.embeddings.LayerNorm.bias", shape: [16]), "one AdamW group: everything decays")
        // The state dict lists every name; it loads back bitwise.
        try m.initialiseRandomly(seed: 3)
        var w = SafetensorsWriter()
        try StateDict.add(m.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("blip-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)
        let file = try SafetensorsFile(path: path)
        for n in shared + ["cls.predictions.decoder.weight"] where !n.hasPrefix("cls") { XCTAssertTrue(file.contains("text_decoder.bert.\(n)"), n) }
        XCTAssertTrue(file.contains("text_decoder.cls.predictions.decoder.bias"))
        let m2 = try BLIPModel(config: tinyBLIPConfig())
        try StateDict.load(m2.stateLayout, from: file)
        XCTAssertEqual(Array(m2.parameters.values), Array(m.parameters.values))
        XCTAssertEqual(Array(m2.momentumParameters.values), Array(m.momentumParameters.values))
    }

    func makeBatch(_ c: BLIPConfig, batch: Int, seed: UInt64) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed)
        let images = try Tensor((0..<(batch * 3 * c.imageRes * c.imageRes)).map { _ in g.nextNormal() }, shape: [batch, 3, c.imageRes, c.imageRes])
        let l = c.maxTextLength
        var ids: [Int] = [], mask: [Int] = []
        for b in 0..<batch {
            let used = l - (b % 3)
            for i in 0..<l {
                ids.append(i == 0 ? 101 : i < used - 1 ? 1000 % 150 + Int(g.next() % 40) + 1 : i == used - 1 ? 102 : 0)
                mask.append(i < used ? 1 : 0)
            }
        }
        return ImageTextBatch(images: images, text: try TextBatch(ids: ids, mask: mask, batch: batch, length: l))
    }

    /// Training-mode steps (dropout, drawn negatives) replay bit for bit from the same seed; the
    /// drawn negatives are never the positive; the queue pointer advances.
    func testSeededTrainingStepReplays() throws {
        let c = try tinyBLIPConfig()
        var results: [[Float]] = []
        for _ in 0..<2 {
            let m = try BLIPModel(config: c)
            try m.initialiseRandomly(seed: 21)
            var ctx = StepContext(seed: 23, dropout: true)
            ctx.progress = .steadyState
            let out = try m.step(makeBatch(c, batch: 4, seed: 22), context: &ctx)
            try Autograd.backward(from: out.total)
            XCTAssertEqual(Set(out.losses.keys), ["ita", "itm", "lm"])
            for l in out.losses.values { XCTAssertTrue(l.scalar.isFinite) }
            XCTAssertEqual(m.queue.pointer, 4)
            XCTAssertEqual(out.keptIndices.map { $0[0].count }, [12, 8])
            let w = out.tensors["itm_weights_t2i"]!.toArray()
            for b in 0..<4 { XCTAssertEqual(w[b * 4 + b], 0, "the positive is never a negative") }
            results.append(out.losses.keys.sorted().map { out.losses[$0]!.scalar } + Array(m.parameters.gradients))
        }
        XCTAssertEqual(results[0], results[1])
    }

    /// Bad BLIP configs name the key.
    func testConfigChecks() throws {
        var c = try tinyBLIPConfig()
        c.maxTextLength = 40
        XCTAssertThrowsError(try c.validate(file: "x")) { XCTAssertTrue("\($0)".contains("max_length: 40 exceeds max_position_embeddings 16"), "\($0)") }
        c = try tinyBLIPConfig()
        c.bert.addCrossAttention = false
        XCTAssertThrowsError(try c.validate(file: "x")) { XCTAssertTrue("\($0)".contains("add_cross_attention must be true"), "\($0)") }
        c = try tinyBLIPConfig()
        c.vision.patchSize = 32  // 4 patches, but (64 // 16)^2 = 16 is the keep base
        XCTAssertThrowsError(try c.validate(file: "x")) { XCTAssertTrue("\($0)".contains("the ViT has only 4 patches"), "\($0)") }
    }
}

final class BLIPImportAndRetrievalTests: XCTestCase {
    /// BLIP's start from DeiT + bert-base: ViT copied; text encoder, the decoder's own
    /// self-attention and its LM head from BERT (the two added word rows and bias entries stay
    /// as initialised); cross-attention random; momentum = online.
    func testImportPretrainedParts() throws {
        let c = try tinyBLIPConfig()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blip-import-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var g = SeededGenerator(seed: 1)
        func write(_ arena: ParameterArena, rename: (String) -> String, to name: String, extra: (inout SafetensorsWriter) throws -> Void = { _ in }) throws -> ([String: [Float]], String) {
            var w = SafetensorsWriter(), values: [String: [Float]] = [:]
            for e in arena.entries {
                let v = (0..<e.count).map { _ in g.nextUniform() }
                values[rename(e.name)] = v
                try w.add(rename(e.name), floats: v, shape: e.shape)
            }
            try extra(&w)
            let path = dir.appendingPathComponent(name).path
            try w.write(to: path)
            return (values, path)
        }
        let vitArena = ParameterArena(capacity: 1 << 20)
        _ = try VisionTransformer(Scope(arena: vitArena), config: c.vision, imageRes: c.imageRes)
        let (vitValues, vitPath) = try write(vitArena, rename: { $0 }, to: "deit.safetensors")
        // bert-base: 2 fewer word rows than BLIP's table, token types, an MLM head.
        var plain = c.bert
        plain.vocabSize = c.bert.vocabSize - 2
        plain.typeVocabSize = 2
        plain.addCrossAttention = false
        let bertArena = ParameterArena(capacity: 1 << 22)
        try makePlainBert(Scope(arena: bertArena)["bert"], config: plain, head: Scope(arena: bertArena)["cls"])
        let (bertValues, bertPath) = try write(bertArena, rename: { $0 }, to: "bert.safetensors")

        let m = try BLIPModel(config: c)
        _ = try m.importPretrained(["vit": SafetensorsFile(path: vitPath), "bert": SafetensorsFile(path: bertPath)], seed: 5)
        let p = m.parameters
        XCTAssertEqual(p.tensor("visual_encoder.blocks.1.mlp.fc2.weight")?.toArray(), vitValues["blocks.1.mlp.fc2.weight"])
        let selfAttention = bertValues["bert.encoder.layer.2.attention.self.value.weight"]
        XCTAssertEqual(p.tensor("text_encoder.encoder.layer.2.attention.self.value.weight")?.toArray(), selfAttention)
        XCTAssertEqual(p.tensor("text_decoder.bert.encoder.layer.2.attention.self.value.weight")?.toArray(), selfAttention,
                       "the decoder's own self-attention starts from bert-base too")
        XCTAssertEqual(p.tensor("text_decoder.cls.predictions.transform.dense.weight")?.toArray(), bertValues["cls.predictions.transform.dense.weight"])
        let words = try XCTUnwrap(p.tensor("text_encoder.embeddings.word_embeddings.weight")).toArray()
        let h = c.bert.hiddenSize, given = try XCTUnwrap(bertValues["bert.embeddings.word_embeddings.weight"])
        XCTAssertEqual(Array(words[0..<given.count]), given)
        XCTAssertNotEqual(Array(words[given.count..<(given.count + h)]), [Float](repeating: 0, count: h), "[DEC] keeps its random row")
        let bias = try XCTUnwrap(p.tensor("text_decoder.cls.predictions.bias")).toArray()
        XCTAssertEqual(Array(bias[0..<(plain.vocabSize)]), bertValues["cls.predictions.bias"])
        XCTAssertEqual(Array(bias[plain.vocabSize...]), [0, 0])
        XCTAssertEqual(Array(m.momentumParameters.values).count, m.momentumParameters.used)
        XCTAssertEqual(m.momentumParameters.tensor("text_encoder_m.encoder.layer.1.output.dense.weight")?.toArray(),
                       p.tensor("text_encoder.encoder.layer.1.output.dense.weight")?.toArray())
    }

    /// BLIP's re-ranking score is the ITM logit of the [ENC]-framed caption with the image plus
    /// the feature similarity.
    func testMatchScoreIsITMLogitPlusSimilarity() throws {
        let m = try BLIPModel(config: tinyBLIPConfig())
        try m.initialiseRandomly(seed: 8)
        var g = SeededGenerator(seed: 9)
        let images = try Tensor((0..<(2 * 3 * 64 * 64)).map { _ in g.nextNormal() }, shape: [2, 3, 64, 64])
        let text = try TextBatch(ids: [101, 7, 9, 102, 101, 8, 102, 0], mask: [1, 1, 1, 1, 1, 1, 1, 0], batch: 2, length: 4)
        let (tokens, _) = try m.encodeImages(images)
        XCTAssertEqual(tokens.shape, [2, 17, 16], "retrieval encodes images unpruned")
        let (states, _) = try m.encodeTexts(text)
        let withSim = try m.matchScores(texts: text, textStates: states, images: tokens, imageRows: [1, 0], similarities: [0.5, -2])
        let without = try m.matchScores(texts: text, textStates: states, images: tokens, imageRows: [1, 0], similarities: [0, 0])
        XCTAssertEqual(withSim[0] - without[0], 0.5, accuracy: 1e-5)
        XCTAssertEqual(withSim[1] - without[1], -2, accuracy: 1e-5)
    }
}

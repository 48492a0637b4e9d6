import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors
import XCTest

final class PretrainedTests: XCTestCase {
    /// A real pretrained BERT (all-MiniLM-L6-v2) reproduces HuggingFace's hidden states.
    func testMiniLMHiddenStatesMatchHuggingFace() throws {
        let weights = try SafetensorsFile(path: SharedData.path("data/minilm/model.safetensors"))
        let config = try BertConfig.load(SharedData.path("data/minilm/config.json"))
        let expected = try SafetensorsFile(path: SharedData.path("reference/text/minilm_expected.safetensors"))
        let shape = try expected.entry("input_ids").shape
        let text = try TextBatch(ids: expected.int64s("input_ids").map { Int($0) },
                                 mask: expected.int64s("attention_mask").map { Int($0) }, batch: shape[0], length: shape[1])
        let encoder = try BertEncoder(config: config, weights: weights)
        let hidden = try encoder.encode(text)
        let want = try expected.floats("last_hidden_state")
        XCTAssertEqual(hidden.shape, try expected.entry("last_hidden_state").shape)
        let got = hidden.toArray()
        let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(worst, 1e-4, "max |difference| of hidden states")
    }

    func testHuggingFaceNameVariants() {
        XCTAssertEqual(PretrainedImport.huggingFaceBertNames("embeddings.LayerNorm.weight"),
                       ["embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.weight",
                        "embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.gamma"])
        XCTAssertEqual(PretrainedImport.huggingFaceBertNames("encoder.layer.0.output.LayerNorm.bias").suffix(2),
                       ["encoder.layer.0.output.LayerNorm.beta", "bert.encoder.layer.0.output.LayerNorm.beta"])
    }

    /// Legacy names (bert. prefix, gamma/beta) and extra buffers load like modern ones.
    func testLegacyBertCheckpointLoads() throws {
        var config = BertConfig()
        config.hiddenSize = 8; config.numAttentionHeads = 2; config.numHiddenLayers = 1; config.intermediateSize = 16
        config.vocabSize = 20; config.maxPositionEmbeddings = 10
        let arena = ParameterArena(capacity: 1 << 16)
        try makePlainBert(Scope(arena: arena), config: config)
        var writer = SafetensorsWriter()
        var g = SeededGenerator(seed: 1)
        var values: [String: [Float]] = [:]
        for e in arena.entries {
            let v = (0..<e.count).map { _ in g.nextUniform() }
            values[e.name] = v
            var name = "bert." + e.name
            if name.hasSuffix("LayerNorm.weight") { name = String(name.dropLast(6)) + "gamma" }
            if name.hasSuffix("LayerNorm.bias") { name = String(name.dropLast(4)) + "beta" }
            try writer.add(name, floats: v, shape: e.shape)
        }
        try writer.add("bert.embeddings.position_ids", int64s: (0..<10).map(Int64.init), shape: [1, 10])
        try writer.add("cls.predictions.bias", floats: [Float](repeating: 0, count: 20), shape: [20])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("legacy-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try writer.write(to: path)
        let enc = try BertEncoder(config: config, weights: SafetensorsFile(path: path))
        for (e, t) in zip(enc.arena.entries, enc.arena.tensors) { XCTAssertEqual(t.toArray(), values[e.name], e.name) }
        // A missing tensor is an error that names it.
        var partial = SafetensorsWriter()
        try partial.add("bert.embeddings.word_embeddings.weight", floats: values["embeddings.word_embeddings.weight"]!, shape: [20, 8])
        try partial.write(to: path)
        XCTAssertThrowsError(try BertEncoder(config: config, weights: SafetensorsFile(path: path))) { e in
            XCTAssertTrue("\(e)".contains("missing"), "\(e)")
        }
    }

    /// PyTorch bicubic (align_corners=False, A=-0.75): weights sum to one; same size is the
    /// identity; a constant grid stays constant; a hand-computed 2 -> 4 case.
    func testBicubicPositionResize() throws {
        for (i, o) in [(14, 16), (16, 14), (2, 4), (7, 7)] {
            for taps in PretrainedImport.bicubicWeights(input: i, output: o) {
                XCTAssertEqual(taps.reduce(Float(0)) { $0 + $1.1 }, 1, accuracy: 1e-6)
            }
        }
        let w = PretrainedImport.bicubicWeights(input: 2, output: 4)
        // Output 0 samples at -0.25: taps clamp to index 0 except the last (index 1, weight far(1.25)).
        let out0 = w[0].reduce(Float(0)) { $0 + $1.1 * Float($1.0) }
        XCTAssertEqual(out0, -0.10546875, accuracy: 1e-7)
        let d = 3, g = 4
        var grid: [Float] = [9, 9, 9]
        var g2 = SeededGenerator(seed: 3)
        for _ in 0..<(g * g * d) { grid.append(g2.nextUniform()) }
        XCTAssertEqual(try PretrainedImport.resizePositionEmbedding(grid, shape: [1, 17, 3], toTokens: 17), grid)
        let constant = [Float](repeating: 0.5, count: (1 + 16) * d)
        let up = try PretrainedImport.resizePositionEmbedding(constant, shape: [1, 17, 3], toTokens: 1 + 36)
        XCTAssertEqual(up.count, 37 * 3)
        for v in up { XCTAssertEqual(v, 0.5, accuracy: 1e-6) }
        XCTAssertThrowsError(try PretrainedImport.resizePositionEmbedding(constant, shape: [1, 17, 3], toTokens: 20))
    }

    /// Saving and loading a full ALBEF state dict round-trips every tensor and the queue pointer.
    func testStateDictRoundTrip() throws {
        let c = try tinyConfig()
        let a = try ALBEFModel(config: c)
        try a.initialiseRandomly(seed: 5)
        a.queue.pointer = 3
        var w = SafetensorsWriter()
        try StateDict.add(a.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("albef-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)
        let b = try ALBEFModel(config: c)
        try StateDict.load(b.stateLayout, from: SafetensorsFile(path: path))
        XCTAssertTrue(Array(a.parameters.values) == Array(b.parameters.values), "online weights differ")
        XCTAssertTrue(Array(a.momentumParameters.values) == Array(b.momentumParameters.values), "momentum weights differ")
        XCTAssertTrue(a.queue.imageQueue.toArray() == b.queue.imageQueue.toArray(), "queues differ")
        XCTAssertEqual(b.queue.pointer, 3)
        // A truncated file is a clear error, never a crash.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try StateDict.load(b.stateLayout, from: SafetensorsFile(path: path))) { e in XCTAssertTrue("\(e)".contains(path), "\(e)") }
    }
}

/// A plain BERT's parameters (`embeddings.*`, `encoder.layer.N.*`; with `head`, the MLM head
/// `predictions.*` under it), as a HuggingFace checkpoint names them.
func makePlainBert(_ scope: Scope, config: BertConfig, head: Scope? = nil) throws {
    let embeddings = try BertEmbeddings(scope["embeddings"], config: config)
    _ = try BertLayerStack(scope["encoder"], config: config, layers: 0..<config.numHiddenLayers, crossAttention: { _ in false })
    if let head { _ = try BertLMHead(head["predictions"], config: config, wordEmbeddings: embeddings.wordEmbeddings.weight) }
}

/// A tiny ALBEF configuration (no files needed).
func tinyConfig(imageRes: Int = 32, prune: PruneConfig? = PruneConfig(beginLayer: [1, 2], numActLayers: [1, 2], keepRatio: [0.75, 0.5])) throws -> ALBEFConfig {
    var c = ALBEFConfig()
    c.imageRes = imageRes
    c.visionWidth = 16
    c.vision.embedDim = 16; c.vision.depth = 4; c.vision.numHeads = 2; c.vision.mlpRatio = 2; c.vision.patchSize = 8
    c.embedDim = 8
    c.queueSize = 12
    c.prune = prune
    var b = BertConfig()
    b.hiddenSize = 16; b.numAttentionHeads = 2; b.numHiddenLayers = 4; b.intermediateSize = 32
    b.vocabSize = 200; b.maxPositionEmbeddings = 16; b.fusionLayer = 2; b.encoderWidth = 16
    c.bert = b
    try c.validate(file: "tiny")
    return c
}

final class ImportTests: XCTestCase {
    /// A DeiT-style ViT at another resolution and a HuggingFace BertForMaskedLM file become an
    /// ALBEF model: ViT and BERT tensors copied (position grid resized), cross-attention random.
    func testImportPretrainedParts() throws {
        let c = try tinyConfig(imageRes: 32)  // 4x4 patches of 8 px
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Source ViT at 24 px (3x3 grid) with a DeiT head that must be ignored.
        var vitConfig = c
        vitConfig.imageRes = 24
        let vitArena = ParameterArena(capacity: 1 << 20)
        _ = try VisionTransformer(Scope(arena: vitArena), config: vitConfig.vision, imageRes: 24)
        var g = SeededGenerator(seed: 1)
        var vitWriter = SafetensorsWriter()
        var vitValues: [String: [Float]] = [:]
        for e in vitArena.entries {
            let v = (0..<e.count).map { _ in g.nextUniform() }
            vitValues[e.name] = v
            try vitWriter.add(e.name, floats: v, shape: e.shape)
        }
        try vitWriter.add("head.weight", floats: [1, 2], shape: [2, 1])
        let vitPath = dir.appendingPathComponent("deit.safetensors").path
        try vitWriter.write(to: vitPath)
        // Source BERT without fusion: 4 plain layers plus an MLM head, "bert." prefix.
        var plain = c.bert
        plain.fusionLayer = nil
        let bertArena = ParameterArena(capacity: 1 << 20)
        try makePlainBert(Scope(arena: bertArena)["bert"], config: plain, head: Scope(arena: bertArena)["cls"])
        var bertWriter = SafetensorsWriter()
        var bertValues: [String: [Float]] = [:]
        for e in bertArena.entries {
            let v = (0..<e.count).map { _ in g.nextUniform() }
            bertValues[e.name] = v
            try bertWriter.add(e.name, floats: v, shape: e.shape)
        }
        let bertPath = dir.appendingPathComponent("bert.safetensors").path
        try bertWriter.write(to: bertPath)

        let model = try ALBEFModel(config: c)
        _ = try model.importPretrained(["vit": SafetensorsFile(path: vitPath), "bert": SafetensorsFile(path: bertPath)], seed: 3)
        XCTAssertEqual(model.parameters.tensor("visual_encoder.blocks.2.attn.qkv.weight")!.toArray(), vitValues["blocks.2.attn.qkv.weight"])
        XCTAssertEqual(model.parameters.tensor("text_encoder.bert.encoder.layer.3.attention.self.key.weight")!.toArray(),
                       bertValues["bert.encoder.layer.3.attention.self.key.weight"])
        XCTAssertEqual(model.parameters.tensor("text_encoder.cls.predictions.bias")!.toArray(), bertValues["cls.predictions.bias"])
        let pos = model.parameters.tensor("visual_encoder.pos_embed")!
        XCTAssertEqual(pos.shape, [1, 17, 16])
        XCTAssertEqual(Array(pos.toArray()[0..<16]), Array(vitValues["pos_embed"]![0..<16]), "[CLS] position kept")
        let cross = model.parameters.tensor("text_encoder.bert.encoder.layer.2.crossattention.self.query.weight")!.toArray()
        XCTAssertGreaterThan(cross.map(abs).max()!, 0, "cross-attention initialised randomly")
        for (e, t) in zip(model.momentumParameters.entries, model.momentumParameters.tensors) {
            XCTAssertTrue(t.toArray() == model.parameters.tensor(e.name.replacingOccurrences(of: "_m.", with: "."))!.toArray(), "momentum \(e.name) = online")
        }
        // A ViT file lacking a tensor is refused with its name.
        var broken = SafetensorsWriter()
        try broken.add("cls_token", floats: vitValues["cls_token"]!, shape: [1, 1, 16])
        try broken.write(to: vitPath)
        XCTAssertThrowsError(try model.importPretrained(["vit": SafetensorsFile(path: vitPath), "bert": SafetensorsFile(path: bertPath)], seed: 3)) {
            XCTAssertTrue("\($0)".contains("visual_encoder."), "\($0)")
        }
    }
}

import ELIPConfig
import ELIPModel
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// `model: meter` without reference data: config keys and their errors, the keep rule, the
/// optimizer's name rules, and a training step with its own draws.
final class METERModelTests: XCTestCase {
    static let tinyYAML = """
        model: meter
        image_size: 64
        patch_size: 16
        clip: {width: 32, heads: 2, blocks: 11}
        roberta: {vocab_size: 60, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 20, type_vocab_size: 1, layer_norm_eps: 1.0e-5}
        hidden_size: 24
        num_heads: 2
        num_top_layer: 1
        max_text_len: 8
        """

    static func config(_ yaml: String = tinyYAML) throws -> METERConfig {
        let root = try ConfigSection.parse(yaml, source: "test.yaml")
        let c = try XCTUnwrap(try ModelRegistry.readConfig(root, location: ConfigLocation(searchFolders: [])) as? METERConfig)
        try root.finish()
        try c.validate(file: "test.yaml")
        return c
    }

    func testKeepBaseKeyAndN0Fallback() throws {
        let c = try Self.config()
        XCTAssertEqual(c.patchCount, 16)
        XCTAssertEqual(c.keepBase, 16, "no keep_base: floor(N0 * ratio)")
        XCTAssertEqual(c.prune?.keepCounts(patchCount: c.keepBase), [14, 11, 7])
        XCTAssertEqual(c.specialTokens.mask, 59, "<mask> is RoBERTa's last id")
        let official = try Self.config(Self.tinyYAML + "\nkeep_base: 9")
        XCTAssertEqual(official.prune?.keepCounts(patchCount: official.keepBase), [8, 6, 4])
        XCTAssertEqual(METERConfig().keepBase, 49, "the preset uses the official (224 // 32)^2")
    }

    func testBadConfigsAreClearErrors() throws {
        func fails(_ extra: String, _ needle: String) {
            XCTAssertThrowsError(try Self.config(Self.tinyYAML + "\n" + extra), extra) { XCTAssertTrue("\($0)".contains(needle), "\($0)") }
        }
        fails("keep_base: 100", "keep_base")           // keeps more than the image has
        fails("max_text_len: 19", "max_text_len")      // positions start at 2
        fails("image_size: 70", "image_size")          // not a multiple of the patch
        fails("num_heads: 5", "hidden_size")
        fails("keep_bas: 3", "keep_bas")               // typo
        XCTAssertThrowsError(try Self.config(Self.tinyYAML.replacingOccurrences(of: "width: 32", with: "width: 64")), "pruning needs equal widths")
    }

    func testOptimizerRulesByName() throws {
        let m = try METERModel(config: Self.config())
        XCTAssertTrue(m.decays(parameter: "vit_model.visual.ln_pre.weight", shape: [32]))
        XCTAssertTrue(m.decays(parameter: "vit_model.visual.class_embedding", shape: [32]))
        XCTAssertFalse(m.decays(parameter: "vit_model.visual.ln_pre.bias", shape: [32]))
        XCTAssertFalse(m.decays(parameter: "text_transformer.embeddings.LayerNorm.weight", shape: [32]))
        XCTAssertFalse(m.decays(parameter: "cross_modal_text_layers.0.output.dense.bias", shape: [24]))
        XCTAssertEqual(m.learningRateMultiplier(parameter: "cross_modal_text_layers.0.output.dense.weight"), 5)
        XCTAssertEqual(m.learningRateMultiplier(parameter: "mlm_score.bias"), 5)
        XCTAssertEqual(m.learningRateMultiplier(parameter: "itm_score.fc.weight"), 5)
        XCTAssertEqual(m.learningRateMultiplier(parameter: "token_type_embeddings.weight"), 1)
        XCTAssertEqual(m.learningRateMultiplier(parameter: "text_transformer.encoder.layer.0.output.dense.weight"), 1)
    }

    /// A step with its own draws: finite losses, ITM pass over half positives, both passes pruned
    /// to the keep counts, and the same draws for the same sampling seed.
    func testStepWithOwnDraws() throws {
        let model = try METERModel(config: Self.config())
        try model.initialiseRandomly(seed: 3)
        let bs = 4, l = 8
        var ids: [Int] = [], mask: [Int] = []
        for b in 0..<bs {
            let n = 4 + b
            let row = [0] + (1..<(n - 1)).map { 4 + ($0 * 7 + b) % 50 } + [2]
            ids += row + [Int](repeating: 1, count: l - n)
            mask += [Int](repeating: 1, count: n) + [Int](repeating: 0, count: l - n)
        }
        let images = try Tensor((0..<(bs * 3 * 64 * 64)).map { Float(($0 * 37) % 101) / 50 - 1 }, shape: [bs, 3, 64, 64])
        let batch = ImageTextBatch(images: images, text: try TextBatch(ids: ids, mask: mask, batch: bs, length: l))
        func run() throws -> StepOutput {
            var c = StepContext(seed: 7, dropout: false)
            defer { Autograd.reset() }
            return try model.step(batch, context: &c)
        }
        let a = try run(), b = try run()
        XCTAssertTrue(a.total.scalar.isFinite)
        XCTAssertEqual(a.total.scalar, b.total.scalar)
        XCTAssertEqual(a.keptIndicesByPass["mlm"]?.map { $0.first?.count ?? 0 }, [14, 11, 7])
        XCTAssertEqual(a.keptIndicesByPass["itm"]?.map { $0.first?.count ?? 0 }, [14, 11, 7])
        XCTAssertEqual(a.tensors["itm_logits"]?.shape, [bs, 2])
        XCTAssertEqual(a.tensors["image_embeds.itm"]?.shape, [bs, 9, 32])
    }

    /// A batch whose captions hold only special tokens gets no masked token: MLM contributes 0
    /// (officially NaN) and the step stays finite.
    func testBatchWithoutMaskedTokensSkipsMLM() throws {
        let model = try METERModel(config: Self.config())
        try model.initialiseRandomly(seed: 4)
        let bs = 2, l = 8
        let ids = (0..<bs).flatMap { _ in [0, 2] + [Int](repeating: 1, count: l - 2) }
        let mask = (0..<bs).flatMap { _ in [1, 1] + [Int](repeating: 0, count: l - 2) }
        let images = try Tensor((0..<(bs * 3 * 64 * 64)).map { Float($0 % 13) / 6 - 1 }, shape: [bs, 3, 64, 64])
        var c = StepContext(seed: 1, dropout: false)
        defer { Autograd.reset() }
        let out = try model.step(ImageTextBatch(images: images, text: TextBatch(ids: ids, mask: mask, batch: bs, length: l)), context: &c)
        XCTAssertEqual(out.losses["mlm"]?.scalar, 0)
        XCTAssertTrue(out.total.scalar.isFinite)
        try Autograd.backward(from: out.total)
    }

    /// OpenAI CLIP names (`visual.*`, plus a 12th block and `proj` the model does not use) and
    /// HuggingFace RoBERTa names (`roberta.*`) land under `vit_model.visual.*` and
    /// `text_transformer.*`; a smaller position grid is resized; a missing tensor is an error.
    func testImportFromCLIPAndRoBERTaNames() throws {
        let source = try METERModel(config: Self.config())
        try source.initialiseRandomly(seed: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("meter-import-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var clip = SafetensorsWriter(), roberta = SafetensorsWriter()
        for (e, t) in zip(source.parameters.entries, source.parameters.tensors) {
            if e.name.hasPrefix("vit_model.") {
                var shape = e.shape, values = t.toArray()
                if e.name.hasSuffix("positional_embedding") {  // a 2x2 grid: resized to 4x4
                    shape = [5, e.shape[1]]
                    values = Array(values[0..<(5 * e.shape[1])])
                }
                try clip.add(String(e.name.dropFirst("vit_model.".count)), floats: values, shape: shape)
            } else if e.name.hasPrefix("text_transformer.") {
                try roberta.add("roberta." + e.name.dropFirst("text_transformer.".count), floats: t.toArray(), shape: e.shape)
            }
        }
        try clip.add("visual.proj", floats: [Float](repeating: 0, count: 32 * 8), shape: [32, 8])
        let clipPath = dir.appendingPathComponent("clip.safetensors").path, robertaPath = dir.appendingPathComponent("roberta.safetensors").path
        try clip.write(to: clipPath)
        try roberta.write(to: robertaPath)

        let target = try METERModel(config: Self.config())
        let summary = try target.importPretrained(["clip": SafetensorsFile(path: clipPath), "roberta": SafetensorsFile(path: robertaPath)], seed: 5)
        XCTAssertEqual(summary.count, 3)
        for (e, t) in zip(target.parameters.entries, target.parameters.tensors) where e.name.hasPrefix("text_transformer.") || e.name.contains("conv1") {
            XCTAssertEqual(t.toArray(), source.parameters.tensor(e.name)?.toArray(), e.name)
        }
        let pos = try XCTUnwrap(target.parameters.tensor("vit_model.visual.positional_embedding")).toArray()
        let given = try XCTUnwrap(source.parameters.tensor("vit_model.visual.positional_embedding")).toArray()
        XCTAssertEqual(Array(pos[0..<32]), Array(given[0..<32]), "the CLS row is kept")
        XCTAssertEqual(pos.count, 17 * 32)

        var partial = SafetensorsWriter()
        try partial.add("roberta.embeddings.word_embeddings.weight", floats: [Float](repeating: 0, count: 60 * 32), shape: [60, 32])
        let partialPath = dir.appendingPathComponent("partial.safetensors").path
        try partial.write(to: partialPath)
        XCTAssertThrowsError(try target.importPretrained(["clip": SafetensorsFile(path: clipPath), "roberta": SafetensorsFile(path: partialPath)], seed: 5)) {
            XCTAssertTrue("\($0)".contains("missing (RoBERTa)"), "\($0)")
        }
    }
}

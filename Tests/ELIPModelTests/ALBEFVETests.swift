import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// The SNLI-VE task model against the official step (../shared/reference/albef-ve-tiny), its
/// checkpoint loading from a pre-training state dict, and its input checks.
final class ALBEFVETests: XCTestCase {
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/albef-ve-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "albef-ve")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "evaluation", "gradients", ReferenceStep.keyBiasGroup, "momentum (after EMA)"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        // Every expected tensor is produced: every trainable parameter's gradient, eval outputs.
        for n in expected.names { XCTAssertTrue(output.floats[n] != nil || output.ints[n] != nil, n) }
        XCTAssertGreaterThan(expected.names.filter { $0.hasPrefix("grad.") }.count, 400)
        XCTAssertEqual(output.floats["eval.acc"]?.values, [0.5])
    }

    private func tinyVE(imageRes: Int, distill: Bool = true) throws -> ALBEFVEConfig {
        let p = try tinyConfig(imageRes: 32, prune: nil)
        var c = ALBEFVEConfig()
        c.imageRes = imageRes
        c.vision = p.vision
        c.bert = p.bert
        c.distill = distill
        try c.validate(file: "tiny")
        return c
    }

    /// VE.py's loading of an ALBEF pre-training checkpoint written by this project: `bert.`
    /// dropped, both position grids resized 4x4 -> 6x6, online and momentum encoders loaded,
    /// cls_head and cls_head_m left as they were.
    func testLoadsAPretrainingCheckpoint() throws {
        let pretrain = try ALBEFModel(config: tinyConfig(imageRes: 32, prune: nil))
        try pretrain.initialiseRandomly(seed: 3)
        pretrain.momentumParameters.initialise(seed: 9)  // momentum differs from online
        var w = SafetensorsWriter()
        try StateDict.add(pretrain.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-ve-load-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)

        let ve = try ALBEFVEModel(config: tinyVE(imageRes: 48))
        try ve.initialiseRandomly(seed: 5)
        let head = ve.parameters.tensor("cls_head.2.weight")!.toArray()
        let plan = try ve.loadPretrainingCheckpoint(SafetensorsFile(path: path))
        XCTAssertEqual(Set(plan.keptAtInit), ["cls_head.0.weight", "cls_head.0.bias", "cls_head.2.weight", "cls_head.2.bias",
                                             "cls_head_m.0.weight", "cls_head_m.0.bias", "cls_head_m.2.weight", "cls_head_m.2.bias"])
        XCTAssertEqual(ve.parameters.tensor("cls_head.2.weight")!.toArray(), head)
        for (mine, theirs) in [("text_encoder.encoder.layer.3.crossattention.self.key.weight", "text_encoder.bert.encoder.layer.3.crossattention.self.key.weight"),
                               ("text_encoder.embeddings.word_embeddings.weight", "text_encoder.bert.embeddings.word_embeddings.weight"),
                               ("visual_encoder.blocks.1.attn.qkv.weight", "visual_encoder.blocks.1.attn.qkv.weight")] {
            XCTAssertEqual(ve.parameters.tensor(mine)!.toArray(), pretrain.parameters.tensor(theirs)!.toArray(), mine)
        }
        XCTAssertEqual(ve.momentumParameters.tensor("text_encoder_m.encoder.layer.0.output.dense.weight")!.toArray(),
                       pretrain.momentumParameters.tensor("text_encoder_m.bert.encoder.layer.0.output.dense.weight")!.toArray())
        for name in ["visual_encoder.pos_embed", "visual_encoder_m.pos_embed"] {
            let source = (pretrain.parameters.tensor(name) ?? pretrain.momentumParameters.tensor(name))!
            let resized = try PretrainedImport.resizePositionEmbedding(source.toArray(), shape: source.shape, toTokens: 37)
            XCTAssertEqual((ve.parameters.tensor(name) ?? ve.momentumParameters.tensor(name))!.toArray(), resized, name)
        }
    }

    /// Labels are required and must be 0, 1 or 2; without distillation the loss is the plain
    /// cross-entropy and there is no momentum model.
    func testLabelsAndDistillationOff() throws {
        let model = try ALBEFVEModel(config: tinyVE(imageRes: 32, distill: false))
        try model.initialiseRandomly(seed: 1)
        XCTAssertEqual(model.stateLayout.arenas.count, 1)
        var g = SeededGenerator(seed: 2)
        let images = try Tensor((0..<(2 * 3 * 32 * 32)).map { _ in g.nextUniform() - 0.5 }, shape: [2, 3, 32, 32])
        let text = try TextBatch(ids: [101, 7, 8, 0, 101, 9, 10, 11], mask: [1, 1, 1, 0, 1, 1, 1, 1], batch: 2, length: 4)
        var context = StepContext(seed: 0, dropout: false)
        for labels in [nil, [0], [0, 3], [-1, 2]] as [[Int]?] {
            XCTAssertThrowsError(try model.step(ImageTextBatch(images: images, text: text, labels: labels), context: &context)) {
                XCTAssertTrue("\($0)".contains("label"), "\($0)")
            }
        }
        let out = try model.step(ImageTextBatch(images: images, text: text, labels: [2, 0]), context: &context)
        let logits = try XCTUnwrap(out.tensors["prediction"]).toArray()
        func ce(_ row: ArraySlice<Float>, _ y: Int) -> Double {
            let m = Double(row.max()!), s = row.reduce(0.0) { $0 + exp(Double($1) - m) }
            return -(Double(row[row.startIndex + y]) - m - log(s))
        }
        let expected = (ce(logits[0..<3], 2) + ce(logits[3..<6], 0)) / 2
        XCTAssertEqual(Double(out.total.scalar), expected, accuracy: 1e-5)
    }
}

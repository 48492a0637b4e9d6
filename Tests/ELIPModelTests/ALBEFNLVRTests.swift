import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// The NLVR2 task model against the official step (../shared/reference/albef-nlvr-tiny), its
/// shared cross-attention key/value, its checkpoint loading and its input checks.
final class ALBEFNLVRTests: XCTestCase {
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/albef-nlvr-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "albef-nlvr2")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "evaluation", "absolute: acc", "gradients", ReferenceStep.keyBiasGroup, "momentum (after EMA)"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        for n in expected.names { XCTAssertTrue(output.floats[n] != nil || output.ints[n] != nil, n) }
        // The shared key/value gradient is reported once, under the even layer.
        XCTAssertNotNil(output.floats["grad.text_encoder.encoder.layer.6.crossattention.self.value.weight"])
        XCTAssertNil(output.floats["grad.text_encoder.encoder.layer.7.crossattention.self.value.weight"])
        XCTAssertEqual(output.floats["eval.acc"]?.values.first ?? -1, 2.0 / 3.0, accuracy: 1e-6)
    }

    /// The base model's size as SPEC-ALBEF-TASKS §4 counts it (PyTorch's parameters(): each
    /// shared key/value once).
    func testBaseParameterCounts() throws {
        let counts = try ALBEFNLVRModel.parameterCounts(ALBEFNLVRConfig())
        XCTAssertEqual(counts.trainable, 259_381_250)
        XCTAssertEqual(counts.textEncoder, 172_698_624)
        XCTAssertEqual(counts.momentum, 259_381_250)
    }

    private func tinyNLVR(imageRes: Int = 32, distill: Bool = true) throws -> ALBEFNLVRConfig {
        let p = try tinyConfig(imageRes: 32, prune: nil)
        var c = ALBEFNLVRConfig()
        c.imageRes = imageRes
        c.vision = p.vision
        c.bert = p.bert
        c.bert.numHiddenLayers = ALBEFNLVRConfig.textEncoderLayers
        c.bert.fusionLayer = ALBEFNLVRConfig.firstPairedLayer
        c.distill = distill
        try c.validate(file: "tiny")
        return c
    }

    private func batch(pairs: Int, seed: UInt64) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed)
        let images = try Tensor((0..<(2 * pairs * 3 * 32 * 32)).map { _ in g.nextUniform() - 0.5 }, shape: [2 * pairs, 3, 32, 32])
        let ids = (0..<pairs).flatMap { b in [101, 7 + b, 8, b % 2 == 0 ? 0 : 9] }
        let mask = (0..<pairs).flatMap { b in [1, 1, 1, b % 2 == 0 ? 0 : 1] }
        return ImageTextBatch(images: images, text: try TextBatch(ids: ids, mask: mask, batch: pairs, length: 4),
                              labels: (0..<pairs).map { $0 % 2 })
    }

    /// Layers 6+2i and 7+2i hold one key and one value parameter (named under both), in the
    /// online and the momentum encoder; queries are not shared.
    func testCrossAttentionKeyValueSharedPerLayerPair() throws {
        let model = try ALBEFNLVRModel(config: tinyNLVR())
        for (arena, prefix) in [(model.parameters, "text_encoder"), (model.momentumParameters, "text_encoder_m")] {
            for pair in stride(from: 6, to: 18, by: 2) {
                for leaf in ["key.weight", "key.bias", "value.weight", "value.bias"] {
                    let even = "\(prefix).encoder.layer.\(pair).crossattention.self.\(leaf)"
                    let odd = "\(prefix).encoder.layer.\(pair + 1).crossattention.self.\(leaf)"
                    XCTAssertTrue(try XCTUnwrap(arena.tensor(even)) === XCTUnwrap(arena.tensor(odd)), odd)
                    XCTAssertEqual(arena.names(of: even), [even, odd])
                }
                XCTAssertFalse(arena.tensor("\(prefix).encoder.layer.\(pair).crossattention.self.query.weight")
                               === arena.tensor("\(prefix).encoder.layer.\(pair + 1).crossattention.self.query.weight"))
            }
            XCTAssertNil(arena.tensor("\(prefix).encoder.layer.5.crossattention.self.key.weight"))
            XCTAssertNotNil(arena.tensor("\(prefix).encoder.layer.17.crossattention.self.query.weight"))
        }
    }

    /// The gradient of a shared key weight is the sum over both layers' uses: it matches a
    /// central finite difference of the loss (distillation off: a plain function of the weights).
    /// Swapping left and right images changes the prediction (the layers see different images).
    func testSharedKeyGradientAndLeftRightOrder() throws {
        let model = try ALBEFNLVRModel(config: tinyNLVR(distill: false))
        try model.initialiseRandomly(seed: 4)
        let b = try batch(pairs: 2, seed: 5)
        var context = StepContext(seed: 0, dropout: false)
        let out = try model.step(b, context: &context)
        try Autograd.backward(from: out.total)
        let shared = try XCTUnwrap(model.parameters.tensor("text_encoder.encoder.layer.8.crossattention.self.value.weight"))
        let analytic = try XCTUnwrap(shared.grad).toArray()
        let index = analytic.indices.max { abs(analytic[$0]) < abs(analytic[$1]) }!
        let eps: Float = 1e-2, original = shared.toArray()
        func set(_ delta: Float) throws {
            var v = original
            v[index] += delta
            try shared.assign(v)
        }
        func loss() throws -> Double {
            var c = StepContext(seed: 0, dropout: false)
            return Double(try Autograd.noGrad { try model.step(b, context: &c).total.scalar })
        }
        try set(eps)
        let up = try loss()
        try set(-eps)
        let down = try loss()
        try set(0)
        let numeric = (up - down) / (2 * Double(eps))
        XCTAssertEqual(numeric, Double(analytic[index]), accuracy: 0.02 * abs(numeric) + 1e-6)

        let images = b.images.toArray(), half = images.count / 2
        let swapped = ImageTextBatch(images: try Tensor(Array(images[half...] + images[..<half]), shape: b.images.shape), text: b.text, labels: b.labels)
        XCTAssertNotEqual(try model.predict(b).toArray(), try model.predict(swapped).toArray())
    }

    /// What 2 ranks x B = 1 rank x 2B rests on: the step on 2 pairs (images L0 L1 R0 R1) equals
    /// the mean of the steps on each pair alone (L0 R0; L1 R1), loss and every gradient, with
    /// distillation on (fresh models, so each sees the same single EMA update).
    func testTwoHalvesEqualTheWholeBatch() throws {
        let config = try tinyNLVR()
        let whole = try batch(pairs: 2, seed: 6)
        func run(_ pairs: [Int]) throws -> (loss: Float, grad: [Float]) {
            let m = try ALBEFNLVRModel(config: config)
            try m.initialiseRandomly(seed: 1)
            m.momentumParameters.initialise(seed: 4)
            let imageRows = pairs + pairs.map { $0 + 2 }
            let b = ImageTextBatch(images: try whole.images.gatherRows(imageRows).reshaped([imageRows.count, 3, 32, 32]),
                                   text: try whole.text.rows(pairs), labels: pairs.map { whole.labels![$0] })
            var context = StepContext(seed: 0, dropout: false)
            context.recorded.floats["alpha"] = [0.4]
            m.parameters.zeroGradients()
            let out = try m.step(b, context: &context)
            try Autograd.backward(from: out.total)
            return (out.total.scalar, Array(m.parameters.gradients))
        }
        let both = try run([0, 1]), first = try run([0]), second = try run([1])
        XCTAssertEqual(both.loss, (first.loss + second.loss) / 2, accuracy: 1e-5 * abs(both.loss))
        var diff = 0.0, norm = 0.0
        for i in both.grad.indices {
            let mean = (Double(first.grad[i]) + Double(second.grad[i])) / 2
            diff += (Double(both.grad[i]) - mean) * (Double(both.grad[i]) - mean)
            norm += mean * mean
        }
        XCTAssertGreaterThan(norm, 0)
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-4)
    }

    /// Two images per sentence, labels 0/1 only; NLVR2 needs fusion_layer 6 of 18 layers.
    func testBadInput() throws {
        let model = try ALBEFNLVRModel(config: tinyNLVR())
        try model.initialiseRandomly(seed: 1)
        var context = StepContext(seed: 0, dropout: false)
        let good = try batch(pairs: 2, seed: 3)
        let oneImageEach = ImageTextBatch(images: try good.images.slice(axis: 0, start: 0, length: 2), text: good.text, labels: good.labels)
        XCTAssertThrowsError(try model.step(oneImageEach, context: &context)) { XCTAssertTrue("\($0)".contains("right"), "\($0)") }
        for labels in [nil, [0], [0, 2], [-1, 1]] as [[Int]?] {
            XCTAssertThrowsError(try model.step(ImageTextBatch(images: good.images, text: good.text, labels: labels), context: &context)) {
                XCTAssertTrue("\($0)".contains("label"), "\($0)")
            }
        }
        var c = try tinyNLVR()
        c.bert.fusionLayer = 5  // 13 fusion layers: not left/right pairs
        XCTAssertThrowsError(try c.validate(file: "NLVR.yaml")) { XCTAssertTrue("\($0)".contains("fusion_layer"), "\($0)") }
    }

    /// NLVR.py's loading of a text-assignment checkpoint: keys unchanged, the online position
    /// grid resized (4x4 -> 6x6), heads and the whole momentum model left as they were.
    func testLoadsATextAssignmentCheckpoint() throws {
        let source = try ALBEFNLVRModel(config: tinyNLVR(imageRes: 32, distill: false))
        try source.initialiseRandomly(seed: 3)
        var w = SafetensorsWriter()
        try StateDict.add(source.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-nlvr-load-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)

        let model = try ALBEFNLVRModel(config: tinyNLVR(imageRes: 48))
        try model.initialiseRandomly(seed: 5)
        let momentumBefore = model.momentumParameters.tensors.map { $0.toArray() }
        let plan = try model.loadPretrainingCheckpoint(SafetensorsFile(path: path))
        XCTAssertEqual(plan.resized, ["visual_encoder.pos_embed": "visual_encoder.pos_embed"])
        XCTAssertTrue(plan.keptAtInit.contains("visual_encoder_m.pos_embed"))
        XCTAssertEqual(model.momentumParameters.tensors.map { $0.toArray() }, momentumBefore)
        for name in ["text_encoder.encoder.layer.6.crossattention.self.key.weight", "text_encoder.encoder.layer.7.crossattention.self.query.weight",
                     "cls_head.2.weight", "visual_encoder.blocks.1.attn.qkv.weight"] {
            XCTAssertEqual(model.parameters.tensor(name)!.toArray(), source.parameters.tensor(name)!.toArray(), name)
        }
        let pos = source.parameters.tensor("visual_encoder.pos_embed")!
        XCTAssertEqual(model.parameters.tensor("visual_encoder.pos_embed")!.toArray(),
                       try PretrainedImport.resizePositionEmbedding(pos.toArray(), shape: pos.shape, toTokens: 37))
    }

    /// A pre-training checkpoint goes through the text-assignment map (layer N of the
    /// pre-training BERT -> layers 2(N-6)+6 and 2(N-6)+7), the momentum model and the heads
    /// stay at init; on key names the plan equals albef-load-tiny's keymap.nlvr_from_pretrain.
    func testLoadsAPretrainingCheckpointThroughTheTextAssignmentMap() throws {
        var pc = try tinyConfig(imageRes: 32, prune: nil)
        pc.bert.numHiddenLayers = 12
        pc.bert.fusionLayer = 6
        try pc.validate(file: "tiny")
        let pretrain = try ALBEFModel(config: pc)
        try pretrain.initialiseRandomly(seed: 3)
        var w = SafetensorsWriter()
        try StateDict.add(pretrain.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-nlvr-pretrain-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)

        let model = try ALBEFNLVRModel(config: tinyNLVR(imageRes: 48))
        try model.initialiseRandomly(seed: 5)
        let momentumBefore = model.momentumParameters.tensors.map { $0.toArray() }
        let head = model.parameters.tensor("cls_head.0.weight")!.toArray()
        let plan = try model.loadPretrainingCheckpoint(SafetensorsFile(path: path))
        XCTAssertEqual(plan.resized, ["visual_encoder.pos_embed": "visual_encoder.pos_embed"])
        XCTAssertTrue(plan.keptAtInit.contains("text_encoder_m.encoder.layer.7.crossattention.self.key.weight"))
        XCTAssertEqual(model.momentumParameters.tensors.map { $0.toArray() }, momentumBefore)
        XCTAssertEqual(model.parameters.tensor("cls_head.0.weight")!.toArray(), head)
        for (mine, theirs) in [(6, 6), (7, 6), (16, 11), (17, 11)] {
            for leaf in ["crossattention.self.query.weight", "attention.output.dense.bias"] {
                XCTAssertEqual(model.parameters.tensor("text_encoder.encoder.layer.\(mine).\(leaf)")!.toArray(),
                               pretrain.parameters.tensor("text_encoder.bert.encoder.layer.\(theirs).\(leaf)")!.toArray(), "\(mine) \(leaf)")
            }
        }
        XCTAssertEqual(model.parameters.tensor("text_encoder.encoder.layer.3.attention.self.key.weight")!.toArray(),
                       pretrain.parameters.tensor("text_encoder.bert.encoder.layer.3.attention.self.key.weight")!.toArray())

        let dir = try SharedData.path("reference/albef-load-tiny")
        let map = try KeymapCheck.Keymap(path: (dir as NSString).appendingPathComponent("keymap.nlvr_from_pretrain.json"))
        let interpolated = Set(map.interpolated.values)
        let keyPlan = try ALBEFNLVRModel.pretrainingPlan(sourceKeys: map.sourceKeys, modelKeys: map.modelKeys) { interpolated.contains($0) }
        XCTAssertEqual(KeymapCheck.differences(keyPlan, map), [])
        XCTAssertGreaterThan(keyPlan.copied.count, 500)
    }
}

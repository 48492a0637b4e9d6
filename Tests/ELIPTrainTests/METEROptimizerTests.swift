import ELIPConfig
import ELIPModel
import ELIPTensor
@testable import ELIPTrain
import XCTest

/// METER's optimizer and schedule (SPEC-METER §7): transformers.AdamW with per-parameter lr
/// multipliers and decay groups, the polynomial (linear) warm-up/decay per optimizer step, and
/// the config keys that select them.
final class METEROptimizerTests: XCTestCase {
    /// Three updates against transformers.AdamW's formula in double precision: eps on the raw
    /// sqrt(v), bias corrections in the step size, then p -= lr wd p on the updated p; each
    /// parameter with its own lr multiplier and decay.
    func testHuggingFaceAdamWWithMultipliersAndDecayGroups() throws {
        let arena = ParameterArena(capacity: 1 << 10)
        let w = try arena.add("text.dense.weight", shape: [2, 2]), x = try arena.add("cross_modal_pooler.dense.weight", shape: [2])
        let b = try arena.add("cross_modal_pooler.dense.bias", shape: [2])
        try w.assign([0.5, -1, 2, 0.1]); try x.assign([0.7, -0.4]); try b.assign([0.3, -0.2])
        var hyper = AdamW.Hyperparameters()
        hyper.beta2 = 0.98
        hyper.weightDecay = 0.01
        let opt = AdamW(arena: arena, hyper: hyper, decays: { name, _ in !name.contains("bias") },
                        lrMultiplier: { $0.contains("cross_modal") ? 5 : 1 }, variant: .huggingFace)
        let offsets = [w, x, b].map { t in arena.entries.first { arena.tensor($0.name) === t }!.offset }
        var p: [Double] = [0.5, -1, 2, 0.1, 0.7, -0.4, 0.3, -0.2], m = [Double](repeating: 0, count: 8), v = m
        let mult: [Double] = [1, 1, 1, 1, 5, 5, 5, 5], wd: [Double] = [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0, 0]
        let grads: [[Float]] = [[0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 0.4, 0.2], [0.2, 0.2, -0.1, 0.5, 0.5, 0.0, -0.3, 0.1],
                                [-0.3, 0.1, 0.0, 0.2, 0.1, 2.0, 0.0, 0.7]]
        let lr = 1e-2
        for (t, g) in grads.enumerated() {
            let grad = arena.gradients
            for i in 0..<4 { grad[offsets[0] + i] = g[i] }
            for i in 0..<2 { grad[offsets[1] + i] = g[4 + i]; grad[offsets[2] + i] = g[6 + i] }
            opt.update(lr: Float(lr))
            let bc1 = 1 - pow(0.9, Double(t + 1)), bc2 = 1 - pow(0.98, Double(t + 1))
            for i in 0..<8 {
                let groupLR = lr * mult[i]
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.98 * v[i] + 0.02 * Double(g[i]) * Double(g[i])
                p[i] -= groupLR * bc2.squareRoot() / bc1 * m[i] / (v[i].squareRoot() + 1e-8)
                p[i] -= groupLR * wd[i] * p[i]
            }
        }
        let got = w.toArray() + x.toArray() + b.toArray()
        for i in 0..<8 { XCTAssertEqual(Double(got[i]), p[i], accuracy: 2e-6, "parameter value \(i)") }
    }

    /// The torch variant with every multiplier 1 is bit-for-bit the ALBEF/BLIP optimizer.
    func testTorchVariantUnchangedByUnitMultipliers() throws {
        func run(_ make: (ParameterArena) -> AdamW) throws -> [Float] {
            let arena = ParameterArena(capacity: 1 << 10)
            let w = try arena.add("a.weight", shape: [3, 3]), b = try arena.add("a.bias", shape: [3])
            try w.assign((0..<9).map { Float($0) * 0.1 - 0.4 }); try b.assign([0.1, 0.2, -0.3])
            let opt = make(arena)
            for s in 0..<3 {
                let g = arena.gradients
                for i in 0..<g.count { g[i] = Float((i * 7 + s * 3) % 11) * 0.05 - 0.25 }
                opt.update(lr: 3e-3)
            }
            return w.toArray() + b.toArray()
        }
        let plain = try run { AdamW(arena: $0) }
        let explicit = try run { AdamW(arena: $0, decays: AdamW.decays, lrMultiplier: { _ in 1 }, variant: .torch) }
        XCTAssertEqual(plain, explicit)
    }

    /// get_polynomial_decay_schedule_with_warmup, power 1, end 0: lr 0 at the first update,
    /// linear to lr at the end of warm-up, linear to 0 at max_steps, 0 after.
    func testPolynomialScheduleMatchesMETER() {
        var s = PolynomialDecaySchedule()
        s.lr = 1e-4
        s.maxSteps = 1000
        s.warmupSteps = PolynomialDecaySchedule.warmup(fraction: 0.1, maxSteps: 1000)
        XCTAssertEqual(s.warmupSteps, 100)
        XCTAssertEqual(s.learningRate(step: 0), 0)
        XCTAssertEqual(s.learningRate(step: 50), 5e-5, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(step: 100), 1e-4, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(step: 550), 5e-5, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(step: 1000), 0, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(step: 5000), 0)
        XCTAssertEqual(PolynomialDecaySchedule.warmup(fraction: 0.1, maxSteps: 99), 9, "int() truncates")
    }

    static let meterYAML = """
        model: meter
        image_size: 64
        clip: {width: 32, heads: 2}
        roberta: {vocab_size: 60, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 20, type_vocab_size: 1, layer_norm_eps: 1.0e-5}
        hidden_size: 24
        num_heads: 2
        num_top_layer: 1
        max_text_len: 8
        optimizer: {opt: adamW, weight_decay: 0.01, betas: [0.9, 0.98], eps: 1.0e-8}
        data: {vocab: v.json, merges: m.txt}
        """

    func testPolynomialScheduleKeys() throws {
        let c = try TrainingConfig.parse(Self.meterYAML + "\nschedular: {sched: polynomial, lr: 1.0e-5, warmup: 0.1, max_steps: 200}",
                                         source: "m.yaml", searchFolders: [])
        XCTAssertEqual(c.polynomialDecay?.warmupSteps, 20)
        XCTAssertEqual(c.maxSteps, 200, "max_steps ends the run")
        XCTAssertEqual(c.learningRate(step: 10, epoch: 3, iteration: 0), 5e-6, accuracy: 1e-15)
        XCTAssertEqual(c.optimizer.beta2, 0.98)
        func fails(_ sched: String, _ needle: String) {
            XCTAssertThrowsError(try TrainingConfig.parse(Self.meterYAML + "\nschedular: " + sched, source: "m.yaml", searchFolders: [])) {
                XCTAssertTrue("\($0)".contains(needle), "\($0)")
            }
        }
        fails("{sched: polynomial, lr: 1.0e-5, warmup: 0.1}", "max_steps")
        fails("{sched: polynomial, lr: 1.0e-5, max_steps: 10}", "warmup")
        fails("{sched: polynomial, warmup: 0.1, warmup_steps: 3, max_steps: 10}", "not both")
        fails("{sched: polynomial, warmup: 0.1, max_steps: 10, min_lr: 0}", "min_lr")
        fails("{sched: linear, warmup: 0.1, max_steps: 10}", "sched")
    }

    /// The trainer's optimizer for `model: meter` is transformers.AdamW with METER's groups.
    func testMETERModelSelectsItsOptimizer() throws {
        let c = try TrainingConfig.parse(Self.meterYAML, source: "m.yaml", searchFolders: [])
        let model = try c.model.makeModel()
        XCTAssertEqual(model.adamWVariant, .huggingFace)
        XCTAssertEqual(model.learningRateMultiplier(parameter: "cross_modal_image_layers.0.output.dense.weight"), 5)
        XCTAssertEqual(model.learningRateMultiplier(parameter: "vit_model.visual.conv1.weight"), 1)
    }

    /// The shipped METER configs decode; the 4M one has the paper's values and the official keep
    /// base, the demo the N0 rule; byte-level BPE models need data.merges, WordPiece ones refuse it.
    func testShippedConfigsAndTokenizerKeys() throws {
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
        let full = try TrainingConfig.load(configs.appendingPathComponent("pretrain-meter-4m.yaml").path)
        let m = try XCTUnwrap(full.model as? METERConfig)
        XCTAssertEqual(m.prune?.keepCounts(patchCount: m.keepBase), [44, 34, 22])
        XCTAssertEqual(m.patchCount, 324)
        XCTAssertEqual(full.gradAccumulation * full.batchSize * 8, 4096)
        XCTAssertEqual(full.polynomialDecay?.warmupSteps, 10_000)
        XCTAssertEqual(full.optimizer.beta2, 0.98)
        let demo = try TrainingConfig.load(configs.appendingPathComponent("demo-meter.yaml").path)
        XCTAssertEqual(demo.model.keepBase, demo.model.patchCount)
        XCTAssertNotNil(demo.merges)

        let withoutMerges = Self.meterYAML.replacingOccurrences(of: "data: {vocab: v.json, merges: m.txt}", with: "")
        XCTAssertThrowsError(try TrainingConfig.parse(withoutMerges, source: "m.yaml", searchFolders: [])) {
            XCTAssertTrue("\($0)".contains("data.merges") && "\($0)".contains("byte-level BPE"), "\($0)")
        }
        XCTAssertThrowsError(try TrainingConfig.parse("model: albef\ndata: {merges: m.txt}", source: "a.yaml", searchFolders: [])) {
            XCTAssertTrue("\($0)".contains("data.merges"), "\($0)")
        }
    }
}

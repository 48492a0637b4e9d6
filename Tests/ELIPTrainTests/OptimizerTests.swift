import ELIPModel
import ELIPTensor
@testable import ELIPTrain
import XCTest

final class OptimizerTests: XCTestCase {
    /// Three AdamW steps against torch.optim.AdamW's update, computed in double precision.
    func testAdamWMatchesTorchFormula() throws {
        let arena = ParameterArena(capacity: 1 << 10)
        let w = try arena.add("layer.weight", shape: [2, 2]), b = try arena.add("layer.bias", shape: [2])
        try w.assign([0.5, -1, 2, 0.1]); try b.assign([0.3, -0.2])
        let opt = AdamW(arena: arena)
        var p: [Double] = [0.5, -1, 2, 0.1, 0.3, -0.2], m = [Double](repeating: 0, count: 6), v = m
        let grads: [[Float]] = [[0.1, -0.2, 0.3, 0.0, 1.0, -1.0], [0.2, 0.2, -0.1, 0.5, 0.5, 0.0], [-0.3, 0.1, 0.0, 0.2, 0.1, 2.0]]
        let lr = 1e-2
        for (t, g) in grads.enumerated() {
            let grad = arena.gradients
            for i in 0..<4 { grad[i] = g[i] }
            for i in 0..<2 { grad[16 + i] = g[4 + i] }
            opt.update(lr: Float(lr))
            for i in 0..<6 {
                let wd = i < 4 ? 0.02 : 0.0  // no decay on the bias
                p[i] *= 1 - lr * wd
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.999 * v[i] + 0.001 * Double(g[i]) * Double(g[i])
                let bc1 = 1 - pow(0.9, Double(t + 1)), bc2 = 1 - pow(0.999, Double(t + 1))
                p[i] -= lr / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
            }
        }
        let got = w.toArray() + b.toArray()
        for i in 0..<6 { XCTAssertEqual(Double(got[i]), p[i], accuracy: 1e-6) }
        XCTAssertEqual(opt.step, 3)
    }

    func testWeightDecayGroupsFollowTimm() {
        XCTAssertTrue(AdamW.decays("visual_encoder.blocks.0.attn.qkv.weight", [192, 64]))
        XCTAssertFalse(AdamW.decays("visual_encoder.blocks.0.attn.qkv.bias", [192]))
        XCTAssertFalse(AdamW.decays("visual_encoder.norm.weight", [64]))
        XCTAssertTrue(AdamW.decays("visual_encoder.pos_embed", [1, 17, 64]))
        XCTAssertTrue(AdamW.decays("temp", []), "0-D temp decays in the official code")
    }

    /// ALBEF's schedule: warm-up every 100 iterations in epoch 0, then the scheduler at
    /// t = epoch + warmup (timm cosine from t = 0, min_lr after `epochs`).
    func testLearningRateScheduleMatchesALBEF() {
        let s = LearningRateSchedule()
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 0), 1e-5, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 99), 1e-5, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 100), 1.45e-5, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 1999), 1e-5 + 19 * 4.5e-6, accuracy: 1e-12)
        let atWarmupEnd = 1e-5 + 0.5 * 9e-5 * (1 + cos(Double.pi * 20 / 30))
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 2000), atWarmupEnd, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 50_000), atWarmupEnd, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 1, iteration: 0), 1e-5 + 0.5 * 9e-5 * (1 + cos(Double.pi * 21 / 30)), accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(epoch: 10, iteration: 5), 1e-5, accuracy: 1e-12)
    }

    /// BLIP's schedule: linear warm-up over warmup_steps within epoch 0 (capped at init_lr), then
    /// init_lr * 0.9^epoch floored at min_lr.
    func testStepDecayScheduleMatchesBLIP() {
        var s = StepDecaySchedule()
        s.initLR = 1e-4; s.warmupLR = 1e-6; s.warmupSteps = 3000; s.minLR = 1e-6; s.decayRate = 0.9
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 0), 1e-6, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 1500), 1e-6 + 99e-6 / 2, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 9000), 1e-4, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(epoch: 1, iteration: 0), 0.9e-4, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(epoch: 3, iteration: 7), 1e-4 * 0.729, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(epoch: 500, iteration: 0), 1e-6, accuracy: 1e-15)
        s.warmupSteps = 0
        XCTAssertEqual(s.learningRate(epoch: 0, iteration: 5), 1e-4, "no warm-up, no division by zero")
    }
}

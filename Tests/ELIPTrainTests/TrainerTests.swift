import ELIPDistributed
import ELIPModel
import ELIPTensor
import ELIPText
@testable import ELIPTrain
import Foundation
import XCTest

/// The WordPiece vocabulary from `make setup` (assets/) or ../shared.
func vocabularyPath() throws -> String {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    for p in [repo.appendingPathComponent("assets/bert-base-uncased-vocab.txt").path,
              repo.deletingLastPathComponent().appendingPathComponent("shared/data/bert-base-uncased-vocab.txt").path]
    where FileManager.default.fileExists(atPath: p) { return p }
    throw XCTSkip("needs the bert-base-uncased vocabulary: run `make setup` (fetches it into assets/)")
}

func trainerConfig(steps: Int) throws -> TrainingConfig {
    var m = try tinyTrainConfig()
    m.bert.vocabSize = 30522
    m.bert.maxPositionEmbeddings = 32
    m.queueSize = 16
    var c = TrainingConfig(model: m)
    c.batchSize = 4
    c.maxSteps = steps
    c.checkpointEvery = 1000
    c.logEvery = 1
    c.syntheticImages = 32
    c.schedule.lr = 1e-3
    c.schedule.warmupLR = 1e-4
    c.schedule.warmupEpochs = 1
    c.schedule.stepSize = 2
    c.schedule.epochs = 10
    c.text = "tiny trainer test"
    return c
}

/// Every value of a model's state dict (all arenas, buffers, counters), for bitwise comparisons.
func stateSnapshot(_ m: any TrainableModel) -> [Float] {
    let l = m.stateLayout
    return l.arenas.flatMap { Array($0.arena.values) } + l.buffers.flatMap { $0.tensor.toArray() } + l.counters.map { Float($0.get()) }
}

final class TrainerTests: XCTestCase {
    /// The gradient norm's sum of squares (parallel chunks, vector kernel) equals a plain double
    /// sum, and is the same on every call.
    func testSumOfSquaresMatchesAPlainSum() {
        var g = SeededGenerator(seed: 5)
        var values = (0..<1_000_003).map { _ in g.nextNormal() }
        let expected = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        values.withUnsafeMutableBufferPointer { buffer in
            let got = Trainer.sumOfSquares(buffer)
            XCTAssertEqual(got, expected, accuracy: 1e-9 * expected)
            XCTAssertEqual(Trainer.sumOfSquares(buffer), got)
        }
    }

    var runs: [URL] = []
    override func tearDown() { for r in runs { try? FileManager.default.removeItem(at: r) } }

    func makeTrainer(_ c: TrainingConfig, run: URL, resume: String? = nil, maxSteps: Int = 0) throws -> Trainer {
        let tok = try BertTokenizer(vocabularyFile: vocabularyPath())
        let source = SyntheticBatchSource(images: c.syntheticImages, imageSize: c.model.imageRes, batchSize: c.batchSize,
                                          rank: 0, worldSize: 1, seed: c.seed, tokenizer: tok, captionStyle: .albef(maxLength: 12))
        var o = Trainer.Options(runDirectory: run)
        o.resume = resume
        o.maxSteps = maxSteps
        o.progress = false
        return try Trainer(config: c, options: o, communicator: .singleProcess(), source: source)
    }

    func newRun() -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("elip-train-\(UUID().uuidString)")
        runs.append(u)
        return u
    }

    /// Interrupted at step 3 and resumed to step 7 gives bitwise the weights, momentum model,
    /// queues and optimizer state of an uninterrupted 7-step run (epochs cross at step 8).
    func testResumeIsBitwiseIdentical() throws {
        let c = try trainerConfig(steps: 7)
        let straight = try makeTrainer(c, run: newRun())
        try straight.run()
        let run = newRun()
        let first = try makeTrainer(c, run: run, maxSteps: 3)
        try first.run()
        XCTAssertEqual(first.state.step, 3)
        let second = try makeTrainer(c, run: run, resume: "auto")
        XCTAssertEqual(second.state.step, 3, "resumed from the step-3 checkpoint")
        try second.run()
        XCTAssertEqual(second.state.step, 7)
        XCTAssertTrue(Array(straight.model.parameters.values) == Array(second.model.parameters.values), "online weights differ")
        XCTAssertTrue(stateSnapshot(straight.model) == stateSnapshot(second.model), "momentum weights, queues or pointer differ")
        XCTAssertTrue(straight.optimizer.exp_avg_sq == second.optimizer.exp_avg_sq, "optimizer state differs")
        XCTAssertEqual(straight.state, second.state)
        // metrics.jsonl has a record per step with every field.
        let records = try MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.map(\.step), Array(1...7))
        XCTAssertEqual(records.last?.keptTokens, [12, 8])  // 16 patches x 0.75, 0.5
        XCTAssertTrue(records.allSatisfy { Set($0.losses.keys) == ["ita", "itm", "mlm"] && $0.losses["ita"]!.isFinite
                && $0.times.forward > 0 && $0.residentMB > 0 && $0.values["alpha"] != nil })
    }

    /// The time limit stops every rank with a checkpoint, well before max_steps.
    func testTimeLimitStopsWithACheckpoint() throws {
        let run = newRun()
        let t = try makeTrainer(try trainerConfig(steps: 10_000), run: run)
        var o = t.options
        o.timeLimit = 0.5
        let limited = try Trainer(config: t.config, options: o, communicator: .singleProcess(), source: t.source)
        let reason = try limited.run()
        XCTAssertTrue(reason.contains("time limit"), reason)
        XCTAssertLessThan(limited.state.step, 10_000)
        XCTAssertEqual(CheckpointStore(runDirectory: run).list().first?.lastPathComponent,
                       String(format: "step-%08d", limited.state.step))
    }

    /// A resumed run with another config is refused with a message naming the checkpoint.
    func testResumeRefusesAnotherConfig() throws {
        let run = newRun()
        try makeTrainer(try trainerConfig(steps: 2), run: run).run()
        var other = try trainerConfig(steps: 4)
        other.text = "another config"
        XCTAssertThrowsError(try makeTrainer(other, run: run, resume: "auto")) { e in
            XCTAssertTrue("\(e)".contains("another config, data or world size"), "\(e)")
        }
    }

    /// Training on the synthetic corpus lowers the contrastive loss (the model learns).
    func testLossDecreasesOnSyntheticScenes() throws {
        var c = try trainerConfig(steps: 40)
        c.syntheticImages = 16
        c.dropout = false
        let t = try makeTrainer(c, run: newRun())
        try t.run()
        let r = try MetricsLog.read(t.options.runDirectory.appendingPathComponent("metrics.jsonl"))
        let early = r.prefix(5).map { $0.losses["ita"]! + $0.losses["itm"]! }.reduce(0, +) / 5
        let late = r.suffix(5).map { $0.losses["ita"]! + $0.losses["itm"]! }.reduce(0, +) / 5
        XCTAssertLessThan(late, early * 0.9, "ITA+ITM should fall: early \(early), late \(late)")
    }

    /// BLIP trains through the same trainer: its own losses in the metrics, a resumed run bitwise
    /// equal to an uninterrupted one (decoder ties, queues, the 2-epoch alpha ramp, step decay).
    func testBLIPResumeIsBitwiseIdentical() throws {
        var m = BLIPConfig()
        m.imageRes = 32; m.vision.patchSize = 8
        m.vision.embedDim = 16; m.vision.depth = 4; m.vision.numHeads = 2; m.vision.mlpRatio = 2
        m.embedDim = 8; m.queueSize = 16; m.maxTextLength = 12
        m.prune = nil  // (32 // 16)^2 = 4 is BLIP's keep base: too small to prune a 16-patch ViT meaningfully
        m.bert.hiddenSize = 16; m.bert.numAttentionHeads = 2; m.bert.numHiddenLayers = 2; m.bert.intermediateSize = 32
        m.bert.maxPositionEmbeddings = 32; m.bert.encoderWidth = 16
        try m.validate(file: "tiny")
        var c = try trainerConfig(steps: 5)
        c.model = m
        var d = StepDecaySchedule()
        d.initLR = 1e-3; d.warmupLR = 1e-4; d.warmupSteps = 4; d.epochs = 10
        c.stepDecay = d
        let tok = try BertTokenizer(vocabularyFile: vocabularyPath())
        try c.useVocabulary(of: tok)
        func trainer(_ run: URL, resume: String? = nil, maxSteps: Int = 0) throws -> Trainer {
            let source = SyntheticBatchSource(images: c.syntheticImages, imageSize: 32, batchSize: c.batchSize, rank: 0, worldSize: 1,
                                              seed: c.seed, tokenizer: tok, captionStyle: c.captionStyle)
            var o = Trainer.Options(runDirectory: run)
            o.resume = resume
            o.maxSteps = maxSteps
            o.progress = false
            return try Trainer(config: c, options: o, communicator: .singleProcess(), source: source)
        }
        let straight = try trainer(newRun())
        try straight.run()
        let run = newRun()
        try trainer(run, maxSteps: 2).run()
        let second = try trainer(run, resume: "auto")
        XCTAssertEqual(second.state.step, 2)
        try second.run()
        XCTAssertTrue(stateSnapshot(straight.model) == stateSnapshot(second.model), "weights, momentum, queues or pointer differ")
        XCTAssertTrue(straight.optimizer.exp_avg == second.optimizer.exp_avg)
        let records = try MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(Set(records[0].losses.keys), ["ita", "itm", "lm"])
        XCTAssertEqual(records[0].lr, 1e-4, accuracy: 1e-9, "BLIP's warm-up starts at warmup_lr")
    }
}

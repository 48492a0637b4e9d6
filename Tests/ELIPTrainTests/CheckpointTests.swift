import ELIPEncoders
import ELIPModel
import ELIPPruning
import Safetensors
import ELIPTensor
@testable import ELIPTrain
import Foundation
import XCTest

func tinyTrainConfig() throws -> ALBEFConfig {
    var c = ALBEFConfig()
    c.imageRes = 32
    c.visionWidth = 16
    c.vision.embedDim = 16; c.vision.depth = 4; c.vision.numHeads = 2; c.vision.mlpRatio = 2; c.vision.patchSize = 8
    c.embedDim = 8
    c.queueSize = 12
    c.prune = PruneConfig(beginLayer: [1, 2], numActLayers: [1, 2], keepRatio: [0.75, 0.5])
    var b = BertConfig()
    b.hiddenSize = 16; b.numAttentionHeads = 2; b.numHiddenLayers = 4; b.intermediateSize = 32
    b.vocabSize = 200; b.maxPositionEmbeddings = 16; b.fusionLayer = 2; b.encoderWidth = 16
    c.bert = b
    try c.validate(file: "tiny")
    return c
}

final class CheckpointTests: XCTestCase {
    var run: URL!
    override func setUpWithError() throws {
        run = FileManager.default.temporaryDirectory.appendingPathComponent("elip-ckpt-\(UUID().uuidString)")
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: run) }

    func makeState(_ step: Int) -> TrainerState {
        TrainerState(step: step, epoch: 1, batchInEpoch: step % 7, stepGenerator: SeededGenerator(seed: UInt64(step)),
                     skippedSteps: 0, fingerprint: "abc", configText: "x: 1")
    }

    func testRoundTripRestoresEverything() throws {
        let model = try ALBEFModel(config: tinyTrainConfig())
        try model.initialiseRandomly(seed: 1)
        model.queue.pointer = 5
        let opt = AdamW(arena: model.parameters)
        for e in model.parameters.entries {  // padding between parameters keeps a zero gradient
            for i in e.offset..<(e.offset + e.count) { model.parameters.gradients[i] = Float(i % 13) * 0.01 }
        }
        opt.update(lr: 1e-3)
        let store = CheckpointStore(runDirectory: run, keep: 2)
        let folder = try store.save(model: model, optimizer: opt, state: makeState(10))
        XCTAssertEqual(folder.lastPathComponent, "step-00000010")

        let model2 = try ALBEFModel(config: tinyTrainConfig())
        let opt2 = AdamW(arena: model2.parameters)
        let state = try store.load(folder, into: model2, optimizer: opt2)
        XCTAssertEqual(state, makeState(10))
        XCTAssertTrue(Array(model2.parameters.values) == Array(model.parameters.values), "online weights differ")
        XCTAssertTrue(Array(model2.momentumParameters.values) == Array(model.momentumParameters.values), "momentum weights differ")
        XCTAssertTrue(model2.queue.textQueue.toArray() == model.queue.textQueue.toArray(), "queues differ")
        XCTAssertEqual(model2.queue.pointer, 5)
        XCTAssertTrue(opt2.exp_avg == opt.exp_avg && opt2.exp_avg_sq == opt.exp_avg_sq, "optimizer state differs")
        XCTAssertEqual(opt2.step, 1)
    }

    func testKeepsTheNewestAndSkipsDamagedOnes() throws {
        let model = try ALBEFModel(config: tinyTrainConfig())
        try model.initialiseRandomly(seed: 2)
        let opt = AdamW(arena: model.parameters)
        let store = CheckpointStore(runDirectory: run, keep: 2)
        for s in [1, 2, 3] { try store.save(model: model, optimizer: opt, state: makeState(s)) }
        XCTAssertEqual(store.list().map(\.lastPathComponent), ["step-00000003", "step-00000002"])
        // Damage the newest: flip a byte in its weights.
        let newest = store.list()[0].appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: newest)
        bytes[bytes.count - 3] ^= 0xFF
        try bytes.write(to: newest)
        var warnings: [String] = []
        XCTAssertEqual(store.latestValid { warnings.append($0) }?.lastPathComponent, "step-00000002")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("checksum"), warnings[0])
        XCTAssertThrowsError(try store.load(store.list()[0], into: model, optimizer: opt))
    }

    /// Optimizer moments are stored per parameter name, so they land on the right parameter
    /// whatever the arena layout; the earlier single-buffer format still loads when its size fits.
    func testOptimizerMomentsAreStoredByName() throws {
        let model = try ALBEFModel(config: tinyTrainConfig())
        try model.initialiseRandomly(seed: 4)
        let opt = AdamW(arena: model.parameters)
        for i in 0..<model.parameters.gradients.count { model.parameters.gradients[i] = Float(i % 17) * 0.01 }
        opt.update(lr: 1e-3)
        let store = CheckpointStore(runDirectory: run, keep: 2)
        let folder = try store.save(model: model, optimizer: opt, state: makeState(3))
        let file = try SafetensorsFile(path: folder.appendingPathComponent("optimizer.safetensors").path)
        let name = "visual_encoder.blocks.1.attn.qkv.weight"
        let entry = try XCTUnwrap(model.parameters.entries.first { $0.name == name })
        XCTAssertEqual(try file.floats("exp_avg.\(name)"), Array(opt.exp_avg[entry.offset..<(entry.offset + entry.count)]))
        XCTAssertEqual(try file.entry("exp_avg_sq.\(name)").shape, entry.shape)
        XCTAssertFalse(file.contains("exp_avg"))

        // Earlier format: two flat buffers in arena layout.
        var legacy = SafetensorsWriter(metadata: ["step": "1"])
        try legacy.add("exp_avg", floats: opt.exp_avg, shape: [opt.exp_avg.count])
        try legacy.add("exp_avg_sq", floats: opt.exp_avg_sq, shape: [opt.exp_avg_sq.count])
        let legacyPath = run.appendingPathComponent("legacy.safetensors").path
        try legacy.write(to: legacyPath)
        let opt2 = AdamW(arena: model.parameters)
        try CheckpointStore.loadMoments(SafetensorsFile(path: legacyPath), into: opt2, step: 1)
        XCTAssertTrue(opt2.exp_avg == opt.exp_avg && opt2.exp_avg_sq == opt.exp_avg_sq)

        // A file that lacks a parameter's moments is an error naming it.
        var partial = SafetensorsWriter()
        try partial.add("exp_avg.temp", floats: [0], shape: [])
        let partialPath = run.appendingPathComponent("partial.safetensors").path
        try partial.write(to: partialPath)
        XCTAssertThrowsError(try CheckpointStore.loadMoments(SafetensorsFile(path: partialPath), into: opt2, step: 1)) {
            XCTAssertTrue("\($0)".contains("no optimizer moments for"), "\($0)")
        }
    }

    /// A writer killed mid-checkpoint leaves only a hidden temporary folder: the previous
    /// checkpoint stays the newest valid one.
    func testInterruptedWriteLeavesPreviousCheckpointLoadable() throws {
        let model = try ALBEFModel(config: tinyTrainConfig())
        try model.initialiseRandomly(seed: 3)
        let opt = AdamW(arena: model.parameters)
        let store = CheckpointStore(runDirectory: run, keep: 3)
        try store.save(model: model, optimizer: opt, state: makeState(4))
        // What a kill during the next save leaves behind: a partial temporary folder.
        let partial = store.directory.appendingPathComponent(".step-00000005.tmp-999999")
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: partial.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(store.list().map(\.lastPathComponent), ["step-00000004"])
        let folder = try XCTUnwrap(store.latestValid { XCTFail($0) })
        XCTAssertEqual(try store.load(folder, into: model, optimizer: opt).step, 4)
        // The next successful save cleans the stale folder up.
        try store.save(model: model, optimizer: opt, state: makeState(6))
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial.path))
    }
}

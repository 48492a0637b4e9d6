import ELIPImage
import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
@testable import ELIPTrain
import Foundation
import Safetensors
import ELIPText
import XCTest

/// A model that is not ALBEF, to show the trainer, checkpoints and metrics need nothing else:
/// two parameter vectors created in the OPPOSITE order of their use, its own loss names and a
/// counter in its state dict.
final class ToyModel: TrainableModel {
    struct Config: ModelConfig {
        var kind: String { "toy" }
        var imageRes = 8
        var prune: PruneConfig?
        var patchCount: Int { 1 }
        var specialTokens = SpecialTokens.bertBaseUncased
        var vocabularySize: Int { 200 }
        var maxTextPositions: Int { 16 }
        var captionStyle: CaptionStyle { .albef() }
        var trainingRandAugment: RandAugment { .albef }
        var size = 300_000
        func validate(file: String) throws {}
        func makeModel() throws -> any TrainableModel { try ToyModel(config: self) }
        var summary: String { "toy" }
    }

    let config: Config
    var modelConfig: any ModelConfig { config }
    let parameters = ParameterArena(capacity: 1 << 22)
    let a: Tensor, b: Tensor
    var pruning: PruneConfig?
    var steps = 0

    init(config: Config) throws {
        self.config = config
        a = try parameters.add("toy.a", shape: [config.size], init: .truncatedNormal(std: 0.02))
        b = try parameters.add("toy.b", shape: [config.size], init: .truncatedNormal(std: 0.02))
    }

    var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable)]
        l.counters = [.init(name: "toy_steps", limit: 1 << 30, get: { [unowned self] in steps }, set: { [unowned self] in steps = $0 })]
        return l
    }

    func initialiseRandomly(seed: UInt64) throws { parameters.initialise(seed: seed) }

    func step(_ batch: ImageTextBatch, context: inout StepContext) throws -> StepOutput {
        steps += 1
        let first = try (b * b).mean(), second = try (a * a).mean()  // b is used first, so it finishes last
        var out = StepOutput(total: try first + second, losses: ["first": first, "second": second])
        out.scalars = ["steps": Double(steps)]
        return out
    }

    var pretrainedSources: [String] { [] }
    func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] { [] }
}

/// A fixed batch (the toy model ignores it).
final class FixedBatchSource: BatchSource {
    var batchesPerEpoch: Int { 4 }
    var summary: String { "fixed" }
    func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        ImageTextBatch(images: Tensor.zeros([2, 3, 8, 8]), text: try TextBatch(ids: [101, 5, 101, 6], mask: [1, 1, 1, 1], batch: 2, length: 2))
    }
}

final class GenericTrainerTests: XCTestCase {
    var run: URL!
    override func setUp() { run = FileManager.default.temporaryDirectory.appendingPathComponent("elip-toy-\(UUID().uuidString)") }
    override func tearDown() { try? FileManager.default.removeItem(at: run) }

    func makeTrainer(steps: Int, resume: String? = nil) throws -> Trainer {
        var c = TrainingConfig(model: ToyModel.Config())
        c.batchSize = 2
        c.maxSteps = steps
        c.logEvery = 1
        c.bucketMB = 1  // 262144 floats: the 600000-float arena has 3 buckets
        c.text = "toy"
        var o = Trainer.Options(runDirectory: run)
        o.progress = false
        o.resume = resume
        return try Trainer(config: c, options: o, communicator: .singleProcess(), source: FixedBatchSource())
    }

    /// The bucket issue order comes from the first backward, not from creation order: `toy.a`
    /// (the front of the arena) finishes first, so the front bucket goes first, then the end.
    func testBucketOrderIsLearnedFromTheFirstBackward() throws {
        let t = try makeTrainer(steps: 2)
        XCTAssertNil(t.learnedBucketOrder)
        try t.run()
        // Boundaries from the end: k0 = [337856, 600000) (b), k1 = [75712, 337856) (a and b), k2 = [0, 75712) (a).
        XCTAssertEqual(t.learnedBucketOrder, [2, 0, 1])
    }

    /// Metrics carry the model's own loss names and values; its state (a counter) is checkpointed
    /// and restored through the generic state dict.
    func testAnyModelTrainsChecksAndResumes() throws {
        let t = try makeTrainer(steps: 3)
        try t.run()
        let records = try MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.map(\.step), [1, 2, 3])
        XCTAssertEqual(Set(records[0].losses.keys), ["first", "second"])
        XCTAssertEqual(records[2].values["steps"], 3)
        XCTAssertLessThan(records[2].totalLoss, records[0].totalLoss, "AdamW lowers a quadratic")
        let resumed = try makeTrainer(steps: 4, resume: "auto")
        XCTAssertEqual(resumed.state.step, 3)
        XCTAssertEqual((resumed.model as? ToyModel)?.steps, 3, "the counter came back from the checkpoint")
        XCTAssertEqual(Array(resumed.model.parameters.values), Array(t.model.parameters.values))
    }
}

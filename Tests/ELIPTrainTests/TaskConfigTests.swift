import ELIPConfig
import ELIPModel
@testable import ELIPTrain
import Foundation
import XCTest

/// The shipped official task configs and the task keys of the config reader (issue 14 part 1).
final class TaskConfigTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testShippedVEConfigHasTheOfficialValues() throws {
        let path = Self.repo.appendingPathComponent("configs/VE.yaml").path
        let c = try TrainingConfig.load(path, defaultModel: try FineTuneTasks.named("ve").model.name)
        let ve = try XCTUnwrap(c.model as? ALBEFVEConfig)
        XCTAssertEqual(ve.imageRes, 384)
        XCTAssertEqual(ve.alpha, 0.4)
        XCTAssertTrue(ve.distill)
        XCTAssertFalse(ve.warmUp)
        XCTAssertEqual(ve.bert.numHiddenLayers, 12)
        XCTAssertEqual(c.batchSize, 16)
        XCTAssertEqual(c.evalBatchSize, 32)
        XCTAssertEqual(c.schedule.lr, 2e-5)
        XCTAssertEqual(c.schedule.minLR, 1e-6)
        XCTAssertEqual(c.schedule.warmupLR, 1e-5)
        XCTAssertEqual(c.schedule.warmupEpochs, 1)
        XCTAssertEqual(c.schedule.epochs, 3)
        XCTAssertEqual(c.optimizer.weightDecay, 0.02)
        XCTAssertEqual(c.ignoredKeys, ["image_root", "schedular.cooldown_epochs", "schedular.decay_rate", "test_file", "train_file", "val_file"])
        // VE.py: scheduler.step(i // 100) in epoch 0, step(epoch + warmup_epochs + 1) after each
        // epoch, timm's cosine with warmup_prefix=False (t counts from 0): as Pretrain.py.
        func cosine(_ t: Double) -> Double { 1e-6 + 0.5 * (2e-5 - 1e-6) * (1 + cos(Double.pi * t / 3)) }
        XCTAssertEqual(c.learningRate(epoch: 0, iteration: 0), 1e-5)
        XCTAssertEqual(c.learningRate(epoch: 0, iteration: 99), 1e-5)
        XCTAssertEqual(c.learningRate(epoch: 0, iteration: 100), cosine(1), accuracy: 1e-15)
        XCTAssertEqual(c.learningRate(epoch: 1, iteration: 0), cosine(2), accuracy: 1e-15)
        XCTAssertEqual(c.learningRate(epoch: 2, iteration: 0), 1e-6)
    }

    func testEveryShippedTaskConfigIsTheOfficialFile() throws {
        for task in FineTuneTasks.all {
            let text = try String(contentsOfFile: Self.repo.appendingPathComponent(task.config).path, encoding: .utf8)
            XCTAssertTrue(text.contains("schedular: {sched: cosine"), task.config)
            XCTAssertTrue(text.contains("bert_config: 'configs/config_bert.json'"), task.config)
        }
        for name in ["Retrieval_flickr.yaml", "NLVR.yaml"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: Self.repo.appendingPathComponent("configs/" + name).path), name)
        }
    }

    func testBatchKeys() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-taskcfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("x.yaml").path
        try "batch_size: 8\nbatch_size_train: 8\n".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfig.load(p)) { e in
            XCTAssertTrue("\(e)".contains("batch_size_train: given together with batch_size"), "\(e)")
        }
        try "batch_size_train: 0\n".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfig.load(p)) { e in XCTAssertTrue("\(e)".contains("batch_size_train"), "\(e)") }
        try "batch_size_train: 6\nbatch_size_test: 10\n".write(toFile: p, atomically: true, encoding: .utf8)
        let c = try TrainingConfig.load(p)
        XCTAssertEqual(c.batchSize, 6)
        XCTAssertEqual(c.evalBatchSize, 10)
        XCTAssertEqual(c.model.kind, "albef")
    }
}

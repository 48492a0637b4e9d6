import Foundation
import XCTest

/// Issue 17 part 1: `elip bench train-step` times the fine-tuning tasks' steps (VE, NLVR2,
/// retrieval, VQA) on synthetic batches shaped as each task's loader gives them.
final class BenchTaskStepTests: XCTestCase {
    func testEveryTaskStepRunsOnItsSyntheticBatch() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FinetuneCommandTests.bert.write(to: tmp.appendingPathComponent("bert.json"), atomically: true, encoding: .utf8)
        // NLVR2 pairs the cross-attention of layers 6+2i and 7+2i: it needs fusion_layer 6 of 12.
        try """
        {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 12, "intermediate_size": 32,
         "vocab_size": 30522, "max_position_embeddings": 32, "fusion_layer": 6, "encoder_width": 16}
        """.write(to: tmp.appendingPathComponent("bert12.json"), atomically: true, encoding: .utf8)
        for task in ["ve", "nlvr2", "retrieval", "vqa"] {
            let config = tmp.appendingPathComponent("\(task).yaml").path
            try """
            model: albef-\(task)
            bert_config: \(task == "nlvr2" ? "bert12.json" : "bert.json")
            image_res: 32
            vision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
            \(task == "retrieval" ? "queue_size: 16\n" : "")
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let r = try CLI.run(["bench", "train-step", "--config", config, "--steps", "1", "--warmup", "0", "--batch", "3",
                                 "--json", "--threads", "2"])
            XCTAssertEqual(r.status, 0, "\(task): \(r.stderr)")
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(task): \(r.stdout)")
            let v = try XCTUnwrap((json["variants"] as? [[String: Any]])?.first)
            XCTAssertGreaterThan(try XCTUnwrap(v["step_seconds_median"] as? Double), 0, task)
            XCTAssertGreaterThan(try XCTUnwrap(v["gflop_per_step"] as? Double), 0, task)
            XCTAssertEqual(v["pruning"] as? String, "off", "\(task): ALBEF's task models do not prune")
        }
    }

    func testTaskOptionErrors() throws {
        let bad = try CLI.run(["bench", "train-step", "--task", "captioning"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--task 'captioning'") && bad.stderr.contains("vqa"), bad.stderr)
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp)
        let both = try CLI.run(["bench", "train-step", "--task", "ve", "--config", config])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--task ve") && both.stderr.contains("--config"), both.stderr)
    }
}

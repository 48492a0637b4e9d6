import Foundation
import XCTest

/// Issue 15, classes 2, 9 and 11: every bad config value the issue lists, for ALBEF and BLIP
/// configs, is a clear error (exit 1, the file and dotted key named) from every command that
/// reads configs — never a trap, a hang or a silent default.
final class ReliabilityConfigTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// (override, expected text in the error); `RES` is image_res (ALBEF) or image_size (BLIP).
    static let cases: [(String, String)] = [
        ("RES: .nan", "RES: must be a finite number, got .nan"),
        ("RES: .inf", "RES: must be a finite number, got .inf"),
        ("RES: 1e30", "RES: must be in [1, 16384], got 1e+30"),
        ("RES: 8192", "RES: 8192 px makes a "),
        ("vision.patch_size: 0", "vision.patch_size: must be in [1, 4096], got 0"),
        ("vision.num_heads: 0", "vision.num_heads: must be in [1, 4096], got 0"),
        ("vision.depth: -3", "vision.depth: must be in [1, 1024], got -3"),
        ("train.seed: -1", "train.seed: must be in [0, "),
        ("train.seed: 1e30", "train.seed: must be in [0, "),
        ("train.max_steps: 1e30", "train.max_steps: must be in [0, "),
        ("train.max_steps: .nan", "train.max_steps: must be a finite number, got .nan"),
        ("train.checkpoint_every: 0", "train.checkpoint_every: must be in [1, "),
        ("schedular.warmup_step_size: 0", "schedular.warmup_step_size: must be in [1, "),
        ("unknown_key: 3", "unknown_key: unknown key"),
        ("unknown_section: {a: 1}", "unknown_section: unknown key"),
        ("data.shard: /nowhere", "data.shard: unknown key, did you mean shards?"),
        ("img_prune: on", "img_prune: must be a mapping of keys to values, got true"),
        ("optimizer.opt: sgd", "optimizer.opt: must be adamW, adamw or AdamW, not 'sgd'"),
        ("schedular.sched: step", "schedular.sched: must be cosine or polynomial, not 'step'"),
        ("data.strict: maybe", "data.strict: must be true or false, got 'maybe'"),
        ("data.strict: 1", "data.strict: must be true or false, got 1"),
        ("train.dropout: \"no\"", "train.dropout: must be true or false, got 'no'"),
        ("train.dropout: 0", "train.dropout: must be true or false, got 0"),
        ("mlm_probability: 1.5", "mlm_probability: "),  // ALBEF: out of [0, 1]; BLIP has no such key
        ("momentum: 2", "momentum: must be in [0, 1], got 2"),
        ("momentum: -1", "momentum: must be in [0, 1], got -1"),
        ("optimizer.lr: -1", "optimizer.lr: must be in [1e-12, 10], got -1"),
        ("schedular.lr: .nan", "schedular.lr: must be a finite number, got .nan"),
    ]

    /// Runs `command` (built by `arguments(config)`) on every case for both models.
    func check(_ command: String, _ arguments: (String) -> [String], line: UInt = #line) throws {
        for model in Tiny.Model.allCases {
            for (i, (override, needle)) in Self.cases.enumerated() {
                let expected = needle.replacingOccurrences(of: "RES", with: Tiny.resolutionKey(model))
                let config = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-\(i).yaml", overrides: [override])
                let r = try CLI.run(arguments(config))
                XCTAssertEqual(r.status, 1, "\(command), \(model), '\(override)': exit \(r.status) (a signal would be a trap)\n\(r.stderr)", line: line)
                XCTAssertTrue(r.stderr.contains(config) && r.stderr.contains(expected),
                              "\(command), \(model), '\(override)': expected '\(config): \(expected)', got: \(r.stderr)", line: line)
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out").path), "\(command) wrote output for a bad config", line: line)
    }

    func testTrainRefusesEveryBadValue() throws {
        try check("train") { ["train", "--config", $0, "--out", self.tmp.appendingPathComponent("out").path] }
    }

    func testBenchTrainStepRefusesEveryBadValue() throws {
        try check("bench train-step") { ["bench", "train-step", "--config", $0, "--steps", "1"] }
    }

    /// Evaluation commands read the config before the weights: the config file itself stands in
    /// for a state dict, so nothing needs training.
    func testEvalRetrievalRefusesEveryBadValue() throws {
        try check("eval-retrieval") { ["eval-retrieval", "--config", $0, "--checkpoint", $0, "--data", "x.json", "--out", self.tmp.appendingPathComponent("out").path] }
    }

    func testCaptionRefusesEveryBadValue() throws {
        try check("caption") { ["caption", "--config", $0, "--checkpoint", $0, "--data", "x.json", "--out", self.tmp.appendingPathComponent("out").path] }
    }

    func testVisualizeRefusesEveryBadValue() throws {
        try check("visualize") { ["visualize", "--config", $0, "--checkpoint", $0, "--image", "x.png", "--caption", "a square", "--out", self.tmp.appendingPathComponent("out").path] }
    }

    /// The base configs are valid (so each case above fails for its one override): both models
    /// train 2 steps, and `img_prune: off` / `dropout: off` (YAML booleans) are accepted.
    func testTheBaseConfigsTrain() throws {
        for model in Tiny.Model.allCases {
            for overrides in [[], ["img_prune: off", "train.dropout: off"]] {
                let config = try Tiny.writeConfig(model, folder: tmp, overrides: overrides)
                let run = tmp.appendingPathComponent("run-\(model)-\(overrides.count)").path
                let r = try CLI.run(["train", "--config", config, "--out", run, "--threads", "2"])
                XCTAssertEqual(r.status, 0, "\(model) \(overrides): \(r.stdout)\(r.stderr)")
                XCTAssertTrue(r.stdout.contains(overrides.isEmpty ? "pruning keeps" : "pruning off"), r.stdout)
            }
        }
    }

    /// A BERT JSON whose position table holds only [CLS] would train on empty captions.
    func testBertWithOnePositionIsRefused() throws {
        let config = try Tiny.writeConfig(.albef, folder: tmp)
        let bert = tmp.appendingPathComponent("bert_tiny.json").path
        try Tiny.albefBert.replacingOccurrences(of: "\"max_position_embeddings\": 32", with: "\"max_position_embeddings\": 1")
            .write(toFile: bert, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", config, "--out", tmp.appendingPathComponent("out").path])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("\(bert): max_position_embeddings: must be in [2, "), r.stderr)
    }

    /// A synthetic corpus smaller than one batch would repeat images inside the batch.
    func testSyntheticCorpusSmallerThanABatchIsRefused() throws {
        let config = try Tiny.writeConfig(.albef, folder: tmp, overrides: ["data.synthetic: {images: 3, size: 32}"])
        let r = try CLI.run(["train", "--config", config, "--out", tmp.appendingPathComponent("out").path])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("\(config): data.synthetic.images: 3 images are fewer than the 4 one step takes (batch_size 4)"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out").path))
    }

    /// queue_size must hold what one step enqueues: batch_size x ranks for train, --batch for
    /// bench train-step. (Evaluation does not enqueue, so the same file evaluates.)
    func testQueueSmallerThanTheBatchIsRefused() throws {
        for model in Tiny.Model.allCases {
            let config = try Tiny.writeConfig(model, folder: tmp, overrides: ["queue_size: 3"])
            let t = try CLI.run(["train", "--config", config, "--out", tmp.appendingPathComponent("out").path])
            XCTAssertEqual(t.status, 1, t.stderr)
            XCTAssertTrue(t.stderr.contains("\(config): queue_size: 3 is smaller than the 4 features each step enqueues (batch_size 4)"), t.stderr)
            let b = try CLI.run(["bench", "train-step", "--config", config, "--steps", "1", "--batch", "4"])
            XCTAssertEqual(b.status, 64, b.stderr)
            XCTAssertTrue(b.stderr.contains("queue_size 3 is smaller than the 4 features"), b.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out").path))
    }

    /// Class 9: a "billion laughs" config (nine anchors, each listing the previous nine times:
    /// 9^9 values), the same as a mapping key and through merge keys, ends in well under a
    /// second with an error instead of growing to gigabytes; a FIFO named as a config and a huge
    /// file are refused without reading them. A config using an alias normally still works.
    func testAliasBombsFifosAndHugeConfigsAreRefusedQuickly() throws {
        var laughs = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...9 { laughs += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]\n" }
        var merges = "m0: &m0 {x: 1, y: 2}\n"
        for i in 1...30 { merges += "m\(i): &m\(i) {<<: *m\(i - 1), p\(i): *m\(i - 1), q\(i): *m\(i - 1)}\n" }
        let bombs = [("laughs", laughs), ("key", laughs + "? *a9\n: 1\n"), ("merge", merges),
                     ("cr-breaks", laughs.replacingOccurrences(of: "\n", with: "\r"))]
        for model in Tiny.Model.allCases {
            for (name, bomb) in bombs {
                let config = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-\(name).yaml", extra: bomb)
                for command in [["train", "--config", config, "--out", tmp.appendingPathComponent("out").path],
                                ["eval-retrieval", "--config", config, "--checkpoint", config, "--data", "x.json"]] {
                    let start = Date()
                    let r = try CLI.run(command)
                    XCTAssertEqual(r.status, 1, "\(model) \(name) \(command[0]): \(r.stderr)")
                    XCTAssertTrue(r.stderr.contains("\(config): its YAML aliases (*name) expand it to more than 100000 values"), "\(model) \(name): \(r.stderr)")
                    XCTAssertLessThan(Date().timeIntervalSince(start), 10, "\(model) \(name) \(command[0]) took too long")
                }
            }
            let aliased = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-alias.yaml",
                                               overrides: ["optimizer.lr: &lr 1e-3", "schedular.lr: *lr"])
            let ok = try CLI.run(["train", "--config", aliased, "--out", tmp.appendingPathComponent("alias-\(model)").path, "--threads", "2"])
            XCTAssertEqual(ok.status, 0, "a config with one alias: \(ok.stderr)")
        }
        let fifo = tmp.appendingPathComponent("fifo.yaml").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let f = try CLI.run(["train", "--config", fifo, "--out", tmp.appendingPathComponent("out").path])
        XCTAssertEqual(f.status, 1)
        XCTAssertTrue(f.stderr.contains("\(fifo): not a regular file"), f.stderr)
        let huge = tmp.appendingPathComponent("huge.yaml")
        try Data(repeating: UInt8(ascii: "#"), count: 5 << 20).write(to: huge)
        let h = try CLI.run(["train", "--config", huge.path, "--out", tmp.appendingPathComponent("out").path])
        XCTAssertEqual(h.status, 1)
        XCTAssertTrue(h.stderr.contains("\(huge.path): 5242880 bytes; a config file may have at most 4194304 bytes"), h.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out").path))
    }
}

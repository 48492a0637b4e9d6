import Foundation
import Safetensors
import TorchSaveFixtures
import XCTest

/// `elip finetune` (issue 14 part 1): a tiny pre-training run's checkpoint loaded into the SNLI-VE
/// model the way VE.py loads it (listing what was resized, kept at init and not used), trained on
/// the synthetic entailment split with the trainer's checkpoints, exact resume and metrics; and
/// the errors for a bad task, a missing start and a config naming another model.
final class FinetuneCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try CLI.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    static let bert = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 32,
     "vocab_size": 30522, "max_position_embeddings": 32, "fusion_layer": 2, "encoder_width": 16}
    """

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// A 3-step ALBEF pre-training at 32 px (4 x 4 patch grid); its model.safetensors.
    func pretrainedCheckpoint() throws -> String {
        try TinyPretraining.weights(in: dir, bertJSON: Self.bert, steps: 3)
    }

    /// The VE config at 48 px (6 x 6 grid: the position tables are interpolated), with the
    /// official VE.yaml's file keys (accepted and ignored).
    func veConfig(extraTop: String = "") throws -> String {
        _ = try write("bert.json", Self.bert)
        return try write("ve.yaml", """
        \(extraTop)train_file: 've_train.json'
        val_file: 've_dev.json'
        test_file: 've_test.json'
        image_root: '/images'
        bert_config: bert.json
        image_res: 48
        batch_size_train: 4
        batch_size_test: 8
        alpha: 0.4
        distill: True
        warm_up: False
        vision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
        optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-3, epochs: 3, min_lr: 1e-6, decay_rate: 1, warmup_lr: 1e-4, warmup_epochs: 1, cooldown_epochs: 0}
        train: {checkpoint_every: 2, keep_checkpoints: 5, log_every: 1, seed: 5, bucket_mb: 1}
        data: {synthetic: {images: 8, size: 48}}

        """)
    }

    func finetune(_ config: String, _ out: String, _ extra: [String]) throws -> ElipRun {
        try CLI.run(["finetune", "--task", "ve", "--config", config, "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent(out).path, "--threads", "1"] + extra)
    }

    func modelBytes(_ run: String, step: Int) throws -> Data {
        try Data(contentsOf: dir.appendingPathComponent(run).appendingPathComponent(String(format: "checkpoints/step-%08d/model.safetensors", step)))
    }

    func testInitListingTrainingAndExactResume() throws {
        let ckpt = try pretrainedCheckpoint()
        let config = try veConfig()
        let straight = try finetune(config, "straight", ["--init", ckpt, "--max-steps", "4"])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("resized by interpolate_pos_embed (visual_encoder.pos_embed, visual_encoder_m.pos_embed)"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("kept at initialisation (missing_keys, 8): cls_head.0.bias, cls_head.0.weight, cls_head.2.bias, cls_head.2.weight, cls_head_m.0.bias"), straight.stdout)
        for unused in ["itm_head.weight", "temp", "image_queue", "text_encoder.cls.predictions.bias", "vision_proj_m.weight"] {
            XCTAssertTrue(straight.stdout.contains(unused), "\(unused) not listed as unexpected: \(straight.stdout)")
        }
        XCTAssertTrue(straight.stdout.contains("accepted and ignored"), straight.stdout)
        let metrics = try String(contentsOf: dir.appendingPathComponent("straight/metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(metrics.count, 4)
        for m in metrics {
            let loss = try XCTUnwrap((m["losses"] as? [String: Any])?["loss"] as? Double)
            XCTAssertTrue(loss.isFinite && loss > 0, "\(m)")
            XCTAssertEqual((m["values"] as? [String: Any])?["alpha"] as? Double ?? 0, 0.4, accuracy: 1e-6)
        }
        // Stop at 2, resume to 4: bitwise the same weights as the straight run.
        // --init as the pre-training run folder (its newest checkpoint): the same start.
        let pretrainRun = dir.appendingPathComponent("pretrain").path
        let first = try finetune(config, "resumed", ["--init", pretrainRun, "--max-steps", "2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try finetune(config, "resumed", ["--init", ckpt, "--max-steps", "4", "--resume", "auto"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try modelBytes("resumed", step: 4), try modelBytes("straight", step: 4))
        // The pre-trained start differs from a random one.
        let random = try finetune(config, "random", ["--random-init", "--max-steps", "2"])
        XCTAssertEqual(random.status, 0, random.stderr)
        XCTAssertNotEqual(try modelBytes("random", step: 2), try modelBytes("resumed", step: 2))
    }

    /// --init also takes the official code's checkpoint file: the same weights as a torch.save
    /// zip `{'model': state_dict, 'epoch', 'config'}` (as ALBEF_4M.pth is laid out) give a
    /// fine-tuning run bitwise equal to the one started from the safetensors checkpoint.
    func testInitFromAnOfficialStylePthCheckpoint() throws {
        let ckpt = try pretrainedCheckpoint()
        let config = try veConfig()
        let st = try SafetensorsFile(path: ckpt)
        let state: [(String, TorchSaveGenerator.Object)] = try st.names.map { ($0, try torchSaveTensor(st, $0)) }
        let pth = dir.appendingPathComponent("ALBEF_tiny.pth").path
        let checkpoint = TorchSaveGenerator.Object.dict([("model", .orderedDict(state, metadata: true)), ("epoch", .int(29)),
                                                         ("config", .dict([("image_res", .int(32))]))])
        try Data(TorchSaveGenerator.zipCheckpoint(checkpoint, archive: "ALBEF_tiny")).write(to: URL(fileURLWithPath: pth))
        let fromPth = try finetune(config, "from-pth", ["--init", pth, "--max-steps", "2"])
        XCTAssertEqual(fromPth.status, 0, fromPth.stderr)
        XCTAssertTrue(fromPth.stdout.contains("resized by interpolate_pos_embed"), fromPth.stdout)
        let fromSafetensors = try finetune(config, "from-safetensors", ["--init", ckpt, "--max-steps", "2"])
        XCTAssertEqual(fromSafetensors.status, 0, fromSafetensors.stderr)
        XCTAssertEqual(try modelBytes("from-pth", step: 2), try modelBytes("from-safetensors", step: 2))
    }

    /// synth's ve_train.json -> build-dataset --format ve (one record per image) -> finetune from
    /// the shards; a pre-training corpus is refused before the first step.
    func testFromVEShards() throws {
        let syn = dir.appendingPathComponent("syn").path
        XCTAssertEqual(try CLI.run(["synth", "--out", syn, "--images", "6", "--size", "48", "--seed", "2", "--test-fraction", "0"]).status, 0)
        let shards = dir.appendingPathComponent("ve-shards").path
        let b = try CLI.run(["build-dataset", "--format", "ve", "--annotations", syn + "/ve_train.json", "--image-root", syn,
                             "--out", shards, "--shards", "2", "--image-size", "48", "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("built 6 records"), b.stdout)   // one per image, its 3 statements inside
        let config = try veConfig()
        let r = try finetune(config, "shards", ["--random-init", "--data", shards, "--max-steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("6 records (one sample per caption)"), r.stdout)
        let plain = dir.appendingPathComponent("pt-shards").path
        XCTAssertEqual(try CLI.run(["build-dataset", "--annotations", syn + "/train.json", "--image-root", syn,
                                    "--out", plain, "--shards", "1", "--image-size", "48", "--quiet"]).status, 0)
        let refused = try finetune(config, "plain", ["--random-init", "--data", plain, "--max-steps", "2"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("these shards were built without --format (pre-training captions); task ve needs `elip build-dataset --format ve` shards"), refused.stderr)
        let badFormat = try CLI.run(["build-dataset", "--format", "sst2", "--annotations", syn + "/ve_train.json", "--image-root", syn,
                                     "--out", dir.appendingPathComponent("z").path, "--shards", "1"])
        XCTAssertNotEqual(badFormat.status, 0)
        XCTAssertTrue(badFormat.stderr.contains("--format must be one of captions, ve, nlvr2, retrieval, vqa, got 'sst2'"), badFormat.stderr)
    }

    /// eval-ve: every sample once, the same counts under 1, 2 and 3 ranks and any batch size
    /// (7 samples: blocks of unequal size); bad entries are errors naming them.
    func testEvalVEEverySampleOnceUnderAnyRankCount() throws {
        let config = try veConfig()
        let run = dir.appendingPathComponent("ev").path
        let t = try CLI.run(["finetune", "--task", "ve", "--config", config, "--vocab", Tiny.vocab, "--out", run, "--threads", "1",
                             "--random-init", "--max-steps", "2"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let syn = dir.appendingPathComponent("syn").path
        XCTAssertEqual(try CLI.run(["synth", "--out", syn, "--images", "5", "--size", "48", "--seed", "4", "--test-fraction", "0.5"]).status, 0)
        let all = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: syn + "/ve_test.json"))) as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(all.count, 7)
        let split = dir.appendingPathComponent("split.json").path
        try JSONSerialization.data(withJSONObject: Array(all.prefix(7))).write(to: URL(fileURLWithPath: split))
        func eval(_ prefix: [String], _ extra: [String], _ out: String) throws -> [String: Any] {
            let outPath = dir.appendingPathComponent(out).path
            let args = ["eval-ve", "--checkpoint", run, "--data", split, "--image-root", syn, "--vocab", Tiny.vocab,
                        "--threads", "1", "--quiet", "--out", outPath] + extra
            let r = prefix.isEmpty ? try CLI.run(args) : try Self.runProcess(prefix[0], Array(prefix.dropFirst()) + [CLI.executable.path] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: outPath))) as! [String: Any]
        }
        let one = try eval([], ["--batch", "3"], "one.json")
        XCTAssertEqual(one["samples"] as? Int, 7)
        let confusion = (one["confusion"] as! [String: Any])["counts"] as! [[Int]]
        XCTAssertEqual(confusion.flatMap { $0 }.reduce(0, +), 7)
        XCTAssertEqual(confusion.map { $0.reduce(0, +) }, (0..<3).map { l in all.prefix(7).filter { ($0["label"] as! String) == ["contradiction", "neutral", "entailment"][l] }.count })
        XCTAssertEqual(one["correct"] as? Int, confusion[0][0] + confusion[1][1] + confusion[2][2])
        let batched = try eval([], ["--batch", "7"], "batched.json")
        XCTAssertEqual((batched["confusion"] as! [String: Any])["counts"] as! [[Int]], confusion)
        if let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            for ranks in [2, 3] {
                let m = try eval([mpirun, "-np", "\(ranks)", "--oversubscribe"], ["--batch", "2"], "mpi\(ranks).json")
                XCTAssertEqual(m["samples"] as? Int, 7, "\(ranks) ranks")
                XCTAssertEqual(m["world_size"] as? Int, ranks)
                XCTAssertEqual((m["confusion"] as! [String: Any])["counts"] as! [[Int]], confusion, "\(ranks) ranks")
            }
        } else {
            print("FinetuneCommandTests: no mpirun; the multi-rank eval-ve cases did not run")
        }
        // Bad entries: an unknown label and a missing image are errors naming the entry.
        for (k, bad) in [(2, ["image": "images/000001", "sentence": "a b", "label": "maybe"]),
                         (3, ["image": "images/424242", "sentence": "a b", "label": "neutral"])] {
            var entries = Array(all.prefix(k))
            entries.append(bad)
            try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: split))
            let r = try CLI.run(["eval-ve", "--checkpoint", run, "--data", split, "--image-root", syn, "--vocab", Tiny.vocab, "--quiet"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("entry \(k)") || r.stderr.contains("424242"), r.stderr)
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
        }
    }

    /// 2 ranks x batch 2 == 1 rank x batch 4 (dropout off: each rank draws its own masks), from
    /// the same pre-trained start: SNLI-VE has no cross-sample term, DDP averages the gradients.
    func testTwoRanksEqualOneRankWithTheGlobalBatch() throws {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no mpirun")
        }
        let ckpt = try pretrainedCheckpoint()
        let config = try veConfig()
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "seed: 5, bucket_mb: 1}", with: "seed: 5, bucket_mb: 1, dropout: false}")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let one = try finetune(config, "one", ["--init", ckpt, "--max-steps", "2", "--batch-size", "4"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try Self.runProcess(mpirun, ["-np", "2", "--oversubscribe", CLI.executable.path, "finetune", "--task", "ve", "--config", config,
                                               "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent("two").path, "--threads", "1",
                                               "--init", ckpt, "--max-steps", "2", "--batch-size", "2"])
        XCTAssertEqual(two.status, 0, two.stderr)
        let a = dir.appendingPathComponent("one/checkpoints/step-00000002/model.safetensors").path
        let b = dir.appendingPathComponent("two/checkpoints/step-00000002/model.safetensors").path
        // Attention key biases get a gradient that is zero up to rounding (softmax ignores a
        // per-row shift), so after AdamW their values are noise of either summation order.
        let d = try CLI.run(["diff-weights", a, b, "--tolerance", "1e-5", "--exclude", "key.bias"])
        XCTAssertEqual(d.status, 0, d.stdout + d.stderr)
    }

    /// Runs `executable` (mpirun) with root allowed, capturing its output.
    static func runProcess(_ executable: String, _ arguments: [String]) throws -> ElipRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return ElipRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func testRefusals() throws {
        let config = try veConfig()
        func refused(_ args: [String], _ expected: String, line: UInt = #line) throws {
            let r = try CLI.run(["finetune", "--config", config, "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent("x").path] + args)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", line: line)
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, line: line)
        }
        try refused(["--task", "ve"], "--init CHECKPOINT is required")
        try refused(["--task", "ve", "--init", "a.safetensors", "--random-init"], "exclude each other")
        try refused(["--task", "sst2", "--random-init"], "unknown task 'sst2' (known: ve, retrieval, vqa, nlvr2, nlvr2-ta)")
        try refused(["--task", "ve", "--init", dir.appendingPathComponent("missing.safetensors").path], "missing.safetensors")
        let albef = try veConfig(extraTop: "model: albef\n")
        let r = try CLI.run(["finetune", "--task", "ve", "--config", albef, "--random-init", "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent("y").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("unknown key") || r.stderr.contains("fine-tunes albef-ve"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x/checkpoints").path))
    }
}

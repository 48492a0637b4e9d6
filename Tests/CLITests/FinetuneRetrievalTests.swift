import Foundation
import Safetensors
import XCTest

/// `elip finetune --task retrieval` (issue 14): synth's retrieval_train.json -> build-dataset
/// --format retrieval -> fine-tuning from a tiny pre-training checkpoint loaded as Retrieval.py
/// loads it -> eval-retrieval (and `elip eval --task retrieval`) on the held-out split; bitwise
/// resume; and what 2 ranks x B share with 1 rank x 2B.
final class FinetuneRetrievalTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try CLI.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    var path: (String) -> String { { self.dir.appendingPathComponent($0).path } }

    /// A 3-step ALBEF pre-training at 32 px (4 x 4 patches, queue 16, embed 8).
    func pretrainedRun() throws -> String {
        try TinyPretraining.run(in: dir, bertJSON: Tiny.albefBert, steps: 3)
    }

    /// Retrieval_flickr.yaml's keys at 48 px (the 4 x 4 position grid is interpolated to 6 x 6).
    func retrievalConfig(train: String = "checkpoint_every: 2, keep_checkpoints: 5, log_every: 1, seed: 5, bucket_mb: 1") throws -> String {
        _ = try write("bert.json", Tiny.albefBert)
        return try write("retrieval.yaml", """
        train_file: ['flickr30k_train.json']
        val_file: 'flickr30k_val.json'
        test_file: 'flickr30k_test.json'
        image_root: '/images'
        bert_config: bert.json
        image_res: 48
        batch_size_train: 4
        batch_size_test: 8
        queue_size: 16
        momentum: 0.995
        vision_width: 16
        embed_dim: 8
        temp: 0.07
        k_test: 4
        alpha: 0.4
        distill: True
        warm_up: True
        vision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
        optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-3, epochs: 5, min_lr: 1e-6, decay_rate: 1, warmup_lr: 1e-4, warmup_epochs: 1, cooldown_epochs: 0}
        train: {\(train)}
        data: {synthetic: {images: 8, size: 48}}

        """)
    }

    func finetune(_ config: String, _ out: String, _ extra: [String]) throws -> ElipRun {
        try CLI.run(["finetune", "--task", "retrieval", "--config", config, "--vocab", Tiny.vocab, "--out", path(out), "--threads", "1"] + extra)
    }

    /// queue_ptr of the pre-training run's (only) checkpoint, which Retrieval.py's load keeps.
    func pretrainedPointer(_ run: String) throws -> [Int64] {
        try SafetensorsFile(path: run + "/checkpoints/step-00000003/model.safetensors").int64s("queue_ptr")
    }

    func modelFile(_ run: String, step: Int) -> String {
        path(run) + String(format: "/checkpoints/step-%08d/model.safetensors", step)
    }

    /// The corpus (8 scenes, 2 held out), its retrieval shards.
    func shards() throws -> (corpus: String, shards: String) {
        let syn = path("syn")
        let s = try CLI.run(["synth", "--out", syn, "--images", "8", "--size", "48", "--seed", "3", "--test-fraction", "0.25"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let entries = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: syn + "/retrieval_train.json"))) as! [[String: Any]]
        XCTAssertEqual(entries.count, 6 * 4, "one entry per caption of the 6 training scenes")
        XCTAssertEqual(Set(entries.map { $0["image_id"] as! String }).count, 6)
        let b = try CLI.run(["build-dataset", "--format", "retrieval", "--annotations", syn + "/retrieval_train.json", "--image-root", syn,
                             "--out", path("ret-shards"), "--shards", "2", "--image-size", "48", "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("built 6 records"), b.stdout)
        XCTAssertTrue(b.stdout.contains("captions: 24 (4.00 per image)"), b.stdout)
        return (syn, path("ret-shards"))
    }

    func testShardsInitResumeAndEvaluation() throws {
        let (syn, shards) = try shards()
        let pretrain = try pretrainedRun()
        let config = try retrievalConfig()
        let straight = try finetune(config, "straight", ["--init", pretrain, "--data", shards, "--max-steps", "4"])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        // Retrieval.py's load: both position grids resized, idx_queue kept at -100, MLM heads unused.
        XCTAssertTrue(straight.stdout.contains("resized by interpolate_pos_embed (visual_encoder.pos_embed, visual_encoder_m.pos_embed)"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("kept at initialisation (missing_keys, 1): idx_queue"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("text_encoder.cls.predictions.bias"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("6 records (one sample per caption)"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("6 batches/epoch"), straight.stdout)   // 24 captions / batch 4
        let metrics = try String(contentsOfFile: path("straight/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(metrics.count, 4)
        for m in metrics {
            let losses = try XCTUnwrap(m["losses"] as? [String: Any])
            for k in ["ita", "itm"] { XCTAssertTrue((losses[k] as? Double)?.isFinite == true, "\(k): \(m)") }
        }
        // warm_up: alpha ramps over epoch 0 (iteration i of 6: 0.4 * i / 6).
        XCTAssertEqual(((metrics[3]["values"] as? [String: Any])?["alpha"] as? Double) ?? -1, 0.4 * 3 / 6, accuracy: 1e-6)
        // The image ids of the last step are in idx_queue (the pre-trained queues were loaded).
        let weights = try SafetensorsFile(path: modelFile("straight", step: 4))
        let ids = try weights.int64s("idx_queue")
        XCTAssertEqual(ids.filter { $0 >= 0 }.count, 16, "4 steps x 4 captions fill the 16 columns")
        XCTAssertTrue(ids.allSatisfy { (0..<6).contains($0) }, "\(ids)")
        // The pointer went on from the pre-training one: 16 columns later it is back there.
        XCTAssertEqual(try weights.int64s("queue_ptr"), try pretrainedPointer(pretrain))

        // Stop at 2, resume to 4: bitwise the straight run.
        let first = try finetune(config, "resumed", ["--init", pretrain, "--data", shards, "--max-steps", "2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try finetune(config, "resumed", ["--init", pretrain, "--data", shards, "--max-steps", "4", "--resume", "auto"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: modelFile("resumed", step: 4))),
                       try Data(contentsOf: URL(fileURLWithPath: modelFile("straight", step: 4))))

        // eval-retrieval reads the fine-tuned checkpoint as the retrieval model (its trainer.json
        // records the model); `elip eval --task retrieval` is the same evaluator.
        let direct = try CLI.run(["eval-retrieval", "--checkpoint", path("straight"), "--data", syn + "/test.json", "--image-root", syn,
                                  "--vocab", Tiny.vocab, "--k-test", "4", "--quiet", "--threads", "1", "--out", path("direct.json")])
        XCTAssertEqual(direct.status, 0, direct.stderr)
        let viaEval = try CLI.run(["eval", "--task", "retrieval", "--checkpoint", path("straight"), "--data", syn + "/test.json", "--image-root", syn,
                                   "--vocab", Tiny.vocab, "--k-test", "4", "--quiet", "--threads", "1", "--out", path("eval.json")])
        XCTAssertEqual(viaEval.status, 0, viaEval.stderr)
        let a = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("direct.json")))) as! [String: Any]
        let b = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("eval.json")))) as! [String: Any]
        XCTAssertEqual(a["images"] as? Int, 2)
        XCTAssertEqual(a["texts"] as? Int, 8)
        XCTAssertEqual(a["step"] as? Int, 4)
        XCTAssertEqual(a["image_res"] as? Int, 48)
        for k in ["txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"] {
            let v = try XCTUnwrap(a[k] as? Double, k)
            XCTAssertTrue((0...100).contains(v), "\(k) \(v)")
            XCTAssertEqual(b[k] as? Double, v, k)
        }
        // 2 images: every image's captions are within its top 5 and R@10 is 100.
        XCTAssertEqual(a["txt_r10"] as? Double, 100)
        XCTAssertEqual(a["img_r10"] as? Double, 100)
    }

    func testRefusals() throws {
        let (syn, shards) = try shards()
        let config = try retrievalConfig()
        // SNLI-VE shards (or a pre-training corpus) are not retrieval data.
        let ve = try CLI.run(["build-dataset", "--format", "ve", "--annotations", syn + "/ve_train.json", "--image-root", syn,
                              "--out", path("ve-shards"), "--shards", "1", "--image-size", "48", "--quiet"])
        XCTAssertEqual(ve.status, 0, ve.stderr)
        let wrong = try finetune(config, "wrong", ["--random-init", "--data", path("ve-shards"), "--max-steps", "1"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.stderr.contains("these shards were built with --format ve; task retrieval needs `elip build-dataset --format retrieval` shards"), wrong.stderr)
        // A pre-training checkpoint whose queue size differs from the config's: a shape error naming it.
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "queue_size: 16", with: "queue_size: 20")
        let other = try write("retrieval-q20.yaml", text)
        let pretrain = try pretrainedRun()
        let mismatch = try finetune(other, "q20", ["--init", pretrain, "--data", shards, "--max-steps", "1"])
        XCTAssertNotEqual(mismatch.status, 0)
        // (which of the two queues is named first is not fixed)
        XCTAssertTrue(mismatch.stderr.contains("size mismatch for image_queue (from image_queue): [8, 16] in the checkpoint, [8, 20] in the model")
                      || mismatch.stderr.contains("size mismatch for text_queue (from text_queue): [8, 16] in the checkpoint, [8, 20] in the model"), mismatch.stderr)
        XCTAssertFalse(mismatch.stderr.contains("Fatal error"), mismatch.stderr)
        // Batch larger than the data: a clear loader error.
        let big = try finetune(config, "big", ["--random-init", "--data", shards, "--batch-size", "25", "--max-steps", "1"])
        XCTAssertNotEqual(big.status, 0)
        XCTAssertTrue(big.stderr.contains("fewer than one batch of 25"), big.stderr)
        // elip eval: nlvr2 goes to eval-nlvr2 (its own argument error), an unknown task.
        let nlvr = try CLI.run(["eval", "--task", "nlvr2", "--checkpoint", "x"])
        XCTAssertNotEqual(nlvr.status, 0)
        XCTAssertTrue(nlvr.stderr.contains("--data"), nlvr.stderr)
        let unknown = try CLI.run(["eval", "--task", "caption"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown task 'caption' (known: retrieval, ve, vqa, nlvr2)"), unknown.stderr)
        // The evaluator's own argument errors come from the evaluator.
        let bad = try CLI.run(["eval", "--task", "ve", "--checkpoint", "x"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--data"), bad.stderr)
    }

    /// 2 ranks x batch 2 vs 1 rank x batch 4 on the synthetic retrieval split (the same 4 samples
    /// per step). Retrieval.py's ITC contrasts each rank's batch with the queue and draws ITM
    /// negatives within the rank's batch, so the losses and weights differ by design; the enqueue
    /// gathers every rank's momentum features and image ids in rank order, so the queues are the
    /// ones of the global batch: idx_queue and queue_ptr bitwise after 2 steps, and the feature
    /// columns of step 1 (momentum = the same initial weights) within 1e-5.
    func testTwoRanksShareTheQueueOfTheGlobalBatch() throws {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no mpirun")
        }
        let pretrain = try pretrainedRun()
        let config = try retrievalConfig(train: "checkpoint_every: 1, keep_checkpoints: 5, log_every: 1, seed: 5, bucket_mb: 1, dropout: false")
        let one = try finetune(config, "one", ["--init", pretrain, "--max-steps", "2", "--batch-size", "4"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stdout.contains("synthetic retrieval: 8 scenes x 4 captions"), one.stdout)
        let two = try FinetuneCommandTests.runProcess(mpirun, ["-np", "2", "--oversubscribe", CLI.executable.path, "finetune", "--task", "retrieval",
                                                               "--config", config, "--vocab", Tiny.vocab, "--out", path("two"), "--threads", "1",
                                                               "--init", pretrain, "--max-steps", "2", "--batch-size", "2"])
        XCTAssertEqual(two.status, 0, two.stderr)
        let start = Int(try XCTUnwrap(try pretrainedPointer(pretrain).first))
        for step in [1, 2] {
            let a = try SafetensorsFile(path: modelFile("one", step: step)), b = try SafetensorsFile(path: modelFile("two", step: step))
            XCTAssertEqual(try a.int64s("idx_queue"), try b.int64s("idx_queue"), "step \(step)")
            XCTAssertEqual(try a.int64s("idx_queue").filter { $0 >= 0 }.count, 4 * step)
            XCTAssertEqual(try a.int64s("queue_ptr"), try b.int64s("queue_ptr"), "step \(step)")
            XCTAssertEqual(try a.int64s("queue_ptr"), [Int64((start + 4 * step) % 16)])
        }
        let a = try SafetensorsFile(path: modelFile("one", step: 1)), b = try SafetensorsFile(path: modelFile("two", step: 1))
        let written = Set((0..<4).map { (start + $0) % 16 })   // step 1's columns of the [embed 8, queue 16] queues
        for name in ["image_queue", "text_queue"] {
            let x = try a.floats(name), y = try b.floats(name)
            var worst: Float = 0
            for row in 0..<8 {
                for col in 0..<16 {
                    let i = row * 16 + col
                    if written.contains(col) { worst = max(worst, abs(x[i] - y[i])) } else {
                        XCTAssertEqual(x[i], y[i], "\(name)[\(row), \(col)]: not written yet, the loaded queue")
                    }
                }
            }
            XCTAssertLessThan(worst, 1e-5, name)
        }
        // The online weights differ (per-rank ITC and ITM), as under DDP in the official code.
        let d = try CLI.run(["diff-weights", modelFile("one", step: 1), modelFile("two", step: 1), "--tolerance", "1e-5", "--exclude", "key.bias"])
        XCTAssertNotEqual(d.status, 0, "ITC over 2 vs 4 samples should give other gradients")
    }
}

import Foundation
import Safetensors
import XCTest

/// VQA end to end (issue 14): `elip finetune --task vqa` from a pre-training checkpoint loaded as
/// VQA.py loads it, exact resume, 2 ranks x B == 1 rank x 2B, training from
/// `build-dataset --format vqa` shards, and `elip eval-vqa --checkpoint` answering every
/// held-out question exactly once under any rank count, in the upload format, scored.
final class VQAFinetuneCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try CLI.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// 8 layers with fusion from 6, as the official split: VQA.py copies text layers 6 and 7 into
    /// decoder layers 0 and 1.
    static let bert = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 8, "intermediate_size": 32,
     "vocab_size": 30522, "max_position_embeddings": 40, "fusion_layer": 6, "encoder_width": 16}
    """

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// A 2-step ALBEF pre-training at 32 px (4 x 4 patch grid); its model.safetensors.
    func pretrainedCheckpoint() throws -> String {
        try TinyPretraining.weights(in: dir, bertJSON: Self.bert, steps: 2)
    }

    /// VQA.yaml's keys at 48 px (the position tables are interpolated), a 2-layer decoder-sized
    /// model, synthetic questions unless --data is given.
    func vqaConfig(warmupLR: String = "1e-4", dropout: Bool = true) throws -> String {
        _ = try write("bert.json", Self.bert)
        return try write("vqa.yaml", """
        train_file: ['vqa_train.json', 'vg_qa.json']
        test_file: ['vqa_test.json']
        answer_list: 'answer_list.json'
        vqa_root: '/images/coco'
        vg_root: '/images/vg'
        bert_config: bert.json
        image_res: 48
        batch_size_train: 4
        batch_size_test: 8
        k_test: 4
        alpha: 0.4
        distill: True
        warm_up: True
        eos: '[SEP]'
        vision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
        optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-3, epochs: 8, min_lr: 1e-6, decay_rate: 1, warmup_lr: \(warmupLR), warmup_epochs: 4, cooldown_epochs: 0}
        train: {checkpoint_every: 1, keep_checkpoints: 5, log_every: 1, seed: 5, bucket_mb: 1\(dropout ? "" : ", dropout: false")}
        data: {synthetic: {images: 8, size: 48}}

        """)
    }

    func finetune(_ config: String, _ out: String, _ extra: [String]) throws -> ElipRun {
        try CLI.run(["finetune", "--task", "vqa", "--config", config, "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent(out).path, "--threads", "1"] + extra)
    }

    func checkpoint(_ run: String, step: Int) -> String {
        dir.appendingPathComponent(run).appendingPathComponent(String(format: "checkpoints/step-%08d/model.safetensors", step)).path
    }

    static var mpirun: String? { ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) } }

    /// --init as VQA.py: with the learning rate 0 in the first step (warmup_lr 0) the weights
    /// after it are the loaded ones: the encoder = the pre-trained text encoder without `bert.`,
    /// decoder layers 0-1 = pre-trained layers 6-7, the decoder's embeddings and LM head = the
    /// pre-trained ones; decoder layers 2-5 keep their init (the momentum copies, loaded likewise,
    /// move in the step's EMA update).
    func testInitLoadsAsVQAPy() throws {
        let ckpt = try pretrainedCheckpoint()
        let r = try finetune(try vqaConfig(warmupLR: "0"), "lr0", ["--init", ckpt, "--max-steps", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("resized by interpolate_pos_embed (visual_encoder.pos_embed, visual_encoder_m.pos_embed)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("text_decoder.bert.encoder.layer.2.attention.self.query.weight"), r.stdout)
        XCTAssertFalse(r.stdout.contains("missing_keys, 0)"), r.stdout)
        for unused in ["itm_head.weight", "temp", "image_queue", "vision_proj.weight"] {
            XCTAssertTrue(r.stdout.contains(unused), "\(unused) not listed as unexpected: \(r.stdout)")
        }
        let pre = try SafetensorsFile(path: ckpt), tuned = try SafetensorsFile(path: checkpoint("lr0", step: 1))
        let pairs = [
            ("text_encoder.encoder.layer.0.attention.self.query.weight", "text_encoder.bert.encoder.layer.0.attention.self.query.weight"),
            ("text_encoder.encoder.layer.7.crossattention.self.key.weight", "text_encoder.bert.encoder.layer.7.crossattention.self.key.weight"),
            ("text_decoder.bert.encoder.layer.0.attention.self.query.weight", "text_encoder.bert.encoder.layer.6.attention.self.query.weight"),
            ("text_decoder.bert.encoder.layer.1.crossattention.self.value.weight", "text_encoder.bert.encoder.layer.7.crossattention.self.value.weight"),
            ("text_decoder.bert.encoder.layer.1.output.dense.bias", "text_encoder.bert.encoder.layer.7.output.dense.bias"),
            ("text_decoder.bert.embeddings.word_embeddings.weight", "text_encoder.bert.embeddings.word_embeddings.weight"),
            ("text_decoder.cls.predictions.transform.dense.weight", "text_encoder.cls.predictions.transform.dense.weight"),
            ("text_decoder.cls.predictions.bias", "text_encoder.cls.predictions.bias"),
            ("visual_encoder.blocks.1.attn.qkv.weight", "visual_encoder.blocks.1.attn.qkv.weight"),
        ]
        for (mine, theirs) in pairs {
            XCTAssertEqual(try tuned.floats(mine), try pre.floats(theirs), "\(mine) != pre-trained \(theirs)")
        }
        // A decoder layer without a source keeps its initialisation (not any pre-trained layer).
        let kept = try tuned.floats("text_decoder.bert.encoder.layer.2.attention.self.query.weight")
        for n in 0..<8 {
            XCTAssertNotEqual(kept, try pre.floats("text_encoder.bert.encoder.layer.\(n).attention.self.query.weight"))
        }
    }

    func testTrainingAndExactResume() throws {
        let ckpt = try pretrainedCheckpoint()
        let config = try vqaConfig()
        let straight = try finetune(config, "straight", ["--init", ckpt, "--max-steps", "4"])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("synthetic VQA: 8 scenes x 3 questions"), straight.stdout)
        let metrics = try String(contentsOf: dir.appendingPathComponent("straight/metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(metrics.count, 4)
        var alphas: [Double] = []
        for m in metrics {
            let loss = try XCTUnwrap((m["losses"] as? [String: Any])?["loss"] as? Double)
            XCTAssertTrue(loss.isFinite && loss > 0, "\(m)")
            alphas.append(try XCTUnwrap((m["values"] as? [String: Any])?["alpha"] as? Double))
        }
        // warm_up: alpha = 0.4 * min(1, i / len(loader)) over the 6 batches of epoch 0.
        for (i, a) in alphas.enumerated() { XCTAssertEqual(a, 0.4 * Double(i) / 6, accuracy: 1e-6) }
        // Stop at 2, resume to 4: bitwise the same weights as the straight run.
        let first = try finetune(config, "resumed", ["--init", ckpt, "--max-steps", "2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try finetune(config, "resumed", ["--init", ckpt, "--max-steps", "4", "--resume", "auto"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: checkpoint("resumed", step: 4))),
                       try Data(contentsOf: URL(fileURLWithPath: checkpoint("straight", step: 4))))
        let random = try finetune(config, "random", ["--random-init", "--max-steps", "2"])
        XCTAssertEqual(random.status, 0, random.stderr)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: checkpoint("random", step: 2))),
                          try Data(contentsOf: URL(fileURLWithPath: checkpoint("resumed", step: 2))))
    }

    /// 2 ranks x batch 2 == 1 rank x batch 4 (dropout off: each rank draws its own masks): the
    /// VQA loss is a mean over questions of per-question sums with no cross-sample term, DDP
    /// averages the gradients, and the momentum update is the same on every rank.
    func testTwoRanksEqualOneRankWithTheGlobalBatch() throws {
        guard let mpirun = Self.mpirun else { throw XCTSkip("no mpirun") }
        let ckpt = try pretrainedCheckpoint()
        let config = try vqaConfig(dropout: false)
        let one = try finetune(config, "one", ["--init", ckpt, "--max-steps", "2", "--batch-size", "4"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try FinetuneCommandTests.runProcess(mpirun, ["-np", "2", "--oversubscribe", CLI.executable.path, "finetune", "--task", "vqa",
                                                               "--config", config, "--vocab", Tiny.vocab, "--out", dir.appendingPathComponent("two").path,
                                                               "--threads", "1", "--init", ckpt, "--max-steps", "2", "--batch-size", "2"])
        XCTAssertEqual(two.status, 0, two.stderr)
        // Attention key biases get a gradient that is zero up to rounding (softmax ignores a
        // per-row shift), so after AdamW their values are noise of either summation order.
        let d = try CLI.run(["diff-weights", checkpoint("one", step: 2), checkpoint("two", step: 2), "--tolerance", "1e-5", "--exclude", "key.bias"])
        XCTAssertEqual(d.status, 0, d.stdout + d.stderr)
    }

    /// synth's vqa_train.json -> build-dataset --format vqa (one record per image) -> finetune
    /// from the shards -> eval-vqa on vqa_test.json: the same answers under 1, 2 and 3 ranks and
    /// any batch size, every question once, the upload format, the accuracy and the baseline.
    func testShardsTrainingAndEvaluationUnderAnyRankCount() throws {
        let syn = dir.appendingPathComponent("syn").path
        XCTAssertEqual(try CLI.run(["synth", "--out", syn, "--images", "8", "--size", "48", "--seed", "2", "--test-fraction", "0.5", "--quiet"]).status, 0)
        let shards = dir.appendingPathComponent("vqa-shards").path
        let b = try CLI.run(["build-dataset", "--format", "vqa", "--annotations", syn + "/vqa_train.json", "--image-root", syn,
                             "--out", shards, "--shards", "2", "--image-size", "48", "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("built 4 records"), b.stdout)   // 4 training images, 12 questions
        XCTAssertTrue(b.stdout.contains("captions: 12 (3.00 per image)"), b.stdout)
        let config = try vqaConfig()
        let run = dir.appendingPathComponent("shards-run").path
        let t = try finetune(config, "shards-run", ["--random-init", "--data", shards, "--max-steps", "2", "--batch-size", "2"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("4 records"), t.stdout)
        // Pre-training shards hold no questions: refused before the first step.
        let plain = dir.appendingPathComponent("pt-shards").path
        XCTAssertEqual(try CLI.run(["build-dataset", "--annotations", syn + "/train.json", "--image-root", syn,
                                    "--out", plain, "--shards", "1", "--image-size", "48", "--quiet"]).status, 0)
        let refused = try finetune(config, "plain", ["--random-init", "--data", plain, "--max-steps", "1", "--batch-size", "2"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("these shards were built without --format (pre-training captions); task vqa needs `elip build-dataset --format vqa` shards"), refused.stderr)

        let test = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: syn + "/vqa_test.json"))) as! [[String: Any]]
        XCTAssertEqual(test.count, 12)
        func eval(_ prefix: [String], _ extra: [String], _ name: String) throws -> (results: [[String: Any]], metrics: [String: Any]) {
            let results = dir.appendingPathComponent(name + "-results.json").path, metrics = dir.appendingPathComponent(name + ".json").path
            let args = ["eval-vqa", "--checkpoint", run, "--data", syn + "/vqa_test.json", "--image-root", syn, "--answer-list", syn + "/answer_list.json",
                        "--vocab", Tiny.vocab, "--threads", "1", "--quiet", "--write-results", results, "--out", metrics] + extra
            let r = prefix.isEmpty ? try CLI.run(args) : try FinetuneCommandTests.runProcess(prefix[0], Array(prefix.dropFirst()) + [CLI.executable.path] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: results))) as! [[String: Any]],
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metrics))) as! [String: Any])
        }
        let one = try eval([], ["--batch", "5"], "one")
        XCTAssertEqual(one.results.map { $0["question_id"] as! Int }, test.map { $0["question_id"] as! Int })
        let answerList = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: syn + "/answer_list.json"))) as! [String]
        for r in one.results {
            XCTAssertEqual(Set(r.keys), ["question_id", "answer"])
            XCTAssertTrue(answerList.contains(r["answer"] as! String), "\(r)")
        }
        // The accuracy is the official one of these answers (all 10 humans agree: 100 or 0 per question).
        let correct = zip(one.results, test).filter { ($0.0["answer"] as! String) == ($0.1["answer"] as! [String])[0] }.count
        XCTAssertEqual(one.metrics["overall_unrounded"] as! Double, 100 * Double(correct) / 12, accuracy: 1e-9)
        var votes: [String: Int] = [:]
        for q in test { votes[(q["answer"] as! [String])[0], default: 0] += 1 }
        XCTAssertEqual(one.metrics["majority_baseline"] as! Double, (100 * Double(votes.values.max()!) / 12 * 100).rounded() / 100, accuracy: 1e-9)
        XCTAssertEqual(one.metrics["k_test"] as? Int, 4)
        let batched = try eval([], ["--batch", "12"], "batched")
        XCTAssertEqual(batched.results.map { $0["answer"] as! String }, one.results.map { $0["answer"] as! String })
        if let mpirun = Self.mpirun {
            for ranks in [2, 3] {
                let m = try eval([mpirun, "-np", "\(ranks)", "--oversubscribe"], ["--batch", "2"], "mpi\(ranks)")
                XCTAssertEqual(m.metrics["world_size"] as? Int, ranks)
                XCTAssertEqual(m.results.map { $0["question_id"] as! Int }, one.results.map { $0["question_id"] as! Int }, "\(ranks) ranks")
                XCTAssertEqual(m.results.map { $0["answer"] as! String }, one.results.map { $0["answer"] as! String }, "\(ranks) ranks")
            }
        } else {
            print("VQAFinetuneCommandTests: no mpirun; the multi-rank eval-vqa cases did not run")
        }
        // A split without human answers (test-dev) is answered, not scored.
        let unanswered = dir.appendingPathComponent("testdev.json").path
        try JSONSerialization.data(withJSONObject: test.map { $0.filter { $0.key != "answer" } }).write(to: URL(fileURLWithPath: unanswered))
        let dev = try CLI.run(["eval-vqa", "--checkpoint", run, "--data", unanswered, "--image-root", syn, "--answer-list", syn + "/answer_list.json",
                               "--vocab", Tiny.vocab, "--quiet", "--write-results", dir.appendingPathComponent("dev.json").path])
        XCTAssertEqual(dev.status, 0, dev.stderr)
        XCTAssertTrue(dev.stdout.contains("not scored"), dev.stdout)

        // Bad input: errors naming what is wrong, never a trap.
        func evalRefused(_ entries: [[String: Any]], _ extra: [String], _ expected: String, answers: String? = nil, line: UInt = #line) throws {
            let split = dir.appendingPathComponent("bad.json").path
            try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: split))
            let r = try CLI.run(["eval-vqa", "--checkpoint", run, "--data", split, "--image-root", syn, "--answer-list", answers ?? syn + "/answer_list.json",
                                 "--vocab", Tiny.vocab, "--quiet", "--write-results", dir.appendingPathComponent("bad-results.json").path] + extra)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", line: line)
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, line: line)
        }
        var duplicate = Array(test.prefix(2))
        duplicate.append(test[0])
        try evalRefused(duplicate, [], "question_id \(test[0]["question_id"] as! Int) was already given by entry 0")
        var missing = test[1]
        missing["image"] = "images/424242.jpg"
        try evalRefused([test[0], missing], [], "424242")
        var noQuestion = test[1]
        noQuestion["question"] = "?!"
        try evalRefused([noQuestion], [], "no words after cleaning")
        try evalRefused(Array(test.prefix(2)), ["--k", "21"], "k_test 21 must be in 1...20")
        let emptyList = try write("empty-list.json", "[]")
        try evalRefused(Array(test.prefix(2)), [], "non-empty JSON list", answers: emptyList)
        let modes = try CLI.run(["eval-vqa", "--checkpoint", run, "--data", syn + "/vqa_test.json"])
        XCTAssertNotEqual(modes.status, 0)
        XCTAssertTrue(modes.stderr.contains("give --data, --answer-list and --write-results too"), modes.stderr)
    }
}

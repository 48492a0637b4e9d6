import ELIPConfig
import ELIPModel
import ELIPPruning
@testable import ELIPTrain
import Foundation
import XCTest

/// Config files are decoded in one place (TrainingConfig): every key is known, range-checked and
/// never traps; errors name the file, the key and the nearest valid key.
final class ConfigFileTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func albef(_ c: TrainingConfig) throws -> ALBEFConfig { try XCTUnwrap(c.model as? ALBEFConfig) }

    /// ALBEF's YAML style (flow mappings, 1e-4 style numbers, keys it ignores) with defaults for
    /// the rest; the bert_config is found next to the file.
    func testALBEFStyleYAML() throws {
        _ = try file("config_bert.json", #"{"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 4, "intermediate_size": 64, "fusion_layer": 2, "encoder_width": 48}"#)
        let yaml = """
        train_file: ['data/coco.json', 'data/vg.json']
        bert_config: 'config_bert.json'
        image_res: 256
        vision_width: 48
        embed_dim: 256
        batch_size: 64
        temp: 0.07
        mlm_probability: 0.15
        queue_size: 65536
        momentum: 0.995
        alpha: 0.4
        optimizer: {opt: adamW, lr: 1e-4, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-4, epochs: 30, min_lr: 1e-5, decay_rate: 1, warmup_lr: 1e-5, warmup_epochs: 20, cooldown_epochs: 0}
        img_prune: {begin_layer: [2, 4, 10], num_act_layers: [2, 6, 2], keep_ratio: [0.90, 0.65, 0.40]}
        vision: {patch_size: 16, embed_dim: 48, depth: 12, num_heads: 4, mlp_ratio: 4}
        """
        let t = try TrainingConfig.load(try file("Pretrain.yaml", yaml))
        let c = try albef(t)
        XCTAssertEqual(t.model.kind, "albef")
        XCTAssertEqual(c.imageRes, 256)
        XCTAssertEqual(c.patchCount, 256)
        XCTAssertEqual(c.prune, .albef)
        XCTAssertEqual(c.bert.hiddenSize, 48)
        XCTAssertEqual(c.bert.fusionLayer, 2)
        XCTAssertEqual(c.vision.numHeads, 4)
        XCTAssertEqual(c.queueSize, 65536)
        XCTAssertEqual(t.batchSize, 64)
        XCTAssertEqual(t.schedule.lr, 1e-4)
        XCTAssertEqual(t.schedule.warmupEpochs, 20)
        XCTAssertEqual(t.ignoredKeys, ["schedular.cooldown_epochs", "schedular.decay_rate", "train_file"])
        // Every shipped config loads.
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
        let names = try FileManager.default.contentsOfDirectory(atPath: configs.path).filter { $0.hasSuffix(".yaml") }.sorted()
        for required in ["debug.yaml", "demo.yaml", "demo-blip.yaml", "pretrain-albef-4m.yaml", "pretrain-blip-4m.yaml"] {
            XCTAssertTrue(names.contains(required), required)
        }
        // Task configs (no `model:`) load with their task's model (`elip finetune --task`); those
        // whose task data is not built yet are checked in TaskConfigTests.
        var taskModel: [String: String?] = ["demo-ve.yaml": "albef-ve", "demo-nlvr2.yaml": "albef-nlvr2", "demo-retrieval.yaml": "albef-retrieval", "demo-vqa.yaml": "albef-vqa"]
        for t in FineTuneTasks.all { taskModel[(t.config as NSString).lastPathComponent] = t.model }
        taskModel["Retrieval_flickr.yaml"] = taskModel["Retrieval_coco.yaml"]
        for name in names {
            switch taskModel[name] {
            case nil: XCTAssertNoThrow(try TrainingConfig.load(configs.appendingPathComponent(name).path), name)
            case let model??: XCTAssertNoThrow(try TrainingConfig.load(configs.appendingPathComponent(name).path, defaultModel: model), name)
            case .some(nil): continue
            }
        }
    }

    /// `model:` picks the backbone from the registry; an unknown one lists the known ones.
    func testModelKey() throws {
        XCTAssertEqual(try TrainingConfig.load(try file("a.yaml", "model: albef")).model.kind, "albef")
        XCTAssertThrowsError(try TrainingConfig.load(try file("b.yaml", "model: albeff"))) { e in
            // The list of known models grows with the registry; the message names them all.
            let text = "\(e)"
            XCTAssertTrue(text.contains("model: must be ") && text.contains("not 'albeff' (did you mean albef?)"), text)
            for kind in ModelRegistry.kinds.map(\.name) { XCTAssertTrue(text.contains(kind), "\(kind) missing: \(text)") }
        }
    }

    func expectError(_ yaml: String, _ needles: [String], namesTheYAML: Bool = true, line: UInt = #line) throws {
        let p = try file("bad-\(UUID().uuidString).yaml", yaml)
        XCTAssertThrowsError(try TrainingConfig.load(p), line: line) { e in
            let text = "\(e)"
            if namesTheYAML { XCTAssertTrue(text.contains(p), "'\(text)' should name the file", line: line) }
            for n in needles { XCTAssertTrue(text.contains(n), "'\(text)' lacks '\(n)'", line: line) }
        }
    }

    /// A misspelt key anywhere fails with its dotted name and the nearest valid key.
    func testMisspeltKeysAreNamed() throws {
        try expectError("image_ress: 256", ["image_ress: unknown key, did you mean image_res?"])
        try expectError("train: {max_step: 5}", ["train.max_step: unknown key, did you mean max_steps?"])
        try expectError("img_prune: {begin_layer: [2], num_act_layer: [2], keep_ratio: [0.5]}",
                        ["img_prune.num_act_layer: unknown key, did you mean num_act_layers?"])
        try expectError("optimizer: {opt: adamW, lr: 1e-4, weight_decy: 0.02}", ["optimizer.weight_decy: unknown key, did you mean weight_decay?"])
        try expectError("schedular: {epoch: 3}", ["schedular.epoch: unknown key, did you mean epochs?"])
        try expectError("data: {shard: /x}", ["data.shard: unknown key, did you mean shards?"])
        try expectError("data: {synthetic: {image: 5}}", ["data.synthetic.image: unknown key, did you mean images?"])
        try expectError("vision: {patch_siz: 16}", ["vision.patch_siz: unknown key, did you mean patch_size?"])
        try expectError("totally_new: 1", ["totally_new: unknown key"])
        // In the BERT JSON too (HuggingFace metadata keys are accepted).
        _ = try file("bert-typo.json", #"{"hidden_size": 64, "num_attention_head": 4}"#)
        try expectError("bert_config: bert-typo.json", ["bert-typo.json: num_attention_head: unknown key, did you mean num_attention_heads?"],
                        namesTheYAML: false)
    }

    /// Values that used to trap (or silently clamp) are errors naming the key and the range.
    func testOutOfRangeValuesNeverTrap() throws {
        let cases: [(String, String)] = [
            ("vision: {patch_size: 0}", "vision.patch_size: must be in [1, 4096], got 0"),
            ("vision: {num_heads: 0}", "vision.num_heads: must be in [1, 4096], got 0"),
            ("vision: {depth: -3}", "vision.depth: must be in [1, 1024], got -3"),
            ("vision: {mlp_ratio: .nan}", "vision.mlp_ratio: must be a finite number, got .nan"),
            ("image_res: .inf", "image_res: must be a finite number, got .inf"),
            ("image_res: .nan", "image_res: must be a finite number"),
            ("image_res: 1e30", "image_res: must be in [1, 16384]"),
            ("image_res: 250.5", "image_res: must be an integer"),
            ("image_res: 250", "image_res: 250 must be a positive multiple of patch_size 16"),
            ("train: {max_steps: .nan}", "train.max_steps: must be a finite number, got .nan"),
            ("train: {max_steps: 1e30}", "train.max_steps: must be in [0, "),
            ("train: {seed: -1}", "train.seed: must be in [0, "),
            ("train: {seed: 1e30}", "train.seed: must be in [0, "),
            ("train: {checkpoint_every: 0}", "train.checkpoint_every: must be in [1, "),
            ("train: {log_every: 0}", "train.log_every: must be in [1, "),
            ("train: {grad_accumulation: 0}", "train.grad_accumulation: must be in [1, "),
            ("train: {max_text_length: 1000}", "train.max_text_length: must be in [2, 512]"),
            ("train: {dropout: 3}", "train.dropout: must be true or false"),
            ("schedular: {warmup_step_size: 0}", "schedular.warmup_step_size: must be in [1, "),
            ("schedular: {epochs: 0}", "schedular.epochs: must be in [1, "),
            ("schedular: {sched: linear}", "schedular.sched: must be cosine or polynomial, not 'linear'"),
            ("optimizer: {eps: 0}", "optimizer.eps: must be in [1e-30, 1], got 0"),
            ("optimizer: {lr: -1}", "optimizer.lr: must be in"),
            ("optimizer: {betas: [0.9]}", "optimizer.betas: must be [beta1, beta2]"),
            ("batch_size: 0", "batch_size: must be in [1, "),
            ("queue_size: 0", "queue_size: must be in [1, "),
            ("temp: hot", "temp: must be a number, got 'hot'"),
            ("temp: 0", "temp: must be in [0.001, 0.5], got 0"),
            ("momentum: 1.5", "momentum: must be in [0, 1], got 1.5"),
            ("data: {flip: 2}", "data.flip: must be in [0, 1], got 2"),
            ("data: {crop_scale: [0.5, 0.2]}", "data.crop_scale: must be [min, max] with 0 < min <= max <= 1"),
            ("img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0]}", "img_prune.keep_ratio[0]: must be in (0, 1]"),
            ("img_prune: {begin_layer: [2], num_act_layers: [0], keep_ratio: [0.5]}", "img_prune.num_act_layers[0]: must be in [1, 4096], got 0"),
            ("img_prune: {begin_layer: [2, 1], num_act_layers: [2, 2], keep_ratio: [0.9, 0.5]}", "overlaps the previous stage"),
            ("img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [1.5]}", "img_prune.keep_ratio[0]: must be in [0, 1], got 1.5"),
            ("img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5], scoring: lookahead}",
             "img_prune.scoring: must be look_ahead or inline, not 'lookahead'"),
            ("img_prune: [1, 2]", "img_prune: must be a mapping"),
            ("bert_config: 'missing.json'", "bert_config: missing.json not found"),
            ("vision_width: 64\nvision: {embed_dim: 64, num_heads: 4}", "widths must be equal"),
            ("image_res: [1, 2", "YAML syntax error"),
        ]
        for (yaml, needle) in cases { try expectError(yaml, [needle]) }
    }

    /// Pruning can be switched off; the look-ahead is the default, inline an explicit ablation.
    func testPruningSwitches() throws {
        XCTAssertNil(try albef(TrainingConfig.load(try file("p.yaml", "img_prune: null"))).prune)
        XCTAssertNil(try albef(TrainingConfig.load(try file("f.yaml", "img_prune: false"))).prune)
        XCTAssertEqual(try albef(TrainingConfig.load(try file("d.yaml", "alpha: 0.4"))).prune, .albef)
        let paper = try albef(TrainingConfig.load(try file("l.yaml", "img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5]}")))
        XCTAssertEqual(paper.prune?.scoring, .lookAhead)
        let inline = try albef(TrainingConfig.load(try file("i.yaml", "img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5], scoring: inline}")))
        XCTAssertEqual(inline.prune?.scoring, .inline)
    }

    /// A config recorded in a checkpoint decodes the same way, its bert_config found in the
    /// search folders.
    func testRecordedConfigText() throws {
        _ = try file("config_bert_tiny.json", #"{"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4, "intermediate_size": 64, "fusion_layer": 2}"#)
        let text = "bert_config: somewhere/else/config_bert_tiny.json\nimage_res: 32\nvision_width: 64\nvision: {patch_size: 8, embed_dim: 64, depth: 4, num_heads: 4}\nimg_prune: null\n"
        let c = try albef(TrainingConfig.parse(text, source: "trainer.json of X", searchFolders: [dir.path]))
        XCTAssertEqual(c.bert.encoderWidth, 64, "encoder_width defaults to the ViT width")
        XCTAssertThrowsError(try TrainingConfig.parse(text + "extra: 1\n", source: "trainer.json of X", searchFolders: [dir.path])) {
            XCTAssertTrue("\($0)".hasPrefix("trainer.json of X: extra: unknown key"), "\($0)")
        }
    }

    /// `model: blip` reads BLIP's pretrain.yaml keys (its schedule at the top level, med_config);
    /// ALBEF's and BLIP's schedule keys cannot be mixed.
    func testBLIPConfigFile() throws {
        _ = try file("med_config.json", #"{"architectures": ["BertModel"], "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 30524, "type_vocab_size": 2, "max_position_embeddings": 64, "encoder_width": 32, "add_cross_attention": true}"#)
        let yaml = """
        model: blip
        train_file: ['coco.json']
        laion_path: ''
        med_config: med_config.json
        vit: 'base'
        vit_grad_ckpt: False
        vit_ckpt_layer: 0
        image_size: 64
        batch_size: 6
        queue_size: 24
        alpha: 0.4
        weight_decay: 0.05
        init_lr: 1e-4
        min_lr: 1e-6
        warmup_lr: 1e-6
        lr_decay_rate: 0.9
        max_epoch: 15
        warmup_steps: 3000
        vision: {patch_size: 16, embed_dim: 32, depth: 4, num_heads: 4, mlp_ratio: 2}
        img_prune: {begin_layer: [1, 2], num_act_layers: [1, 2], keep_ratio: [0.9, 0.5]}
        """
        let t = try TrainingConfig.load(try file("pretrain.yaml", yaml))
        let c = try XCTUnwrap(t.model as? BLIPConfig)
        XCTAssertEqual(c.imageRes, 64)
        XCTAssertEqual(c.bert.typeVocabSize, 0, "med.py has no token types")
        XCTAssertEqual(c.prune?.keepCounts(patchCount: c.keepBase), [14, 8])
        XCTAssertEqual(t.stepDecay?.epochs, 15)
        XCTAssertEqual(t.epochs, 15)
        XCTAssertEqual(t.optimizer.weightDecay, 0.05)
        XCTAssertEqual(t.learningRate(epoch: 2, iteration: 0), 1e-4 * 0.81, accuracy: 1e-15)
        XCTAssertEqual(t.captionStyle, .blip(maxLength: 30))
        XCTAssertEqual(t.augmentation.randAugmentPreset, .blip)
        XCTAssertEqual(t.ignoredKeys, ["laion_path", "train_file", "vit_ckpt_layer", "vit_grad_ckpt"])
        try expectError(yaml + "\nschedular: {sched: cosine}", ["schedular", "cannot be mixed"])
        try expectError(yaml + "\noptimizer: {weight_decay: 0.1}", ["weight_decay: given twice"])
        try expectError(yaml.replacingOccurrences(of: "max_epoch: 15", with: "max_epoch: 0"), ["max_epoch: must be in [1, "])
    }
}

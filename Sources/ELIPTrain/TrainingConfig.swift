import ELIPConfig
import ELIPModel
import ELIPObjectives
import ELIPText
import Foundation

/// A training config file, decoded in one place: the model's keys (ALBEF's Pretrain.yaml keys for
/// `model: albef`, the default) next to the training sections:
///
///     model: albef                    # which backbone (elip train --help lists them)
///     batch_size: 64                  # per rank (ALBEF's key)
///     optimizer: {opt: adamW, lr: 1e-4, weight_decay: 0.02}
///     schedular: {sched: cosine, lr: 1e-4, epochs: 30, min_lr: 1e-5, warmup_lr: 1e-5, warmup_epochs: 20}
///                                     # or BLIP's top-level keys: init_lr, min_lr, warmup_lr,
///                                     # warmup_steps, lr_decay_rate, max_epoch, weight_decay
///                                     # or METER's {sched: polynomial, lr, warmup: 0.1, max_steps, end_lr: 0, power: 1}
///     train: {max_steps: 0, checkpoint_every: 1000, keep_checkpoints: 3, log_every: 10, seed: 42,
///             grad_clip: 0, grad_accumulation: 1, bucket_mb: 25, max_nonfinite_in_a_row: 5,
///             max_text_length: 25, global_negatives: false, dropout: true,
///             collective_timeout_minutes: 10}
///     data: {shards: DIR, vocab: FILE, merges: FILE (byte-level BPE models), loader_threads: 2, prefetch_batches: 2, strict: false,
///            crop_scale: [0.2, 1.0], flip: 0.5, randaugment: true}
///                                     # or data: {synthetic: {images: N, size: PX}}
///
/// Every key is read with its range; an unknown key anywhere is an error naming the file, the
/// key and the nearest valid one. Keys ALBEF's files carry that have no effect here are listed in
/// `IgnoredKeys.trainingFile`.
public struct TrainingConfig {
    public var model: any ModelConfig
    public var batchSize = 64
    /// Evaluation batch per rank (the task configs' `batch_size_test`; nil: `batchSize`).
    public var evalBatchSize: Int?
    public var optimizer = AdamW.Hyperparameters()
    /// ALBEF's cosine schedule (`schedular:`), used unless BLIP's step decay is configured.
    public var schedule = LearningRateSchedule()
    /// BLIP's warm-up and step decay, from its top-level keys (init_lr, ...).
    public var stepDecay: StepDecaySchedule?
    /// METER's per-step warm-up and linear decay (`schedular: {sched: polynomial, ...}`).
    public var polynomialDecay: PolynomialDecaySchedule?
    public var maxSteps: Int = 0
    public var checkpointEvery = 1000
    public var keepCheckpoints = 3
    public var logEvery = 10
    public var seed: UInt64 = 42
    public var gradClip: Float = 0
    public var gradAccumulation = 1
    public var bucketMB = 25
    public var maxNonFiniteInARow = 5
    /// Minutes a rank may wait in a collective before the collective watchdog checks the other
    /// ranks for life (and aborts the job when one is stopped or dead); 0: no watchdog.
    public var collectiveTimeoutMinutes = 10.0
    public var dropout = true
    /// ITC/ITM negatives from every rank's batch (W ranks x B == 1 rank x W*B); off: ALBEF's
    /// local batch + global queue.
    public var globalNegatives = false
    /// Shard folder (with manifest.json), when training from LMDB shards.
    public var dataDirectory: String?
    /// Loader: decode/augment threads per rank (nil: ELIP_LOADER_THREADS or 2), batches prefetched
    /// ahead, and whether a corrupt record stops the run (off: skipped and counted).
    public var loaderThreads: Int?
    public var prefetchBatches = 2
    public var strictData = false
    /// Image augmentation (data.crop_scale: [min, max], data.flip: p, data.randaugment: bool).
    public var augmentation = ShardBatchSource.Augmentation()
    /// Synthetic corpus size and image size, when no shard folder is given (size 0: image_res).
    public var syntheticImages = 512
    public var syntheticSize = 0
    /// Vocabulary file (bert-base-uncased's vocab.txt; for a byte-level BPE model, vocab.json).
    public var vocabulary = "assets/bert-base-uncased-vocab.txt"
    /// merges.txt of a byte-level BPE model (METER); nil for WordPiece models.
    public var merges: String?
    /// `train.max_text_length`: overrides the model's caption token limit (ALBEF 25, BLIP max_length).
    public var maxTextLength: Int?
    /// The file's text, kept in checkpoints.
    public var text: String = ""
    /// Keys present that are accepted and ignored on purpose (`IgnoredKeys.trainingFile`).
    public var ignoredKeys: [String] = []
    var weightDecayFromOptimizerSection = false
    /// `data.crop_scale` was in the file (fine-tuning's default differs from pre-training's).
    public internal(set) var cropScaleGiven = false

    public init(model: any ModelConfig) {
        self.model = model
        augmentation.randAugmentPreset = model.trainingRandAugment
    }

    /// The learning rate before iteration `iteration` of `epoch`.
    public func learningRate(epoch: Int, iteration: Int) -> Double {
        stepDecay?.learningRate(epoch: epoch, iteration: iteration) ?? schedule.learningRate(epoch: epoch, iteration: iteration)
    }

    /// The learning rate of optimizer update `step` (0-based) taken before iteration `iteration`
    /// of `epoch`: METER's schedule counts updates, ALBEF's and BLIP's count epochs and batches.
    public func learningRate(step: Int, epoch: Int, iteration: Int) -> Double {
        polynomialDecay?.learningRate(step: step) ?? learningRate(epoch: epoch, iteration: iteration)
    }

    /// Epochs the schedule runs (a per-step schedule ends by `max_steps`, not by epochs).
    public var epochs: Int { polynomialDecay != nil ? 1_000_000 : stepDecay?.epochs ?? schedule.epochs }

    /// How captions are tokenised: the model's style, with `train.max_text_length` if given.
    public var captionStyle: CaptionStyle {
        var style = model.captionStyle
        if let maxTextLength { style.maxLength = maxTextLength }
        return style
    }

    /// Reads a config file; a relative `bert_config` is looked up next to it. `defaultModel` is
    /// the model when the file has no `model:` key (the official task configs have none:
    /// `elip finetune --task` supplies it).
    public static func load(_ path: String, defaultModel: String = "albef") throws -> TrainingConfig {
        let text = try YAMLLimits.readText(path)
        return try parse(text, source: path, searchFolders: [(path as NSString).deletingLastPathComponent], defaultModel: defaultModel)
    }

    /// Decodes config text (a file's, or one recorded in a checkpoint); relative paths in it are
    /// tried in `searchFolders`.
    public static func parse(_ text: String, source: String, searchFolders: [String], defaultModel: String = "albef") throws -> TrainingConfig {
        let root = try ConfigSection.parse(text, source: source, ignoring: .trainingFile)
        var c = TrainingConfig(model: try ModelRegistry.readConfig(root, location: ConfigLocation(searchFolders: searchFolders), defaultModel: defaultModel))
        c.text = text
        // The task configs name the training batch `batch_size_train` (NLVR.yaml: `batch_size`).
        if root.contains("batch_size") && root.contains("batch_size_train") {
            throw root.error("batch_size_train", "given together with batch_size; keep one of them")
        }
        c.batchSize = try root.int("batch_size", default: c.batchSize, in: 1...(1 << 20))
        c.batchSize = try root.int("batch_size_train", default: c.batchSize, in: 1...(1 << 20))
        c.evalBatchSize = try root.int("batch_size_test", in: 1...(1 << 20))
        if let s = try root.section("optimizer") { try c.readOptimizer(s) }
        if let s = try root.section("schedular") { try c.readSchedule(s) }
        try c.readStepDecay(root)
        if let s = try root.section("train") { try c.readTrain(s) }
        if let s = try root.section("data") { try c.readData(s) }
        try root.finish()
        if c.model.usesByteLevelBPE != (c.merges != nil) {
            throw c.model.usesByteLevelBPE
                ? ConfigError(file: source, key: "data.merges", message: "\(c.model.kind) tokenises with RoBERTa's byte-level BPE: give data.vocab (vocab.json) and data.merges (merges.txt)")
                : ConfigError(file: source, key: "data.merges", message: "\(c.model.kind) tokenises with WordPiece (data.vocab); merges.txt is for byte-level BPE models")
        }
        if let p = c.polynomialDecay {
            if c.stepDecay != nil { throw root.error("schedular", "sched: polynomial cannot be mixed with BLIP's schedule keys") }
            if c.maxSteps == 0 { c.maxSteps = p.maxSteps }
        }
        try c.model.validate(file: source)
        c.ignoredKeys = root.ignoredKeysPresent
        return c
    }

    /// The feature queue receives every rank's batch each step; a smaller queue would overwrite
    /// part of a batch with the rest of it (ALBEF asserts the same).
    /// Checked when training starts (evaluation reads the same files and has no batch).
    public func checkQueue(ranks: Int, file: String) throws {
        guard let queue = model.featureQueueSize else { return }
        let written = batchSize * ranks
        guard queue >= written else {
            throw ConfigError(file: file, key: "queue_size", message: "\(queue) is smaller than the \(written) features each step enqueues (batch_size \(batchSize)\(ranks > 1 ? " x \(ranks) ranks" : "")); make it at least that")
        }
    }

    /// A synthetic corpus smaller than one step's global batch repeats images inside a batch,
    /// and the contrastive losses then count copies of a positive as its negatives.
    public func checkSyntheticCorpus(ranks: Int, file: String) throws {
        guard dataDirectory == nil else { return }
        let needed = batchSize * ranks
        guard syntheticImages >= needed else {
            throw ConfigError(file: file, key: "data.synthetic.images", message: "\(syntheticImages) images are fewer than the \(needed) one step takes (batch_size \(batchSize)\(ranks > 1 ? " x \(ranks) ranks" : "")): images would repeat inside a batch")
        }
    }

    mutating func readOptimizer(_ s: ConfigSection) throws {
        _ = try s.choice("opt", ["adamW", "adamw", "AdamW"])
        weightDecayFromOptimizerSection = s.contains("weight_decay")
        if let lr = try s.double("lr", in: 1e-12...10) { schedule.lr = lr }
        optimizer.weightDecay = try s.float("weight_decay", default: optimizer.weightDecay, in: 0...10)
        if let betas = try s.doubles("betas", in: 0...0.999999) {
            guard betas.count == 2 else { throw s.error("betas", "must be [beta1, beta2], got \(betas.count) numbers") }
            optimizer.beta1 = Float(betas[0])
            optimizer.beta2 = Float(betas[1])
        }
        optimizer.eps = try s.float("eps", default: optimizer.eps, in: 1e-30...1)
    }

    mutating func readSchedule(_ s: ConfigSection) throws {
        if try s.choice("sched", ["cosine", "polynomial"]) == "polynomial" { return try readPolynomialSchedule(s) }
        schedule.lr = try s.double("lr", default: schedule.lr, in: 1e-12...10)
        schedule.minLR = try s.double("min_lr", default: schedule.minLR, in: 0...10)
        schedule.warmupLR = try s.double("warmup_lr", default: schedule.warmupLR, in: 0...10)
        schedule.warmupEpochs = try s.int("warmup_epochs", default: schedule.warmupEpochs, in: 0...1_000_000)
        schedule.epochs = try s.int("epochs", default: schedule.epochs, in: 1...1_000_000)
        schedule.stepSize = try s.int("warmup_step_size", default: schedule.stepSize, in: 1...1_000_000_000)
    }

    /// METER's schedule: `{sched: polynomial, lr, end_lr: 0, power: 1, warmup: 0.1 (a fraction of
    /// max_steps) or warmup_steps: N, max_steps}`; max_steps also ends the run unless
    /// train.max_steps says otherwise.
    mutating func readPolynomialSchedule(_ s: ConfigSection) throws {
        var p = PolynomialDecaySchedule()
        p.lr = try s.double("lr", default: p.lr, in: 1e-12...10)
        p.endLR = try s.double("end_lr", default: p.endLR, in: 0...10)
        p.power = try s.double("power", default: p.power, in: 0...100)
        guard let maxSteps = try s.int("max_steps", in: 1...1_000_000_000_000) else { throw s.missing("max_steps") }
        p.maxSteps = maxSteps
        let fraction = try s.double("warmup", in: 0...1), steps = try s.int("warmup_steps", in: 0...maxSteps)
        switch (fraction, steps) {
        case let (f?, nil): p.warmupSteps = PolynomialDecaySchedule.warmup(fraction: f, maxSteps: maxSteps)
        case let (nil, n?): p.warmupSteps = n
        case (nil, nil): throw s.missing("warmup")
        default: throw s.error("warmup", "give warmup (a fraction of max_steps) or warmup_steps, not both")
        }
        for key in ["min_lr", "warmup_lr", "warmup_epochs", "epochs", "warmup_step_size"] where s.contains(key) {
            throw s.error(key, "belongs to sched: cosine, not polynomial")
        }
        polynomialDecay = p
    }

    /// BLIP's schedule keys at the top level (SPEC-BLIP §7); they cannot be mixed with `schedular:`.
    mutating func readStepDecay(_ root: ConfigSection) throws {
        let keys = ["init_lr", "min_lr", "warmup_lr", "warmup_steps", "lr_decay_rate", "max_epoch", "weight_decay"]
        let present = keys.filter { root.contains($0) }
        guard !present.isEmpty else { return }
        guard !root.contains("schedular") else {
            throw root.error(present[0], "BLIP's schedule keys cannot be mixed with ALBEF's schedular: section")
        }
        var d = StepDecaySchedule()
        d.initLR = try root.double("init_lr", default: d.initLR, in: 1e-12...10)
        d.minLR = try root.double("min_lr", default: d.minLR, in: 0...10)
        d.warmupLR = try root.double("warmup_lr", default: d.warmupLR, in: 0...10)
        d.warmupSteps = try root.int("warmup_steps", default: d.warmupSteps, in: 0...1_000_000_000)
        d.decayRate = try root.double("lr_decay_rate", default: d.decayRate, in: 0...1)
        d.epochs = try root.int("max_epoch", default: d.epochs, in: 1...1_000_000)
        if root.contains("weight_decay") {
            if weightDecayFromOptimizerSection {
                throw root.error("weight_decay", "given twice (also optimizer.weight_decay)")
            }
            optimizer.weightDecay = try root.float("weight_decay", default: optimizer.weightDecay, in: 0...10)
        }
        stepDecay = d
    }

    mutating func readTrain(_ s: ConfigSection) throws {
        maxSteps = try s.int("max_steps", default: maxSteps, in: 0...1_000_000_000_000)
        checkpointEvery = try s.int("checkpoint_every", default: checkpointEvery, in: 1...1_000_000_000_000)
        keepCheckpoints = try s.int("keep_checkpoints", default: keepCheckpoints, in: 1...1_000_000)
        logEvery = try s.int("log_every", default: logEvery, in: 1...1_000_000_000)
        seed = UInt64(try s.int("seed", default: Int(seed), in: 0...Int.max))
        gradClip = try s.float("grad_clip", default: gradClip, in: 0...1e30)
        gradAccumulation = try s.int("grad_accumulation", default: gradAccumulation, in: 1...1_000_000)
        bucketMB = try s.int("bucket_mb", default: bucketMB, in: 1...4096)
        maxNonFiniteInARow = try s.int("max_nonfinite_in_a_row", default: maxNonFiniteInARow, in: 1...1_000_000)
        collectiveTimeoutMinutes = try s.double("collective_timeout_minutes", default: collectiveTimeoutMinutes, in: 0...100_000)
        maxTextLength = try s.int("max_text_length", in: 2...max(2, model.maxTextPositions))
        dropout = try s.bool("dropout", default: dropout)
        globalNegatives = try s.bool("global_negatives", default: globalNegatives)
    }

    mutating func readData(_ s: ConfigSection) throws {
        dataDirectory = try s.string("shards") ?? dataDirectory
        vocabulary = try s.string("vocab") ?? vocabulary
        merges = try s.string("merges")
        loaderThreads = try s.int("loader_threads", in: 0...1024)
        prefetchBatches = try s.int("prefetch_batches", default: prefetchBatches, in: 1...1024)
        strictData = try s.bool("strict", default: strictData)
        if let scale = try s.doubles("crop_scale", in: 0...1) {
            guard scale.count == 2, scale[0] > 0, scale[0] <= scale[1] else {
                throw s.error("crop_scale", "must be [min, max] with 0 < min <= max <= 1, got \(scale)")
            }
            augmentation.cropScale = scale[0]...scale[1]
            cropScaleGiven = true
        }
        augmentation.flipProbability = try s.double("flip", default: augmentation.flipProbability, in: 0...1)
        augmentation.randAugment = try s.bool("randaugment", default: augmentation.randAugment)
        if let syn = try s.section("synthetic") {
            syntheticImages = try syn.int("images", default: syntheticImages, in: 1...100_000_000)
            syntheticSize = try syn.int("size", default: syntheticSize, in: 0...16384)
        }
    }
}

extension TrainingConfig {
    /// Takes the special-token ids from the tokenizer the run uses (masking never hard-codes
    /// them), and checks that its vocabulary fits the model's word embeddings.
    public mutating func useVocabulary(of tokenizer: any CaptionTokenizer) throws {
        let n = tokenizer.idCount
        guard n + model.addedTokenCount <= model.vocabularySize else {
            throw ConfigError(file: vocabulary, message: "\(n) tokens\(model.addedTokenCount > 0 ? " + \(model.addedTokenCount) the model adds" : ""), but the model's word embeddings have \(model.vocabularySize) rows (vocab_size)")
        }
        let ids = tokenizer.captionSpecialIds
        model.specialTokens = SpecialTokens(pad: ids.pad, unknown: ids.unknown, cls: ids.cls, sep: ids.sep, mask: ids.mask)
    }
}

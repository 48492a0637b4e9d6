import ELIPModel
import Foundation
import Yams

/// The training sections of a config file, next to the ALBEF model keys:
///
///     batch_size: 64                  # per rank (ALBEF's key)
///     optimizer: {opt: adamW, lr: 1e-4, weight_decay: 0.02}
///     schedular: {sched: cosine, lr: 1e-4, epochs: 30, min_lr: 1e-5, warmup_lr: 1e-5, warmup_epochs: 20}
///     train: {max_steps: 0, checkpoint_every: 1000, keep_checkpoints: 3, log_every: 10, seed: 42,
///             grad_clip: 0, grad_accumulation: 1, bucket_mb: 25, max_nonfinite_in_a_row: 5,
///             global_negatives: false, dropout: true}
///     data: {shards: DIR, loader_threads: 2, prefetch_batches: 2, strict: false,
///            crop_scale: [0.2, 1.0], flip: 0.5, randaugment: true}
///                                     # or data: {synthetic: {images: N, size: PX}}
public struct TrainingConfig {
    public var model: ALBEFConfig
    public var batchSize: Int
    public var optimizer = AdamW.Hyperparameters()
    public var schedule = LearningRateSchedule()
    public var maxSteps: Int = 0
    public var checkpointEvery = 1000
    public var keepCheckpoints = 3
    public var logEvery = 10
    public var seed: UInt64 = 42
    public var gradClip: Float = 0
    public var gradAccumulation = 1
    public var bucketMB = 25
    public var maxNonFiniteInARow = 5
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
    /// Synthetic corpus size and image size, when no shard folder is given.
    public var syntheticImages = 512
    public var syntheticSize = 0
    /// Vocabulary file (bert-base-uncased).
    public var vocabulary = "assets/bert-base-uncased-vocab.txt"
    /// Caption token limit (ALBEF: 25 with its framing).
    public var maxTextLength = 25
    /// The file's text, kept in checkpoints.
    public var text: String = ""

    public init(model: ALBEFConfig) {
        self.model = model
        batchSize = model.batchSize
    }

    public static func load(_ path: String) throws -> TrainingConfig {
        let model = try ALBEFConfig.load(path)
        var c = TrainingConfig(model: model)
        c.text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let raw = model.raw
        func section(_ name: String) throws -> [String: Any] {
            guard let v = raw[name] else { return [:] }
            guard let d = v as? [String: Any] else { throw TrainError.config("\(path): '\(name)' must be a mapping") }
            return d
        }
        func number(_ d: [String: Any], _ key: String, _ where_: String) throws -> Double? {
            guard let v = d[key] else { return nil }
            if let x = v as? Double { return x }
            if let x = v as? Int { return Double(x) }
            if let s = v as? String, let x = Double(s) { return x }
            if let b = v as? Bool { return b ? 1 : 0 }
            throw TrainError.config("\(path): \(where_).\(key) must be a number, got \(v)")
        }
        let opt = try section("optimizer")
        if let v = try number(opt, "weight_decay", "optimizer") { c.optimizer.weightDecay = Float(v) }
        if let v = try number(opt, "lr", "optimizer") { c.schedule.lr = v }
        if let betas = opt["betas"] as? [Any], betas.count == 2 {
            c.optimizer.beta1 = Float((betas[0] as? Double) ?? 0.9)
            c.optimizer.beta2 = Float((betas[1] as? Double) ?? 0.999)
        }
        if let v = try number(opt, "eps", "optimizer") { c.optimizer.eps = Float(v) }
        let s = try section("schedular")
        if let v = try number(s, "lr", "schedular") { c.schedule.lr = v }
        if let v = try number(s, "min_lr", "schedular") { c.schedule.minLR = v }
        if let v = try number(s, "warmup_lr", "schedular") { c.schedule.warmupLR = v }
        if let v = try number(s, "warmup_epochs", "schedular") { c.schedule.warmupEpochs = Int(v) }
        if let v = try number(s, "epochs", "schedular") { c.schedule.epochs = Int(v) }
        if let v = try number(s, "warmup_step_size", "schedular") { c.schedule.stepSize = Int(v) }
        let t = try section("train")
        if let v = try number(t, "max_steps", "train") { c.maxSteps = Int(v) }
        if let v = try number(t, "checkpoint_every", "train") { c.checkpointEvery = Int(v) }
        if let v = try number(t, "keep_checkpoints", "train") { c.keepCheckpoints = Int(v) }
        if let v = try number(t, "log_every", "train") { c.logEvery = max(1, Int(v)) }
        if let v = try number(t, "seed", "train") { c.seed = UInt64(v) }
        if let v = try number(t, "grad_clip", "train") { c.gradClip = Float(v) }
        if let v = try number(t, "grad_accumulation", "train") { c.gradAccumulation = max(1, Int(v)) }
        if let v = try number(t, "bucket_mb", "train") { c.bucketMB = max(1, Int(v)) }
        if let v = try number(t, "max_nonfinite_in_a_row", "train") { c.maxNonFiniteInARow = max(1, Int(v)) }
        if let v = try number(t, "max_text_length", "train") { c.maxTextLength = Int(v) }
        if let v = t["dropout"] as? Bool { c.dropout = v }
        if let v = t["global_negatives"] as? Bool { c.globalNegatives = v }
        let d = try section("data")
        if let v = d["shards"] as? String { c.dataDirectory = v }
        if let v = d["vocab"] as? String { c.vocabulary = v }
        if let v = try number(d, "loader_threads", "data") { c.loaderThreads = max(0, Int(v)) }
        if let v = try number(d, "prefetch_batches", "data") { c.prefetchBatches = max(1, Int(v)) }
        if let v = d["strict"] as? Bool { c.strictData = v }
        if let v = d["crop_scale"] {
            guard let a = v as? [Any], a.count == 2, let lo = (a[0] as? Double) ?? (a[0] as? Int).map(Double.init),
                  let hi = (a[1] as? Double) ?? (a[1] as? Int).map(Double.init), lo > 0, lo <= hi, hi <= 1 else {
                throw TrainError.config("\(path): data.crop_scale must be [min, max] with 0 < min <= max <= 1")
            }
            c.augmentation.cropScale = lo...hi
        }
        if let v = try number(d, "flip", "data") {
            guard (0...1).contains(v) else { throw TrainError.config("\(path): data.flip must be a probability") }
            c.augmentation.flipProbability = v
        }
        if let v = d["randaugment"] as? Bool { c.augmentation.randAugment = v }
        if let syn = d["synthetic"] as? [String: Any] {
            if let v = try number(syn, "images", "data.synthetic") { c.syntheticImages = Int(v) }
            if let v = try number(syn, "size", "data.synthetic") { c.syntheticSize = Int(v) }
        }
        guard c.batchSize > 0 else { throw TrainError.config("\(path): batch_size must be positive") }
        return c
    }
}

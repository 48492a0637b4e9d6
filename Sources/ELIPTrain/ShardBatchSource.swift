import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// Training batches from LMDB shards through `ShardLoader` (sharded per rank, shuffled per epoch,
/// ALBEF augmentation, background prefetch). `batch(epoch:index:)` is a pure function of the seed,
/// rank, world size, data and position, so the trainer resumes from (epoch, index) alone.
public final class ShardBatchSource: BatchSource {
    public let loader: ShardLoader

    /// Loader threads per rank: `ELIP_LOADER_THREADS` if set, else 2.
    public static func defaultWorkerThreads(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let s = environment["ELIP_LOADER_THREADS"], let n = Int(s), n >= 0 { return n }
        return 2
    }

    public init(directory: String, rank: Int, worldSize: Int, seed: UInt64, batchSize: Int, imageSize: Int,
                tokenizer: any CaptionTokenizer, captionStyle: CaptionStyle = .albef(), workerThreads: Int? = nil,
                prefetchDepth: Int = 2, strict: Bool = false, augmentation: Augmentation = Augmentation(),
                samplePerCaption: Bool = false) throws {
        var options = ShardLoader.Options(transform: .pretrain(PretrainTransform(
            imageSize: imageSize, scale: augmentation.cropScale, flipProbability: augmentation.flipProbability,
            randAugment: augmentation.randAugment ? augmentation.randAugmentPreset : nil)))
        options.captionStyle = captionStyle
        options.workerThreads = workerThreads ?? ShardBatchSource.defaultWorkerThreads()
        options.prefetchDepth = prefetchDepth
        options.strict = strict
        options.samplePerCaption = samplePerCaption
        loader = try ShardLoader(directory: directory, rank: rank, worldSize: worldSize, batchSize: batchSize,
                                 seed: seed, tokenizer: tokenizer, options: options)
        Self.warn(loader.warnings, rank: rank, worldSize: worldSize)
    }

    static func warn(_ lines: [String], rank: Int, worldSize: Int) {
        for line in lines {
            FileHandle.standardError.write(Data(((worldSize > 1 ? "[rank \(rank)] " : "") + "warning: \(line)\n").utf8))
        }
    }

    /// The next bad-record count worth a warning (1, 2, 4, 8, ...: the log is not flooded).
    private var nextBadRecordReport = 1

    /// Bad records skipped and records lost in damaged shards, so far, on this rank.
    public var dataCounters: [String: Double] {
        let s = loader.statistics
        return ["data_bad_records": Double(s.badRecords.count), "data_records_in_damaged_shards": Double(s.recordsInDamagedShards)]
    }

    /// The pre-training image augmentation; the defaults are ALBEF's (crop scale 0.2-1.0,
    /// horizontal flip with p 0.5, RandAugment(2, 7)).
    public struct Augmentation: Sendable, Equatable {
        public var cropScale: ClosedRange<Double> = 0.2...1.0
        public var flipProbability: Double = 0.5
        public var randAugment = true
        /// Which RandAugment (the model's: ALBEF's M=7, BLIP's M=5 with its op order).
        public var randAugmentPreset = RandAugment.albef
        public init() {}
    }

    public init(loader: ShardLoader) {
        self.loader = loader
    }

    public var batchesPerEpoch: Int { loader.batchesPerEpoch }
    public var summary: String { loader.summary }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let b = try loader.batch(epoch: epoch, index: index)
        if b.replacedSamples > 0 {
            // Say so when bad records were skipped (each is counted once, with its reason).
            let bad = loader.statistics.badRecords
            if bad.count >= nextBadRecordReport, let example = bad.last {
                Self.warn(["\(bad.count) bad record(s) skipped so far (e.g. shard \(example.shardName), key \(example.record.key): \(example.reason))"],
                          rank: loader.rank, worldSize: loader.worldSize)
                nextBadRecordReport = 2 * bad.count
            }
        }
        let text = try TextBatch(ids: b.ids.map { Int($0) }, mask: b.mask.map { Int($0) }, batch: b.batchSize, length: b.length)
        let images = try Tensor(b.images, shape: [b.batchSize, 3, b.imageSize, b.imageSize])
        return ImageTextBatch(images: images, text: text, labels: b.labels)
    }
}

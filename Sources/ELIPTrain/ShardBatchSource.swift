import ELIPConfig
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
    /// VQA shards: how answers (`answer + eos`) are tokenised; nil for other tasks (a VQA
    /// record's answers are then an error, not silently dropped).
    var answerText: (tokenizer: any CaptionTokenizer, style: CaptionStyle, eos: String)?

    /// Loader threads per rank: `ELIP_LOADER_THREADS` if set, else 2.
    public static func defaultWorkerThreads(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let s = environment["ELIP_LOADER_THREADS"], let n = Int(s), n >= 0 { return n }
        return 2
    }

    public init(directory: String, rank: Int, worldSize: Int, seed: UInt64, batchSize: Int, imageSize: Int,
                tokenizer: any CaptionTokenizer, captionStyle: CaptionStyle = .albef(), workerThreads: Int? = nil,
                prefetchDepth: Int = 2, strict: Bool = false, augmentation: Augmentation = Augmentation(),
                samplePerCaption: Bool = false, answerStyle: CaptionStyle? = nil, eos: String = "[SEP]") throws {
        answerText = answerStyle.map { (tokenizer, $0, eos) }
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
        var batch = ImageTextBatch(images: images, text: text, labels: b.labels)
        if let answers = b.answers {
            guard let answerText else {
                throw ConfigError(file: loader.directory, message: "these shards hold VQA records (questions with answers); train them with `elip finetune --task vqa`")
            }
            batch.answers = try Self.answerBatch(answers, tokenizer: answerText.tokenizer, style: answerText.style, eos: answerText.eos)
        }
        return batch
    }

    /// vqa_collate_fn: every question's answers concatenated in question order, each answer as
    /// `answer + eos` ("[SEP]", kept whole by the tokenizer), their weights and counts.
    public static func answerBatch(_ answers: [[VQARecord.Answer]], tokenizer: any CaptionTokenizer, style: CaptionStyle,
                                   eos: String) throws -> AnswerBatch {
        let texts = answers.flatMap { $0.map { $0.text + eos } }
        let tokens = try tokenizer.encodeBatch(texts, style: style, cleaned: true)
        let text = try TextBatch(ids: tokens.inputIds.map { Int($0) }, mask: tokens.attentionMask.map { Int($0) },
                                 batch: tokens.batchSize, length: tokens.length)
        return AnswerBatch(text: text, weights: answers.flatMap { $0.map(\.weight) }, counts: answers.map(\.count))
    }
}

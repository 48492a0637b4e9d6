import ELIPImage
import ELIPText
import Foundation

/// Training batches from a folder of LMDB shards (`manifest.json` + `shard-*/` environments).
///
/// * Ownership: `ShardAssignment` (whole shards round robin, or key ranges of every shard when
///   there are fewer shards than ranks). A rank opens only the shards it owns.
/// * Order: each epoch visits the rank's records in a permutation drawn from (seed, rank, world
///   size, epoch); batch i holds positions [i*B, (i+1)*B). Every rank has the same
///   `batchesPerEpoch` (the smallest rank's records / B), the rest of an epoch is dropped.
/// * Samples: sample k of batch i has the random stream (seed, epoch, global sample index
///   (i*W + rank)*B + k): caption choice, crop, flip and RandAugment all come from it. So
///   `batch(epoch:index:)` is a pure function of (seed, rank, world size, manifest + data, epoch,
///   index), whatever the thread count or the order of requests: resuming needs only (epoch, index).
/// * Bad records (CRC, record format, JPEG decode, missing key, no caption) are skipped and counted
///   and the sample takes the next record of the rank's order, so batches keep their size; with
///   `strict` the batch fails with `LoaderError.badRecord` naming shard and key.
/// * Prefetch: `workerThreads` threads decode and augment the samples of the next `prefetchDepth`
///   batches (earliest batch first, samples in parallel). Asking for the prefetched next index
///   returns as soon as it is done; asking for any other index re-aims the workers there.
public final class ShardLoader: @unchecked Sendable {
    public struct Options: Sendable, Equatable {
        public var transform: ImageTransform
        /// How captions are cleaned, framed, limited and padded (the model's; ALBEF's by default).
        public var captionStyle: CaptionStyle = .albef()
        /// Decode/augment threads; 0 computes every batch on the calling thread (no prefetch).
        public var workerThreads: Int = 2
        /// Batches prepared ahead of the one last returned.
        public var prefetchDepth: Int = 2
        /// Fail on the first bad record instead of skipping it.
        public var strict: Bool = false
        /// Give up (error) after this many bad records in a row for one sample.
        public var maxConsecutiveBadRecords: Int = 64
        /// Shuffle each epoch (false: key order, for debugging).
        public var shuffle: Bool = true
        /// Task shards: every caption of a record is a sample of its own, with its label (one
        /// epoch = each (image, caption) pair once, as the official task datasets), instead of
        /// one randomly chosen caption per record (pre-training).
        public var samplePerCaption: Bool = false
        public var jpeg: JPEGDecodeOptions = .default

        public init(transform: ImageTransform) {
            self.transform = transform
        }

        /// ALBEF pre-training at `imageSize`.
        public static func pretrain(imageSize: Int) -> Options {
            Options(transform: .pretrain(PretrainTransform(imageSize: imageSize)))
        }
    }

    public let directory: String
    public let listing: ShardListing
    public let assignment: ShardAssignment
    public let batchSize: Int
    public let seed: UInt64
    public let options: Options
    public let batchesPerEpoch: Int
    public var imageSize: Int { core.imageSize }
    /// Damage found while opening this rank's shards (non-strict: skipped and counted); for the log.
    public let warnings: [String]
    public var rank: Int { assignment.rank }
    public var worldSize: Int { assignment.worldSize }

    let core: LoaderCore
    let scheduler: PrefetchScheduler?
    private let inlineLock = NSLock()
    private var inlineDecoder: JPEGDecoder?

    /// Opens the rank's shards. `listing` defaults to `directory/manifest.json`.
    public init(directory: String, listing: ShardListing? = nil, rank: Int, worldSize: Int, batchSize: Int,
                seed: UInt64, tokenizer: any CaptionTokenizer, options: Options) throws {
        guard batchSize > 0 else { throw LoaderError.invalidArgument("batch size must be positive, got \(batchSize)") }
        guard options.transform.imageSize > 0 else {
            throw LoaderError.invalidArgument("image size must be positive, got \(options.transform.imageSize)")
        }
        guard options.workerThreads >= 0, options.workerThreads <= 1024 else {
            throw LoaderError.invalidArgument("worker threads must be in 0...1024, got \(options.workerThreads)")
        }
        guard options.prefetchDepth >= 0 else {
            throw LoaderError.invalidArgument("prefetch depth must be >= 0, got \(options.prefetchDepth)")
        }
        guard options.captionStyle.maxLength >= options.captionStyle.framing.specialTokenCount, options.captionStyle.maxWords >= 1 else {
            throw LoaderError.invalidArgument("text limits must leave room for a token (max length \(options.captionStyle.maxLength), max words \(options.captionStyle.maxWords))")
        }
        let s = options.transform.imageSize
        let (plane, o1) = s.multipliedReportingOverflow(by: s)
        let (sample, o2) = plane.multipliedReportingOverflow(by: 3)
        let (total, o3) = sample.multipliedReportingOverflow(by: batchSize)
        guard !o1, !o2, !o3, total <= 1 << 34 else {
            throw LoaderError.invalidArgument("batch of \(batchSize) images of \(s) px is too large")
        }
        let listing = try listing ?? ShardListing.read(directory: directory)
        let assignment = try ShardAssignment(listing: listing, rank: rank, worldSize: worldSize, perCaption: options.samplePerCaption)
        let batches = assignment.batchesPerEpoch(batchSize: batchSize)
        guard batches > 0 else {
            throw LoaderError.tooFewRecords(minRecordsPerRank: assignment.minSamplesPerRank, batchSize: batchSize,
                                            worldSize: worldSize)
        }
        guard assignment.sampleCount <= Int(UInt32.max) else {
            throw LoaderError.invalidArgument("rank \(rank) owns \(assignment.sampleCount) samples, more than 2^32 - 1")
        }
        // Open only the shards this rank reads, each checked against the manifest and for damage.
        var envs: [Int: LMDBEnvironment] = [:]
        var damaged: [Int: String] = [:]
        var warnings: [String] = []
        for s in Set(assignment.shardIndices).sorted() {
            let shard = listing.shards[s]
            do {
                let env = try ShardIntegrity.open(directory: directory, listing: listing, index: s)
                if let bad = env.structure?.damagedValues, !bad.isEmpty {
                    let keys = bad.keys.compactMap { LMDBKey.uint64(decoding: $0) }.sorted().prefix(8).map(String.init)
                    let outcome = options.strict ? "reading one fails (strict)" : "they will be skipped"
                    warnings.append("shard \(shard.name): \(bad.count) damaged record(s) (keys \(keys.joined(separator: ", "))"
                                    + "\(bad.count > 8 ? ", ..." : "")); \(outcome)")
                }
                envs[s] = env
            } catch let e as ShardIntegrity.ShardDamage {
                if options.strict { throw LoaderError.shard(name: shard.name, message: e.description) }
                damaged[s] = e.description
                warnings.append("shard \(shard.name): \(e.description); its \(shard.records) records will be skipped")
            }
        }
        self.directory = directory
        self.listing = listing
        self.assignment = assignment
        self.batchSize = batchSize
        self.seed = seed
        self.options = options
        batchesPerEpoch = batches
        self.warnings = warnings
        core = LoaderCore(assignment: assignment, environments: envs, damagedShards: damaged, batchSize: batchSize,
                          batchesPerEpoch: batches, seed: seed, tokenizer: tokenizer, options: options)
        scheduler = options.workerThreads > 0
            ? PrefetchScheduler(core: core, threads: options.workerThreads, depth: options.prefetchDepth)
            : nil
    }

    deinit { scheduler?.stop() }

    /// Stops the worker threads (idempotent). Later `batch` calls throw `LoaderError.closed`.
    public func close() { scheduler?.stop() }

    /// Batch `index` of `epoch` for this rank.
    public func batch(epoch: Int, index: Int) throws -> LoadedBatch {
        guard epoch >= 0, index >= 0, index < batchesPerEpoch else {
            throw LoaderError.indexOutOfRange(epoch: epoch, index: index, batchesPerEpoch: batchesPerEpoch)
        }
        if let scheduler { return try scheduler.get(BatchKey(epoch: epoch, index: index)) }
        inlineLock.lock()
        defer { inlineLock.unlock() }
        let decoder: JPEGDecoder
        if let d = inlineDecoder { decoder = d } else {
            do { decoder = try JPEGDecoder() } catch { throw LoaderError.invalidArgument("JPEG decoder: \(error)") }
            inlineDecoder = decoder
        }
        let job = BatchJob(key: BatchKey(epoch: epoch, index: index), batchSize: batchSize,
                           sampleFloats: 3 * imageSize * imageSize)
        for slot in 0..<batchSize {
            let info = try core.computeSample(job.key, slot: slot, decoder: decoder,
                                              out: job.buffer + slot * job.sampleFloats)
            job.store(slot: slot, info)
        }
        let b = try core.assemble(job)
        core.countDelivered(hit: false)
        return b
    }

    /// Counters so far.
    public var statistics: LoaderStatistics { core.statistics }

    /// A rank-independent description (used in the run fingerprint, so every rank must agree).
    public var summary: String {
        String(format: "LMDB shards: %d shards, %d records%@ (manifest %08x), %d batches/epoch of %d per rank x %d ranks, %d px, seed %llu",
               listing.shards.count, listing.totalRecords, options.samplePerCaption ? " (one sample per caption)" : "",
               listing.digest, batchesPerEpoch, batchSize, worldSize, imageSize, seed)
    }
}

struct BatchKey: Hashable, Sendable {
    var epoch: Int
    var index: Int
}

/// One sample's outcome.
struct SampleInfo {
    var caption: String
    /// The caption's class label (task records), nil for pre-training records.
    var label: Int?
    /// The question's answers (VQA records), nil otherwise.
    var answers: [VQARecord.Answer]?
    var record: RecordID
    var replaced: Bool
}

/// A batch being computed: the float images are written by the workers straight into `buffer`
/// (disjoint slot ranges), the rest is guarded by the scheduler's lock.
final class BatchJob {
    let key: BatchKey
    let batchSize: Int
    let sampleFloats: Int
    let buffer: UnsafeMutablePointer<Float>
    var captions: [String]
    var records: [RecordID]
    var labels: [Int?]
    var answers: [[VQARecord.Answer]?]
    var replaced = 0
    var dispatched = 0
    var done = 0
    var errors: [(slot: Int, error: Error)] = []
    var result: Result<LoadedBatch, Error>?
    var cancelled = false

    init(key: BatchKey, batchSize: Int, sampleFloats: Int) {
        self.key = key
        self.batchSize = batchSize
        self.sampleFloats = sampleFloats
        buffer = .allocate(capacity: max(1, batchSize * sampleFloats))
        captions = [String](repeating: "", count: batchSize)
        records = [RecordID](repeating: RecordID(shard: 0, key: 0), count: batchSize)
        labels = [Int?](repeating: nil, count: batchSize)
        answers = [[VQARecord.Answer]?](repeating: nil, count: batchSize)
    }

    deinit { buffer.deallocate() }

    func store(slot: Int, _ info: SampleInfo) {
        captions[slot] = info.caption
        records[slot] = info.record
        labels[slot] = info.label
        answers[slot] = info.answers
        if info.replaced { replaced += 1 }
    }

    /// The error of the lowest failing slot (deterministic whatever the completion order).
    var firstError: Error? { errors.min(by: { $0.slot < $1.slot })?.error }
}

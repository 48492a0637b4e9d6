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
        /// Caption token limit (ALBEF framing: [CLS] + tokens, no [SEP]).
        public var maxTextLength: Int = 25
        /// pre_caption word limit.
        public var maxWords: Int = 30
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
    public var rank: Int { assignment.rank }
    public var worldSize: Int { assignment.worldSize }

    let core: LoaderCore
    let scheduler: PrefetchScheduler?
    private let inlineLock = NSLock()
    private var inlineDecoder: JPEGDecoder?

    /// Opens the rank's shards. `listing` defaults to `directory/manifest.json`.
    public init(directory: String, listing: ShardListing? = nil, rank: Int, worldSize: Int, batchSize: Int,
                seed: UInt64, tokenizer: BertTokenizer, options: Options) throws {
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
        guard options.maxTextLength >= 1, options.maxWords >= 1 else {
            throw LoaderError.invalidArgument("text limits must be positive")
        }
        let s = options.transform.imageSize
        let (plane, o1) = s.multipliedReportingOverflow(by: s)
        let (sample, o2) = plane.multipliedReportingOverflow(by: 3)
        let (total, o3) = sample.multipliedReportingOverflow(by: batchSize)
        guard !o1, !o2, !o3, total <= 1 << 34 else {
            throw LoaderError.invalidArgument("batch of \(batchSize) images of \(s) px is too large")
        }
        let listing = try listing ?? ShardListing.read(directory: directory)
        let assignment = try ShardAssignment(listing: listing, rank: rank, worldSize: worldSize)
        let batches = assignment.batchesPerEpoch(batchSize: batchSize)
        guard batches > 0 else {
            throw LoaderError.tooFewRecords(minRecordsPerRank: assignment.minRecordsPerRank, batchSize: batchSize,
                                            worldSize: worldSize)
        }
        guard assignment.recordCount <= Int(UInt32.max) else {
            throw LoaderError.invalidArgument("rank \(rank) owns \(assignment.recordCount) records, more than 2^32 - 1")
        }
        // Open only the shards this rank reads.
        var envs: [Int: LMDBEnvironment] = [:]
        for s in Set(assignment.shardIndices).sorted() {
            let shard = listing.shards[s]
            let path = (directory as NSString).appendingPathComponent(shard.name)
            let env: LMDBEnvironment
            do { env = try LMDBEnvironment(path: path, readOnly: true) } catch {
                throw LoaderError.shard(name: shard.name, message: "cannot open \(path): \(error)")
            }
            let count: Int
            do { count = try env.count() } catch { throw LoaderError.shard(name: shard.name, message: "\(error)") }
            guard count >= shard.records else {
                throw LoaderError.shard(name: shard.name,
                                        message: "holds \(count) entries but the manifest lists \(shard.records) records")
            }
            envs[s] = env
        }
        self.directory = directory
        self.listing = listing
        self.assignment = assignment
        self.batchSize = batchSize
        self.seed = seed
        self.options = options
        batchesPerEpoch = batches
        core = LoaderCore(assignment: assignment, environments: envs, batchSize: batchSize, batchesPerEpoch: batches,
                          seed: seed, tokenizer: tokenizer, options: options)
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
        String(format: "LMDB shards: %d shards, %d records (manifest %08x), %d batches/epoch of %d per rank x %d ranks, %d px, seed %llu",
               listing.shards.count, listing.totalRecords, listing.digest, batchesPerEpoch, batchSize, worldSize,
               imageSize, seed)
    }
}

struct BatchKey: Hashable, Sendable {
    var epoch: Int
    var index: Int
}

/// One sample's outcome.
struct SampleInfo {
    var caption: String
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
    }

    deinit { buffer.deallocate() }

    func store(slot: Int, _ info: SampleInfo) {
        captions[slot] = info.caption
        records[slot] = info.record
        if info.replaced { replaced += 1 }
    }

    /// The error of the lowest failing slot (deterministic whatever the completion order).
    var firstError: Error? { errors.min(by: { $0.slot < $1.slot })?.error }
}

/// Everything a sample needs, immutable after init except the caches (each behind its own lock).
final class LoaderCore: @unchecked Sendable {
    let assignment: ShardAssignment
    let environments: [Int: LMDBEnvironment]
    let batchSize: Int
    let batchesPerEpoch: Int
    let seed: UInt64
    let tokenizer: BertTokenizer
    let options: Options
    let imageSize: Int
    typealias Options = ShardLoader.Options

    private let permLock = NSLock()
    private var permutations: [(epoch: Int, order: [UInt32])] = []
    private let statsLock = NSLock()
    private var bad: [RecordID: String] = [:]
    private var stats = LoaderStatistics()

    init(assignment: ShardAssignment, environments: [Int: LMDBEnvironment], batchSize: Int, batchesPerEpoch: Int,
         seed: UInt64, tokenizer: BertTokenizer, options: Options) {
        self.assignment = assignment
        self.environments = environments
        self.batchSize = batchSize
        self.batchesPerEpoch = batchesPerEpoch
        self.seed = seed
        self.tokenizer = tokenizer
        self.options = options
        imageSize = options.transform.imageSize
    }

    /// The rank's record order for `epoch` (local record indices). Cached for the last few epochs.
    func permutation(epoch: Int) -> [UInt32] {
        permLock.lock()
        defer { permLock.unlock() }
        if let p = permutations.first(where: { $0.epoch == epoch }) { return p.order }
        let n = assignment.recordCount
        var order = [UInt32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = UInt32(truncatingIfNeeded: i) }
            count = n
        }
        if options.shuffle && n > 1 {
            var g = LoaderRandom(seed: seed, stream: .shuffle, UInt64(assignment.rank),
                                 UInt64(assignment.worldSize), UInt64(epoch))
            order.withUnsafeMutableBufferPointer { p in
                for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, g.below(i + 1)) }
            }
        }
        permutations.append((epoch, order))
        if permutations.count > 3 { permutations.removeFirst() }
        return order
    }

    /// The record order of `epoch` as (shard, key) pairs (for tests and tools).
    func recordOrder(epoch: Int) -> [RecordID] {
        permutation(epoch: epoch).map { i in
            let r = assignment.record(at: Int(i)) ?? (0, 0)
            return RecordID(shard: r.shard, key: r.key)
        }
    }

    var statistics: LoaderStatistics {
        statsLock.lock()
        defer { statsLock.unlock() }
        var s = stats
        s.badRecords = bad.keys.sorted().map { id in
            BadRecord(record: id, shardName: assignment.listing.shards[id.shard].name, reason: bad[id] ?? "")
        }
        return s
    }

    func countDelivered(hit: Bool) {
        statsLock.lock()
        stats.batchesDelivered += 1
        if hit { stats.prefetchHits += 1 }
        statsLock.unlock()
    }

    private func knownBad(_ id: RecordID) -> String? {
        statsLock.lock()
        defer { statsLock.unlock() }
        return bad[id]
    }

    private func markBad(_ id: RecordID, _ reason: String) {
        statsLock.lock()
        bad[id] = reason
        statsLock.unlock()
    }

    private enum RecordFailure: Error { case bad(String) }

    /// Reads and decodes one record; `RecordFailure.bad` for a bad record, LoaderError.read for storage errors.
    private func load(_ id: RecordID, decoder: JPEGDecoder) throws -> (captions: [String], image: RGBImage) {
        let name = assignment.listing.shards[id.shard].name
        guard let env = environments[id.shard] else {
            throw LoaderError.read(shard: name, key: id.key, message: "shard not opened by this rank")
        }
        let record: DatasetRecord
        do {
            let r = try env.read { txn in
                try txn.withValue(forKey: LMDBKey.uint64(UInt64(id.key))) { buf in
                    Result { try DatasetRecord.decode(buf) }
                }
            }
            guard let r else { throw RecordFailure.bad("key missing") }
            switch r {
            case let .success(rec): record = rec
            case let .failure(e): throw RecordFailure.bad("\(e)")
            }
        } catch let e as RecordFailure {
            throw e
        } catch {
            throw LoaderError.read(shard: name, key: id.key, message: "\(error)")
        }
        guard !record.captions.isEmpty else { throw RecordFailure.bad("record has no caption") }
        let image: RGBImage
        do { image = try decoder.decode(record.jpeg, options: options.jpeg) } catch {
            throw RecordFailure.bad("image: \(error)")
        }
        return (record.captions, image)
    }

    /// Computes slot `slot` of batch `key`: writes 3*S*S floats at `out`.
    func computeSample(_ key: BatchKey, slot: Int, decoder: JPEGDecoder, out: UnsafeMutablePointer<Float>) throws -> SampleInfo {
        let order = permutation(epoch: key.epoch)
        let n = order.count
        let global = (key.index * assignment.worldSize + assignment.rank) * batchSize + slot
        let position = key.index * batchSize + slot
        var lastReason = ""
        var lastID = RecordID(shard: 0, key: 0)
        let attempts = min(n, max(1, options.maxConsecutiveBadRecords))
        for attempt in 0..<attempts {
            let local = Int(order[(position + attempt) % n])
            guard let (s, k) = assignment.record(at: local) else { continue }
            let id = RecordID(shard: s, key: k)
            lastID = id
            let shardName = assignment.listing.shards[s].name
            if let reason = knownBad(id) {
                if options.strict { throw LoaderError.badRecord(shard: shardName, key: k, reason: reason) }
                lastReason = reason
                continue
            }
            // A fresh stream per attempt keeps the draws independent of how many records were bad.
            var rng = LoaderRandom(seed: seed, stream: .sample, UInt64(key.epoch), UInt64(global))
            do {
                let (captions, image) = try load(id, decoder: decoder)
                let raw = captions.count > 1 ? captions[rng.below(captions.count)] : captions[0]
                let caption = preCaption(raw, maxWords: options.maxWords)
                let img = try options.transform.apply(image, rng: &rng)
                guard img.width == imageSize, img.height == imageSize else {
                    throw RecordFailure.bad("transform produced \(img.width)x\(img.height)")
                }
                PixelNormalization.write(img, to: out)
                statsLock.lock()
                stats.samplesComputed += 1
                if attempt > 0 { stats.replacements += 1 }
                statsLock.unlock()
                return SampleInfo(caption: caption, record: id, replaced: attempt > 0)
            } catch let RecordFailure.bad(reason) {
                if options.strict { throw LoaderError.badRecord(shard: shardName, key: k, reason: reason) }
                markBad(id, reason)
                lastReason = reason
            } catch let e as ImageError {
                let reason = "transform: \(e)"
                if options.strict { throw LoaderError.badRecord(shard: shardName, key: k, reason: reason) }
                markBad(id, reason)
                lastReason = reason
            }
        }
        throw LoaderError.tooManyBadRecords(shard: assignment.listing.shards[lastID.shard].name, key: lastID.key,
                                            attempts: attempts, lastReason: lastReason)
    }

    /// Tokenises the captions and copies the images out of the job.
    func assemble(_ job: BatchJob) throws -> LoadedBatch {
        let tokens: TokenBatch
        do {
            tokens = try tokenizer.encodeBatch(job.captions, framing: .albef, maxLength: options.maxTextLength)
        } catch {
            throw LoaderError.text("\(error)")
        }
        let images = Array(UnsafeBufferPointer(start: job.buffer, count: job.batchSize * job.sampleFloats))
        return LoadedBatch(epoch: job.key.epoch, index: job.key.index, batchSize: job.batchSize, imageSize: imageSize,
                           images: images, ids: tokens.inputIds, mask: tokens.attentionMask, length: tokens.length,
                           captions: job.captions, records: job.records, replacedSamples: job.replaced)
    }

    /// The position after `key`.
    func next(_ key: BatchKey) -> BatchKey {
        key.index + 1 < batchesPerEpoch ? BatchKey(epoch: key.epoch, index: key.index + 1)
            : BatchKey(epoch: key.epoch + 1, index: 0)
    }
}

/// Worker threads computing the samples of a window of upcoming batches, earliest batch first.
final class PrefetchScheduler: @unchecked Sendable {
    let core: LoaderCore
    let depth: Int
    private let cond = NSCondition()
    private var window: [BatchJob] = []
    private var stopping = false
    private var running = 0
    private var startupError: Error?
    private let consumerLock = NSLock()

    init(core: LoaderCore, threads: Int, depth: Int) {
        self.core = core
        self.depth = depth
        running = threads
        for t in 0..<threads {
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "elip-loader-\(t)"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    func stop() {
        cond.lock()
        stopping = true
        for j in window { j.cancelled = true }
        window.removeAll()
        cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    /// Makes `keys` the window (reusing jobs already there). Caller holds the lock.
    private func aim(_ keys: [BatchKey]) {
        var old: [BatchKey: BatchJob] = [:]
        for j in window { old[j.key] = j }
        var new: [BatchJob] = []
        for k in keys {
            if let j = old.removeValue(forKey: k) { new.append(j) } else {
                new.append(BatchJob(key: k, batchSize: core.batchSize, sampleFloats: 3 * core.imageSize * core.imageSize))
            }
        }
        for j in old.values { j.cancelled = true }
        window = new
        cond.broadcast()
    }

    private func keys(from start: BatchKey, count: Int) -> [BatchKey] {
        var out: [BatchKey] = []
        var k = start
        for _ in 0..<count {
            out.append(k)
            k = core.next(k)
        }
        return out
    }

    func get(_ key: BatchKey) throws -> LoadedBatch {
        consumerLock.lock()
        defer { consumerLock.unlock() }
        cond.lock()
        defer { cond.unlock() }
        if stopping { throw LoaderError.closed }
        let wasReady = window.first(where: { $0.key == key })?.result != nil
        aim(keys(from: key, count: 1 + depth))
        let job = window[0]
        while job.result == nil && !stopping { cond.wait() }
        guard let result = job.result else { throw LoaderError.closed }
        // Keep `depth` batches in flight behind the one returned.
        aim(keys(from: core.next(key), count: depth))
        core.countDelivered(hit: wasReady)
        return try result.get()
    }

    private func workerLoop() {
        let decoder = try? JPEGDecoder()
        cond.lock()
        defer {
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        while !stopping {
            guard let job = window.first(where: { $0.dispatched < $0.batchSize && $0.errors.isEmpty }) else {
                cond.wait()
                continue
            }
            let slot = job.dispatched
            job.dispatched += 1
            cond.unlock()
            var outcome: Result<SampleInfo, Error>
            if let decoder {
                outcome = Result {
                    try core.computeSample(job.key, slot: slot, decoder: decoder, out: job.buffer + slot * job.sampleFloats)
                }
            } else {
                outcome = .failure(LoaderError.invalidArgument("could not create a JPEG decoder"))
            }
            cond.lock()
            switch outcome {
            case let .success(info): job.store(slot: slot, info)
            case let .failure(e): job.errors.append((slot, e))
            }
            job.done += 1
            let complete = job.done == job.batchSize || (!job.errors.isEmpty && job.done == job.dispatched)
            guard complete, !job.cancelled else { continue }
            if let e = job.firstError {
                job.result = .failure(e)
                cond.broadcast()
                continue
            }
            cond.unlock()
            let assembled = Result { try core.assemble(job) }
            cond.lock()
            job.result = assembled
            cond.broadcast()
        }
    }
}

import ELIPImage
import ELIPText
import Foundation

/// Everything a sample needs, immutable after init except the caches (each behind its own lock).
final class LoaderCore: @unchecked Sendable {
    let assignment: ShardAssignment
    let environments: [Int: LMDBEnvironment]
    /// Shards found damaged at open (non-strict): every record of theirs is a bad record.
    let damagedShards: [Int: String]
    let recordsInDamagedShards: Int
    let batchSize: Int
    let batchesPerEpoch: Int
    let seed: UInt64
    let tokenizer: any CaptionTokenizer
    let options: Options
    let imageSize: Int
    typealias Options = ShardLoader.Options

    private let permLock = NSLock()
    private var permutations: [(epoch: Int, order: [UInt32])] = []
    private let statsLock = NSLock()
    private var bad: [RecordID: String] = [:]
    private var stats = LoaderStatistics()

    init(assignment: ShardAssignment, environments: [Int: LMDBEnvironment], damagedShards: [Int: String] = [:],
         batchSize: Int, batchesPerEpoch: Int, seed: UInt64, tokenizer: any CaptionTokenizer, options: Options) {
        self.assignment = assignment
        self.environments = environments
        self.damagedShards = damagedShards
        recordsInDamagedShards = damagedShards.isEmpty ? 0
            : (0..<assignment.recordCount).reduce(0) { $0 + (assignment.record(at: $1).map { damagedShards[$0.shard] != nil } == true ? 1 : 0) }
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
        let n = assignment.sampleCount
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
            let r = assignment.sample(at: Int(i)) ?? (0, 0, nil, 0)
            return RecordID(shard: r.shard, key: r.key)
        }
    }

    var statistics: LoaderStatistics {
        statsLock.lock()
        defer { statsLock.unlock() }
        var s = stats
        s.damagedShards = damagedShards.keys.sorted().map { assignment.listing.shards[$0].name }
        s.recordsInDamagedShards = recordsInDamagedShards
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
    /// A decoded record of either kind: captions (VQA: question texts), labels, VQA answers per
    /// question (else empty), JPEG.
    private struct Decoded {
        var captions: [String]
        var labels: [Int] = []
        var answers: [[VQARecord.Answer]] = []
        var jpeg: [UInt8]

        static func decode(_ buf: UnsafeRawBufferPointer) throws -> Decoded {
            if VQARecord.hasMagic(buf) {
                let v = try VQARecord.decode(buf)
                return Decoded(captions: v.questions.map(\.text), answers: v.questions.map(\.answers), jpeg: v.jpeg)
            }
            let r = try DatasetRecord.decode(buf)
            return Decoded(captions: r.captions, labels: r.labels, jpeg: r.jpeg)
        }
    }

    private func load(_ id: RecordID, decoder: JPEGDecoder) throws -> (captions: [String], labels: [Int], answers: [[VQARecord.Answer]], image: RGBImage) {
        let name = assignment.listing.shards[id.shard].name
        if let damage = damagedShards[id.shard] { throw RecordFailure.bad("shard \(damage)") }
        guard let env = environments[id.shard] else {
            throw LoaderError.read(shard: name, key: id.key, message: "shard not opened by this rank")
        }
        let record: Decoded
        do {
            let r = try env.read { txn in
                try txn.withValue(forKey: LMDBKey.uint64(UInt64(id.key))) { buf in
                    Result { try Decoded.decode(buf) }
                }
            }
            guard let r else { throw RecordFailure.bad("key missing") }
            switch r {
            case let .success(rec): record = rec
            case let .failure(e): throw RecordFailure.bad("\(e)")
            }
        } catch let e as RecordFailure {
            throw e
        } catch let e as LMDBError where e.isDamage {
            throw RecordFailure.bad(e.message)   // a damaged value the structure check listed: skip it
        } catch {
            throw LoaderError.read(shard: name, key: id.key, message: "\(error)")
        }
        guard !record.captions.isEmpty else { throw RecordFailure.bad("record has no caption") }
        if !record.answers.isEmpty, record.answers.contains(where: \.isEmpty) {
            throw RecordFailure.bad("a question of the record has no answer")
        }
        let image: RGBImage
        do { image = try decoder.decode(record.jpeg, options: options.jpeg) } catch {
            throw RecordFailure.bad("image: \(error)")
        }
        return (record.captions, record.labels, record.answers, image)
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
            guard let (s, k, captionIndex, listedCaptions) = assignment.sample(at: local) else { continue }
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
                let (captions, labels, answers, image) = try load(id, decoder: decoder)
                let choice: Int
                if let captionIndex {
                    // The sample is one caption of the record: the record must hold what the manifest lists.
                    guard captions.count == listedCaptions else {
                        throw RecordFailure.bad("record holds \(captions.count) captions, the manifest lists \(listedCaptions)")
                    }
                    choice = captionIndex
                } else {
                    choice = captions.count > 1 ? rng.below(captions.count) : 0
                }
                let raw = captions[choice]
                let caption = options.captionStyle.clean(raw)
                let img = try options.transform.apply(image, rng: &rng)
                guard img.width == imageSize, img.height == imageSize else {
                    throw RecordFailure.bad("transform produced \(img.width)x\(img.height)")
                }
                PixelNormalization.write(img, to: out)
                statsLock.lock()
                stats.samplesComputed += 1
                if attempt > 0 { stats.replacements += 1 }
                statsLock.unlock()
                return SampleInfo(caption: caption, label: labels.isEmpty ? nil : labels[choice],
                                  answers: answers.isEmpty ? nil : answers[choice], record: id, replaced: attempt > 0)
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
            tokens = try tokenizer.encodeBatch(job.captions, style: options.captionStyle, cleaned: true)
        } catch {
            throw LoaderError.text("\(error)")
        }
        let images = Array(UnsafeBufferPointer(start: job.buffer, count: job.batchSize * job.sampleFloats))
        return LoadedBatch(epoch: job.key.epoch, index: job.key.index, batchSize: job.batchSize, imageSize: imageSize,
                           images: images, ids: tokens.inputIds, mask: tokens.attentionMask, length: tokens.length,
                           captions: job.captions, records: job.records, replacedSamples: job.replaced,
                           labels: job.labels.contains(nil) ? nil : job.labels.compactMap { $0 },
                           answers: job.answers.contains(where: { $0 == nil }) ? nil : job.answers.compactMap { $0 })
    }

    /// The position after `key`.
    func next(_ key: BatchKey) -> BatchKey {
        key.index + 1 < batchesPerEpoch ? BatchKey(epoch: key.epoch, index: key.index + 1)
            : BatchKey(epoch: key.epoch + 1, index: 0)
    }
}

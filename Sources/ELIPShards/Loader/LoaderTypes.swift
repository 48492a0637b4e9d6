/// Errors of the shard loader. Every message names what failed (shard, key, epoch, index).
public enum LoaderError: Error, Equatable, Sendable, CustomStringConvertible {
    /// manifest.json missing, unreadable or malformed.
    case manifest(String)
    /// A caller-side argument is invalid (rank, batch size, thread count, ...).
    case invalidArgument(String)
    /// A shard environment could not be opened or does not hold the records the manifest lists.
    case shard(name: String, message: String)
    /// Strict mode: a record failed its CRC, its decoding or its JPEG decode.
    case badRecord(shard: String, key: Int, reason: String)
    /// Too many bad records in a row while looking for a replacement.
    case tooManyBadRecords(shard: String, key: Int, attempts: Int, lastReason: String)
    /// LMDB failed while reading (not a bad record: the storage itself).
    case read(shard: String, key: Int, message: String)
    /// Batch position outside the epoch.
    case indexOutOfRange(epoch: Int, index: Int, batchesPerEpoch: Int)
    /// Fewer records on some rank than one batch needs.
    case tooFewRecords(minRecordsPerRank: Int, batchSize: Int, worldSize: Int)
    /// Caption tokenisation failed.
    case text(String)
    /// The loader was closed.
    case closed

    public var description: String {
        switch self {
        case let .manifest(m): return "shard manifest: \(m)"
        case let .invalidArgument(m): return "loader: \(m)"
        case let .shard(name, m): return "shard \(name): \(m)"
        case let .badRecord(shard, key, reason): return "bad record in shard \(shard), key \(key): \(reason)"
        case let .tooManyBadRecords(shard, key, attempts, reason):
            return "\(attempts) bad records in a row (last: shard \(shard), key \(key): \(reason))"
        case let .read(shard, key, m): return "reading shard \(shard), key \(key) failed: \(m)"
        case let .indexOutOfRange(e, i, n): return "batch \(i) of epoch \(e) is outside 0..<\(n) (or the epoch is negative)"
        case let .tooFewRecords(m, b, w):
            return "the smallest rank owns \(m) records, fewer than one batch of \(b) (\(w) ranks): use fewer ranks, a smaller batch or more data"
        case let .text(m): return "caption tokenisation failed: \(m)"
        case .closed: return "the loader is closed"
        }
    }
}

/// A record's place: shard index (in the manifest) and key.
public struct RecordID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var shard: Int
    public var key: Int
    public init(shard: Int, key: Int) {
        self.shard = shard
        self.key = key
    }
    public static func < (a: RecordID, b: RecordID) -> Bool { (a.shard, a.key) < (b.shard, b.key) }
    public var description: String { "\(shard):\(key)" }
}

/// One batch as the loader delivers it (no dependency on the tensor engine).
public struct LoadedBatch: Sendable, Equatable {
    public let epoch: Int
    public let index: Int
    public let batchSize: Int
    /// Square image side.
    public let imageSize: Int
    /// Normalised images, [batchSize, 3, imageSize, imageSize] row-major.
    public let images: [Float]
    /// Token ids [batchSize, length] (ALBEF framing, padded with [PAD] to the longest caption).
    public let ids: [Int32]
    /// Attention mask, same layout (1 = token, 0 = padding).
    public let mask: [Int32]
    /// Padded caption length.
    public let length: Int
    /// The cleaned captions (after pre_caption), one per sample.
    public let captions: [String]
    /// The record each sample came from.
    public let records: [RecordID]
    /// Samples whose scheduled record was bad and was replaced by a later record of the rank's order.
    public let replacedSamples: Int
    /// Each sample's class label when every record of the batch has labels (task shards, e.g.
    /// SNLI-VE), else nil.
    public var labels: [Int]? = nil
    /// VQA shards: each sample's question's answers with their weights (vqa_dataset.py's), else nil.
    public var answers: [[VQARecord.Answer]]? = nil
}

/// A record that was skipped.
public struct BadRecord: Sendable, Equatable {
    public var record: RecordID
    public var shardName: String
    public var reason: String
}

/// Counters of a loader (over its lifetime).
public struct LoaderStatistics: Sendable, Equatable {
    /// Distinct bad records met, ordered by (shard, key).
    public var badRecords: [BadRecord] = []
    /// This rank's shards found damaged when opened (non-strict: all their records are skipped).
    public var damagedShards: [String] = []
    /// This rank's records that lie in those shards (known lost before any is read).
    public var recordsInDamagedShards = 0
    /// Times a sample had to be replaced (a recomputed batch counts again).
    public var replacements = 0
    /// Batches returned by `batch(epoch:index:)`.
    public var batchesDelivered = 0
    /// Of those, how many were already complete when requested.
    public var prefetchHits = 0
    /// Samples decoded and augmented (including discarded prefetch work).
    public var samplesComputed = 0
}

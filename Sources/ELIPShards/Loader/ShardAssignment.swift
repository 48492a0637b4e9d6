/// Which records each rank reads.
///
/// * At least as many shards as ranks: whole shards, round robin (shard s belongs to rank
///   s mod W). A rank opens and reads only its own shards.
/// * Fewer shards than ranks: every shard is split into W contiguous key ranges and rank r takes
///   range r of every shard (keys [n*r/W, n*(r+1)/W)).
///
/// Either way the ranks' record sets are disjoint and together cover the corpus. Ranks can own
/// different numbers of records; `batchesPerEpoch` truncates every rank to the smallest one (from
/// the manifest alone, so all ranks agree without communicating).
public struct ShardAssignment: Sendable, Equatable {
    /// A contiguous key range [lower, upper) of one shard.
    public struct Piece: Sendable, Equatable {
        public var shard: Int
        public var lower: Int
        public var upper: Int
        public var count: Int { upper - lower }
    }

    public let listing: ShardListing
    public let rank: Int
    public let worldSize: Int
    /// This rank's pieces, in shard order.
    public let pieces: [Piece]
    /// Records this rank owns.
    public let recordCount: Int
    /// Records owned by each rank (index = rank).
    public let recordsPerRank: [Int]
    /// Start of each piece in the rank's local numbering.
    let offsets: [Int]
    /// Whether the unit of an epoch is a caption (task shards: every caption of a record is a
    /// sample of its own, as the official task datasets list one entry per caption) rather than
    /// a record (pre-training: one random caption per record).
    public let perCaption: Bool
    /// Samples this rank owns (= `recordCount` unless `perCaption`).
    public let sampleCount: Int
    /// Samples owned by each rank (index = rank).
    public let samplesPerRank: [Int]
    /// perCaption: first sample of each local record (recordCount + 1 entries).
    let sampleStarts: [Int]

    /// `perCaption`: samples are (record, caption) pairs, counted from the manifest's
    /// `caption_counts` (a shard without them counts one caption per record; the loader checks).
    public init(listing: ShardListing, rank: Int, worldSize: Int, perCaption: Bool = false) throws {
        guard worldSize >= 1 else { throw LoaderError.invalidArgument("world size must be >= 1, got \(worldSize)") }
        guard rank >= 0, rank < worldSize else {
            throw LoaderError.invalidArgument("rank \(rank) outside 0..<\(worldSize)")
        }
        self.listing = listing
        self.rank = rank
        self.worldSize = worldSize
        pieces = ShardAssignment.pieces(listing: listing, rank: rank, worldSize: worldSize)
        var offsets: [Int] = []
        var total = 0
        for p in pieces { offsets.append(total); total += p.count }
        self.offsets = offsets
        recordCount = total
        recordsPerRank = (0..<worldSize).map { r in
            ShardAssignment.pieces(listing: listing, rank: r, worldSize: worldSize).reduce(0) { $0 + $1.count }
        }
        self.perCaption = perCaption
        if perCaption {
            func captions(_ p: Piece) -> [Int] {
                listing.shards[p.shard].captionCounts.map { Array($0[p.lower..<p.upper]) } ?? [Int](repeating: 1, count: p.count)
            }
            var starts = [0]
            starts.reserveCapacity(total + 1)
            for p in pieces { for c in captions(p) { starts.append(starts[starts.count - 1] + c) } }
            sampleStarts = starts
            sampleCount = starts[starts.count - 1]
            samplesPerRank = (0..<worldSize).map { r in
                r == rank ? starts[starts.count - 1]
                    : ShardAssignment.pieces(listing: listing, rank: r, worldSize: worldSize).reduce(0) { $0 + captions($1).reduce(0, +) }
            }
        } else {
            sampleStarts = []
            sampleCount = total
            samplesPerRank = recordsPerRank
        }
    }

    /// Local sample `i` (0..<sampleCount): its record, and with `perCaption` which caption of how
    /// many the manifest lists for it; nil outside.
    public func sample(at i: Int) -> (shard: Int, key: Int, caption: Int?, captions: Int)? {
        guard perCaption else { return record(at: i).map { ($0.shard, $0.key, nil, 0) } }
        guard i >= 0, i < sampleCount else { return nil }
        // The last record whose first sample is <= i.
        var lo = 0, hi = recordCount - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if sampleStarts[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        guard let r = record(at: lo) else { return nil }
        return (r.shard, r.key, i - sampleStarts[lo], sampleStarts[lo + 1] - sampleStarts[lo])
    }

    /// Whether shards are split between ranks (fewer shards than ranks).
    public var splitsShards: Bool { listing.shards.count < worldSize }

    /// Indices of the shards this rank reads.
    public var shardIndices: [Int] { pieces.map(\.shard) }

    /// The pieces of rank `rank` (pure function of the listing and world size).
    public static func pieces(listing: ShardListing, rank: Int, worldSize: Int) -> [Piece] {
        let shards = listing.shards
        guard worldSize >= 1, rank >= 0, rank < worldSize else { return [] }
        if shards.count >= worldSize {
            return stride(from: rank, to: shards.count, by: worldSize).compactMap { s in
                shards[s].records > 0 ? Piece(shard: s, lower: 0, upper: shards[s].records) : nil
            }
        }
        return shards.indices.compactMap { s in
            let n = shards[s].records
            let lower = split(n, rank, worldSize), upper = split(n, rank + 1, worldSize)
            return upper > lower ? Piece(shard: s, lower: lower, upper: upper) : nil
        }
    }

    /// floor(n * k / w), exact in integers (falls back to Double on overflow), clamped to n.
    static func split(_ n: Int, _ k: Int, _ w: Int) -> Int {
        let (p, o) = n.multipliedReportingOverflow(by: k)
        let v = o ? Int((Double(n) * Double(k) / Double(w)).rounded(.down)) : p / w
        return min(max(0, v), n)
    }

    /// The smallest record count over all ranks.
    public var minRecordsPerRank: Int { recordsPerRank.min() ?? 0 }
    /// The smallest sample count over all ranks (= records unless `perCaption`).
    public var minSamplesPerRank: Int { samplesPerRank.min() ?? 0 }

    /// Full batches per epoch, identical on every rank (truncated to the smallest rank).
    public func batchesPerEpoch(batchSize: Int) -> Int {
        guard batchSize > 0 else { return 0 }
        return minSamplesPerRank / batchSize
    }

    /// The (shard index, key) of local record `i` (0..<recordCount); nil outside.
    public func record(at i: Int) -> (shard: Int, key: Int)? {
        guard i >= 0, i < recordCount else { return nil }
        // Binary search for the last piece whose offset <= i.
        var lo = 0, hi = offsets.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        let p = pieces[lo]
        return (p.shard, p.lower + (i - offsets[lo]))
    }
}

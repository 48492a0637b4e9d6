import Foundation

/// NLVR2 builds: after every image shard is finished, rank 0 writes the pair records
/// (`NLVRPairRecord`) into `DIR/pairs/` (one LMDB, keys 0.. big-endian UInt64) with
/// `pairs/summary.json` (record count, data.mdb size and checksum, as a shard summary). A pair
/// whose image was not stored (missing, undecodable, ...) is rejected as `missing_image`, naming
/// the image and why it was not stored; every other pair is kept.
extension DatasetBuilder {
    public static let pairsDirectoryName = "pairs"

    /// `pairs/summary.json`.
    public struct PairsSummary: Codable, Equatable, Sendable {
        public var records: Int
        public var bytes: Int
        public var checksum: String
        public var checksumAlgorithm: String
    }

    /// Writes the pairs of `plan` and returns the rejected ones.
    func writePairs(plan: DatasetPlan) throws -> [RejectRecord] {
        // Where each stored image is (source id -> shard, key), read from the finished shards.
        var stored: [String: NLVRPairRecord.ImageReference] = [:]
        var notStored: [String: String] = [:]
        for s in 0..<options.shardCount {
            let dir = shardDirectory(s)
            for r in try ShardSummary.load(fromShardDirectory: dir).rejects { notStored[r.item] = "\(r.reason.rawValue): \(r.detail)" }
            let env = try LMDBEnvironment(path: dir, readOnly: true)
            try env.read { txn in
                try txn.forEach { k, v in
                    guard let key = LMDBKey.uint64(decoding: k) else { throw DatasetError.io(dir, "a key is not a big-endian UInt64") }
                    let record: DatasetRecord
                    do { record = try DatasetRecord.decode(v) } catch {
                        throw DatasetError.io(dir, "record \(key) written by this build does not decode: \(error)")
                    }
                    stored[record.sourceID] = NLVRPairRecord.ImageReference(shard: s, key: key, sourceID: record.sourceID)
                    return true
                }
            }
        }
        var rejects: [RejectRecord] = []
        var values: [[UInt8]] = []
        for pair in plan.pairs {
            var refs: [NLVRPairRecord.ImageReference] = []
            for (side, i) in [("left", pair.leftItem), ("right", pair.rightItem)] {
                let image = plan.items[i]
                guard let ref = stored[image.sourceID] else {
                    let why = notStored[image.item] ?? "not in the shards"
                    rejects.append(RejectRecord(source: plan.sources[pair.source].path, item: pair.item, reason: .missingImage,
                                                detail: "\(pair.sourceID): the \(side) image \(image.item) was not stored (\(why))"))
                    break
                }
                refs.append(ref)
            }
            guard refs.count == 2 else { continue }
            values.append(NLVRPairRecord(sentence: pair.sentence, label: pair.label, left: refs[0], right: refs[1],
                                         sourceID: pair.sourceID).encoded())
        }
        // Written aside, then renamed over any previous pairs/ (a re-run replaces it whole).
        let final = (out as NSString).appendingPathComponent(Self.pairsDirectoryName)
        let tmp = final + ".tmp-\(getpid())"
        if FileManager.default.fileExists(atPath: tmp) { try FileManager.default.removeItem(atPath: tmp) }
        do {
            let bytes = values.reduce(0) { $0 + $1.count }
            let env = try LMDBEnvironment(path: tmp, readOnly: false, mapSize: max(16 << 20, 4 * bytes), noSync: true)
            for start in stride(from: 0, to: values.count, by: max(1, options.batchSize)) {
                try env.writeWithGrowth { txn in
                    for k in start..<min(start + max(1, options.batchSize), values.count) {
                        try txn.put(UInt64(k), values[k], flags: .append)
                    }
                }
            }
            try env.sync(force: true)
        }
        let data = (tmp as NSString).appendingPathComponent("data.mdb")
        try FileOps.fsync(path: data)
        let (sum, size) = try Checksum64.file(atPath: data)
        let summary = PairsSummary(records: values.count, bytes: size, checksum: Checksum64.hex(sum), checksumAlgorithm: Checksum64.algorithm)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileOps.writeSynced(Array(try enc.encode(summary)), to: (tmp as NSString).appendingPathComponent("summary.json"), exclusive: true)
        if FileManager.default.fileExists(atPath: final) { try discard(final) }
        guard rename(tmp, final) == 0 else {
            throw DatasetError.io(final, "cannot rename \(tmp) into place: \(FileOps.errnoString())")
        }
        try FileOps.fsync(path: out, isDirectory: true)
        log("build-dataset: \(values.count) NLVR2 pairs written to \(final), \(rejects.count) rejected (an image not stored)")
        return rejects
    }
}

import ELIPImage
import Foundation

/// The pairs and images of an NLVR2 dataset (`elip build-dataset --format nlvr2`): `pairs/`
/// (NLVRPairRecords, checked against `pairs/summary.json`) read whole into memory, the image
/// shards opened as the loader opens shards (checked against the manifest, LMDB structure
/// walked). Pairs reference images by (shard, key) and the image's source id, which is checked
/// on every read. NLVR2 data is read strictly: a damaged pair or image record is an error naming
/// it (a pair cannot be replaced by another without changing what the run trains on).
public final class NLVRPairDataset {
    public let directory: String
    public let pairs: [NLVRPairRecord]
    public let listing: ShardListing
    let environments: [LMDBEnvironment]

    public init(directory: String) throws {
        let pairsDir = (directory as NSString).appendingPathComponent(DatasetBuilder.pairsDirectoryName)
        guard FileManager.default.fileExists(atPath: (pairsDir as NSString).appendingPathComponent("summary.json")) else {
            throw LoaderError.invalidArgument("\(directory) holds no NLVR2 pairs (\(pairsDir)/summary.json is missing): build it with `elip build-dataset --format nlvr2`")
        }
        let summary: DatasetBuilder.PairsSummary
        do {
            summary = try JSONDecoder().decode(DatasetBuilder.PairsSummary.self,
                                               from: Data(contentsOf: URL(fileURLWithPath: (pairsDir as NSString).appendingPathComponent("summary.json"))))
        } catch {
            throw LoaderError.manifest("\(pairsDir)/summary.json: \(error)")
        }
        if let why = DatasetBuilder.verifyShardFiles(pairsDir, records: summary.records, bytes: summary.bytes, checksum: summary.checksum) {
            throw LoaderError.shard(name: DatasetBuilder.pairsDirectoryName, message: "\(why) (pairs/summary.json disagrees: damaged or replaced)")
        }
        let listing = try ShardListing.read(directory: directory)
        self.listing = listing
        var envs: [LMDBEnvironment] = []
        for s in listing.shards.indices {
            do { envs.append(try ShardIntegrity.open(directory: directory, listing: listing, index: s)) } catch let e as ShardIntegrity.ShardDamage {
                throw LoaderError.shard(name: listing.shards[s].name, message: e.description)
            }
        }
        environments = envs
        let env = try LMDBEnvironment(path: pairsDir, readOnly: true)
        var pairs: [NLVRPairRecord] = []
        try env.read { txn in
            for k in 0..<summary.records {
                guard let value = try txn.get(UInt64(k)) else {
                    throw LoaderError.badRecord(shard: DatasetBuilder.pairsDirectoryName, key: k, reason: "key missing")
                }
                let pair: NLVRPairRecord
                do { pair = try NLVRPairRecord.decode(value) } catch {
                    throw LoaderError.badRecord(shard: DatasetBuilder.pairsDirectoryName, key: k, reason: "\(error)")
                }
                guard pair.label == 0 || pair.label == 1 else {
                    throw LoaderError.badRecord(shard: DatasetBuilder.pairsDirectoryName, key: k, reason: "label \(pair.label) is not 0 (False) or 1 (True)")
                }
                for (side, ref) in [("left", pair.left), ("right", pair.right)] {
                    guard ref.shard < listing.shards.count, ref.key < UInt64(listing.shards[ref.shard].records) else {
                        throw LoaderError.badRecord(shard: DatasetBuilder.pairsDirectoryName, key: k,
                                                    reason: "the \(side) image reference (shard \(ref.shard), key \(ref.key)) is outside the dataset's \(listing.shards.count) shards")
                    }
                }
                pairs.append(pair)
            }
        }
        guard !pairs.isEmpty else { throw LoaderError.invalidArgument("\(pairsDir) holds no pairs") }
        self.directory = directory
        self.pairs = pairs
    }

    /// The image `ref` points to, decoded; an error naming the shard and key when the record is
    /// missing, damaged, or another image (its source id differs).
    public func image(_ ref: NLVRPairRecord.ImageReference, decoder: JPEGDecoder) throws -> RGBImage {
        let name = listing.shards[ref.shard].name
        let key = Int(ref.key)
        let record: DatasetRecord
        do {
            guard let r = try environments[ref.shard].read({ txn in
                try txn.withValue(forKey: LMDBKey.uint64(ref.key)) { try DatasetRecord.decode($0) }
            }) else { throw LoaderError.badRecord(shard: name, key: key, reason: "key missing") }
            record = r
        } catch let e as LoaderError {
            throw e
        } catch {
            throw LoaderError.badRecord(shard: name, key: key, reason: "\(error)")
        }
        guard record.sourceID == ref.sourceID else {
            throw LoaderError.badRecord(shard: name, key: key, reason: "holds image \(record.sourceID), but the pair references \(ref.sourceID)")
        }
        do { return try decoder.decode(record.jpeg) } catch {
            throw LoaderError.badRecord(shard: name, key: key, reason: "image \(ref.sourceID): \(error)")
        }
    }
}

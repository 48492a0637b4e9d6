import Foundation

/// The part of a shard folder's `manifest.json` the loader needs: the shards in order, each with
/// its sub-directory name and record count (keys 0..<records, 8-byte big-endian), and what it
/// cross-checks cheaply, as `inspect-dataset` does: `format`/`format_version` must be known,
/// `shard_count` and `total_records` (when present) must agree with the list, builder-named shards
/// (`shard-i-of-n`) must sit at position i of n entries, and each shard's `bytes` and
/// `first_source_id`/`last_source_id` (when present) are compared with the files when the shard
/// is opened.
/// Other fields are ignored, so this reader keeps working as the builder's format grows.
///
///     {"shards": [{"name": "shard-00000-of-00002", "records": 5000, ...}, ...], ...}
public struct ShardListing: Sendable, Equatable {
    public struct Shard: Sendable, Equatable, Hashable {
        public var name: String
        public var records: Int
        /// data.mdb size the manifest records (nil: not recorded).
        public var bytes: Int?
        /// Source ids of the first and last record (nil: not recorded, older manifests).
        public var firstSourceID: String?
        public var lastSourceID: String?
        /// Task shards: captions of each record, in key order (nil: not recorded, i.e. pre-training
        /// shards and SNLI-VE shards of older builds, which hold one sentence per record).
        public var captionCounts: [Int]?
        public init(name: String, records: Int, bytes: Int? = nil, firstSourceID: String? = nil, lastSourceID: String? = nil,
                    captionCounts: [Int]? = nil) {
            self.name = name
            self.records = records
            self.bytes = bytes
            self.firstSourceID = firstSourceID
            self.lastSourceID = lastSourceID
            self.captionCounts = captionCounts
        }
    }

    public var shards: [Shard]
    /// True when the manifest was written by the dataset builder (`builder` names it): every shard
    /// must then carry its `shard-summary.json`, which the loader compares with the entry.
    public var fromBuilder = false
    /// The task the shards were built for (`build-dataset --format`: "ve", "retrieval"), nil for
    /// pre-training shards. SNLI-VE shards of older builds have no `task_format`; their
    /// `record_format` names the ve label.
    public var taskFormat: String?

    public init(shards: [Shard]) throws {
        var seen = Set<String>()
        for s in shards {
            guard !s.name.isEmpty, !s.name.contains("/"), s.name != ".", s.name != ".." else {
                throw LoaderError.manifest("invalid shard name '\(s.name)'")
            }
            guard s.records >= 0 else { throw LoaderError.manifest("shard \(s.name) has a negative record count") }
            guard s.bytes.map({ $0 >= 0 }) ?? true else { throw LoaderError.manifest("shard \(s.name) has a negative byte count") }
            guard seen.insert(s.name).inserted else { throw LoaderError.manifest("shard \(s.name) is listed twice") }
        }
        // Builder-named shards say where they belong: a missing or reordered entry shows here.
        for (i, s) in shards.enumerated() {
            guard let p = ShardNaming.parse(s.name) else { continue }
            guard !p.temporary else { throw LoaderError.manifest("shard \(s.name) is an unfinished build directory") }
            guard p.shard == i, p.count == shards.count else {
                throw LoaderError.manifest("entry \(i) of \(shards.count) is \(s.name): shard \(p.shard) of \(p.count) "
                                           + "(a shard entry is missing, extra or out of order)")
            }
        }
        self.shards = shards
    }

    public var totalRecords: Int { shards.reduce(0) { $0 + $1.records } }

    public static let fileName = "manifest.json"

    /// Reads `directory/manifest.json`.
    public static func read(directory: String) throws -> ShardListing {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let data: Data
        // FileOps.readFile: regular files only (a FIFO would block), size-limited.
        do { data = Data(try FileOps.readFile(path, maxBytes: 1 << 30)) } catch {
            throw LoaderError.manifest("cannot read \(path): \(error)")
        }
        return try parse(data, origin: path)
    }

    /// Parses manifest JSON (only `shards[].name` and `shards[].records` are used).
    public static func parse(_ data: Data, origin: String = "manifest") throws -> ShardListing {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw LoaderError.manifest("\(origin) is not valid JSON: \(error.localizedDescription)")
        }
        guard let top = object as? [String: Any], let list = top["shards"] as? [Any] else {
            throw LoaderError.manifest("\(origin) has no 'shards' list")
        }
        func integer(_ v: Any?) -> Int? {
            guard let v else { return nil }
            return (v as? Int) ?? (v as? Double).flatMap { Int(exactly: $0) }
        }
        if let format = top["format"] {
            guard let f = format as? String, f == DatasetManifest.formatName else {
                throw LoaderError.manifest("\(origin): format is \(format), expected '\(DatasetManifest.formatName)'")
            }
        }
        if let version = top["format_version"] {
            guard let v = integer(version), (1...DatasetManifest.currentFormatVersion).contains(v) else {
                throw LoaderError.manifest("\(origin): format_version \(version) is not one this reader knows "
                                           + "(1...\(DatasetManifest.currentFormatVersion))")
            }
        }
        if let count = top["shard_count"] {
            guard let n = integer(count), n == list.count else {
                throw LoaderError.manifest("\(origin): shard_count is \(count) but \(list.count) shards are listed")
            }
        }
        var shards: [Shard] = []
        for (i, item) in list.enumerated() {
            guard let d = item as? [String: Any], let name = d["name"] as? String else {
                throw LoaderError.manifest("\(origin): shards[\(i)] has no 'name'")
            }
            guard let records = integer(d["records"]) else {
                throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)) has no integer 'records'")
            }
            var bytes: Int? = nil
            if let b = d["bytes"] {
                guard let v = integer(b) else { throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)) has a non-integer 'bytes'") }
                bytes = v
            }
            var ids: [String?] = []
            for field in ["first_source_id", "last_source_id"] {
                guard let v = d[field] else { ids.append(nil); continue }
                guard let id = v as? String else { throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)) has a non-string '\(field)'") }
                ids.append(id)
            }
            var counts: [Int]? = nil
            if let c = d["caption_counts"] {
                guard let text = c as? String else { throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)) has a non-string 'caption_counts'") }
                do { counts = try CaptionCounts.decode(text, records: records) } catch {
                    throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)): caption_counts \(error)")
                }
            }
            shards.append(Shard(name: name, records: records, bytes: bytes, firstSourceID: ids[0], lastSourceID: ids[1], captionCounts: counts))
        }
        var listing = try ShardListing(shards: shards)
        if let total = top["total_records"] {
            guard let t = integer(total), t == listing.totalRecords else {
                throw LoaderError.manifest("\(origin): total_records is \(total) but the shards hold \(listing.totalRecords)")
            }
        }
        listing.fromBuilder = (top["builder"] as? String) == DatasetManifest.builderName
        if let task = top["task_format"] {
            guard let t = task as? String, !t.isEmpty else { throw LoaderError.manifest("\(origin): task_format is \(task), expected a format name") }
            listing.taskFormat = t
        } else if let record = top["record_format"] as? String, record.contains("one ve label per caption") {
            listing.taskFormat = "ve"   // SNLI-VE shards built before task_format existed
        }
        return listing
    }

    /// A digest of the shard names and counts (the same on every rank that reads the same manifest).
    public var digest: UInt32 {
        var bytes: [UInt8] = []
        for s in shards { bytes += Array(s.name.utf8); bytes.append(0); bytes += Array(String(s.records).utf8); bytes.append(0x0A) }
        return CRC32.checksum(bytes)
    }
}

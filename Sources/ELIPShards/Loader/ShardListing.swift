import Foundation

/// The part of a shard folder's `manifest.json` the loader needs: the shards in order, each with
/// its sub-directory name and record count (keys 0..<records, 8-byte big-endian). Any other
/// fields of the manifest (written by the dataset builder) are ignored, so this reader keeps
/// working as the builder's format grows.
///
///     {"shards": [{"name": "shard-00000-of-00002", "records": 5000, ...}, ...], ...}
public struct ShardListing: Sendable, Equatable {
    public struct Shard: Sendable, Equatable, Hashable {
        public var name: String
        public var records: Int
        public init(name: String, records: Int) {
            self.name = name
            self.records = records
        }
    }

    public var shards: [Shard]

    public init(shards: [Shard]) throws {
        var seen = Set<String>()
        for s in shards {
            guard !s.name.isEmpty, !s.name.contains("/"), s.name != ".", s.name != ".." else {
                throw LoaderError.manifest("invalid shard name '\(s.name)'")
            }
            guard s.records >= 0 else { throw LoaderError.manifest("shard \(s.name) has a negative record count") }
            guard seen.insert(s.name).inserted else { throw LoaderError.manifest("shard \(s.name) is listed twice") }
        }
        self.shards = shards
    }

    public var totalRecords: Int { shards.reduce(0) { $0 + $1.records } }

    public static let fileName = "manifest.json"

    /// Reads `directory/manifest.json`.
    public static func read(directory: String) throws -> ShardListing {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw LoaderError.manifest("cannot read \(path): \(error.localizedDescription)")
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
        var shards: [Shard] = []
        for (i, item) in list.enumerated() {
            guard let d = item as? [String: Any], let name = d["name"] as? String else {
                throw LoaderError.manifest("\(origin): shards[\(i)] has no 'name'")
            }
            guard let records = (d["records"] as? Int) ?? (d["records"] as? Double).flatMap({ Int(exactly: $0) }) else {
                throw LoaderError.manifest("\(origin): shards[\(i)] (\(name)) has no integer 'records'")
            }
            shards.append(Shard(name: name, records: records))
        }
        return try ShardListing(shards: shards)
    }

    /// A digest of the shard names and counts (the same on every rank that reads the same manifest).
    public var digest: UInt32 {
        var bytes: [UInt8] = []
        for s in shards { bytes += Array(s.name.utf8); bytes.append(0); bytes += Array(String(s.records).utf8); bytes.append(0x0A) }
        return CRC32.checksum(bytes)
    }
}

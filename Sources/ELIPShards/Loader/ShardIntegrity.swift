import Foundation

/// Opening one listed shard for reading, with the cheap checks that it is the shard the manifest
/// describes and that its file is safe to map. Two kinds of failure:
/// * `LoaderError.shard`: the shard contradicts the manifest (record count, size, head/tail
///   checksum, its own shard-summary.json naming another shard): a different dataset or a copy of
///   another shard. Always refused: training on it would be silently wrong.
/// * `ShardDamage`: the file itself is damaged (truncated, a broken LMDB tree). The loader refuses
///   it in strict mode and otherwise skips the shard's records, counted and warned about.
enum ShardIntegrity {
    struct ShardDamage: Error, CustomStringConvertible {
        let description: String
    }

    /// Opens shard `index` of `listing` under `directory`.
    static func open(directory: String, listing: ShardListing, index: Int) throws -> LMDBEnvironment {
        let shard = listing.shards[index]
        let dir = (directory as NSString).appendingPathComponent(shard.name)
        let data = (dir as NSString).appendingPathComponent("data.mdb")
        func mismatch(_ m: String) -> LoaderError { .shard(name: shard.name, message: m) }
        var st = stat()
        guard stat(data, &st) == 0 else {      // a symlinked data.mdb is fine; what it leads to must be a file
            throw mismatch("cannot open \(data): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw mismatch("\(data) is not a regular file") }
        let size = Int(st.st_size)

        let env: LMDBEnvironment
        do {
            env = try LMDBEnvironment(path: dir, readOnly: true, verifyStructure: true)
        } catch let e as LMDBError where e.isDamage {
            let sizeNote = shard.bytes.map { $0 == size ? "" : " (data.mdb is \(size) bytes, the manifest says \($0))" } ?? ""
            throw ShardDamage(description: "damaged: \(e.message)\(sizeNote)")
        } catch {
            throw mismatch("cannot open \(dir): \(error)")
        }
        let entries = env.structure?.entries ?? 0
        guard entries == shard.records else {
            throw mismatch("holds \(entries) records but the manifest lists \(shard.records)")
        }
        if let bytes = shard.bytes, bytes != size {
            throw mismatch("data.mdb is \(size) bytes but the manifest says \(bytes) (replaced by another file?)")
        }
        if let problem = identityProblem(env, first: shard.firstSourceID, last: shard.lastSourceID, records: shard.records) {
            throw mismatch(problem)
        }
        // The builder's summary travels with the shard directory: a copied directory names its origin.
        let summaryPath = (dir as NSString).appendingPathComponent(ShardSummary.fileName)
        if FileManager.default.fileExists(atPath: summaryPath) || listing.fromBuilder {
            let summary: ShardSummary
            do { summary = try ShardSummary.load(fromShardDirectory: dir) } catch { throw mismatch("\(error)") }
            guard summary.name == shard.name, summary.records == shard.records,
                  shard.bytes.map({ $0 == summary.bytes }) ?? true else {
                throw mismatch("its shard-summary.json describes \(summary.name) with \(summary.records) records, "
                               + "\(summary.bytes) bytes (a copy of another shard?)")
            }
            if summary.firstSourceID != shard.firstSourceID && shard.firstSourceID != nil {
                throw mismatch("its shard-summary.json starts at \(summary.firstSourceID ?? "?"), the manifest says \(shard.firstSourceID ?? "?")")
            }
        }
        return env
    }

    /// Nil when records 0 and n-1 carry the source ids the manifest lists (a record that does not
    /// decode is damage, counted when read, and proves nothing either way); else the mismatch.
    static func identityProblem(_ env: LMDBEnvironment, first: String?, last: String?, records: Int) -> String? {
        guard records > 0 else { return nil }
        for (key, expected) in [(0, first), (records - 1, last)] {
            guard let expected else { continue }
            let stored = try? env.read { txn in
                try txn.withValue(forKey: LMDBKey.uint64(UInt64(key))) { try? DatasetRecord.decodeAny($0).sourceID }
            }
            if let id = stored ?? nil, id != expected {
                return "record \(key) comes from \(id), the manifest says \(expected) (a copy of another shard?)"
            }
        }
        return nil
    }
}

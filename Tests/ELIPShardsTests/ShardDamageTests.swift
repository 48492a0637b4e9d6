import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// Issue 15, classes 1 and 10: damaged shards (truncated data.mdb, a flipped value-size field) are
/// counted skips or clear errors, never a signal; the loader cross-checks the manifest and refuses
/// mismatches (shard_count, a missing entry, too few records, an unknown format_version, a shard
/// replaced by a copy of another). Plus the fuzz test of the LMDB record reader and the decoders.
final class ShardDamageTests: TemporaryFoldersTestCase {

    /// `images` small scenes built into `shards` shards by the real builder.
    func builtDataset(images: Int = 24, shards: Int = 2, size: Int = 40) throws -> String {
        let root = try temporary("damage-in")
        var entries: [(image: String, caption: String)] = []
        for i in 0..<images {
            try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: size), "\(root)/img/\(i).jpg")
            entries.append(("img/\(i).jpg", "a scene number \(i) with shapes"))
        }
        try DatasetFixtures.write(DatasetFixtures.annotation(entries), "\(root)/train.json")
        let out = try temporary("damage-out")
        _ = try DatasetFixtures.build(DatasetFixtures.options(out, shards: shards, annotations: ["\(root)/train.json"],
                                                              root: root, imageSize: size))
        return out
    }

    func tokenizer() throws -> BertTokenizer {
        try BertTokenizer(vocabulary: Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "scene", "number",
                                                          "with", "shapes"] + (0..<30).map(String.init), source: "damage-tests"))
    }

    func loader(_ dir: String, strict: Bool = false, batch: Int = 4) throws -> ShardLoader {
        var o = ShardLoader.Options.pretrain(imageSize: 16)
        o.workerThreads = 0
        o.strict = strict
        return try ShardLoader(directory: dir, rank: 0, worldSize: 1, batchSize: batch, seed: 1, tokenizer: try tokenizer(),
                               options: o)
    }

    static func dataPath(_ dir: String, _ shard: Int, of n: Int) -> String {
        "\(dir)/\(ShardNaming.name(shard, of: n))/data.mdb"
    }

    /// File offsets of leaf nodes holding `key` with an inline record value (found by the node
    /// layout: {size lo, size hi, flags, ksize = 8}, key, then the record's "ELR1" magic). Stale
    /// copies in pages freed by later transactions match too.
    static func inlineNodeOffsets(_ file: [UInt8], key: UInt64) -> [Int] {
        let k = LMDBKey.uint64(key)
        let magic = DatasetRecord.magic
        var found: [Int] = []
        var p = 16
        while p + 4 <= file.count {
            if file[p] == magic[0], Array(file[p..<(p + 4)]) == magic, Array(file[(p - 8)..<p]) == k,
               file[p - 10] == 8, file[p - 9] == 0 {
                found.append(p - 16)
            }
            p += 1
        }
        return found
    }

    func flipValueSize(_ path: String, key: UInt64) throws {
        var file = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let nodes = Self.inlineNodeOffsets(file, key: key)
        XCTAssertFalse(nodes.isEmpty, "no inline node for key \(key)")
        for node in nodes { file[node + 2] ^= 0x7F }      // high half of the value size: far beyond its page
        try Data(file).write(to: URL(fileURLWithPath: path))
    }

    // MARK: class 1: damaged shards

    func testTruncatedShardIsSkippedAndCountedOrAClearStrictError() throws {
        let dir = try builtDataset()
        let path = Self.dataPath(dir, 0, of: 2)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber).intValue
        XCTAssertEqual(truncate(path, off_t(size / 2)), 0)

        XCTAssertThrowsError(try LMDBStructure.verify(dataFile: path)) { e in
            XCTAssertTrue("\(e)".contains("truncated"), "\(e)")
        }
        // Non-strict: the shard's records are skipped, counted and warned about; training data
        // comes from the other shard.
        let l = try loader(dir)
        XCTAssertEqual(l.statistics.damagedShards, [ShardNaming.name(0, of: 2)])
        XCTAssertEqual(l.statistics.recordsInDamagedShards, 12)
        XCTAssertTrue(l.warnings.contains { $0.contains("truncated") && $0.contains("12 records will be skipped") }, "\(l.warnings)")
        for i in 0..<l.batchesPerEpoch {
            let b = try l.batch(epoch: 0, index: i)
            XCTAssertTrue(b.records.allSatisfy { $0.shard == 1 })
        }
        XCTAssertGreaterThan(l.statistics.badRecords.count, 0)
        // Strict: a clear error naming the shard.
        XCTAssertThrowsError(try loader(dir, strict: true)) { e in
            guard case let LoaderError.shard(name, message) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(name, ShardNaming.name(0, of: 2))
            XCTAssertTrue(message.contains("truncated"), message)
        }
        // inspect-dataset's samples and verification: errors, not signals.
        let m = try DatasetManifest.load(fromDirectory: dir)
        XCTAssertThrowsError(try DatasetInspector.samples(directory: dir, manifest: m, count: 24))
        XCTAssertFalse(try DatasetInspector.inspect(directory: dir, verify: true).isValid)
    }

    func testFlippedValueSizeIsASkippedRecordOrAClearStrictError() throws {
        let dir = try builtDataset()
        let path = Self.dataPath(dir, 0, of: 2)
        try flipValueSize(path, key: 3)
        let report = try LMDBStructure.verify(dataFile: path)
        XCTAssertEqual(report.damagedValues.keys.map { LMDBKey.uint64(decoding: $0) }, [3])

        // Reading the key is refused instead of copying memory beyond the page.
        let env = try LMDBEnvironment(path: (path as NSString).deletingLastPathComponent, readOnly: true, verifyStructure: true)
        XCTAssertThrowsError(try env.read { try $0.get(UInt64(3)) }) { e in
            XCTAssertTrue((e as? LMDBError)?.isDamage == true, "\(e)")
        }
        XCTAssertNotNil(try env.read { try $0.get(UInt64(4)) })
        XCTAssertThrowsError(try env.read { txn in try txn.forEach { _, _ in true } })

        let l = try loader(dir)
        XCTAssertTrue(l.warnings.contains { $0.contains("1 damaged record(s) (keys 3)") && $0.contains("skipped") }, "\(l.warnings)")
        var delivered: [RecordID] = []
        for i in 0..<l.batchesPerEpoch { delivered += try l.batch(epoch: 0, index: i).records }
        XCTAssertFalse(delivered.contains(RecordID(shard: 0, key: 3)))
        let bad = l.statistics.badRecords
        XCTAssertEqual(bad.map(\.record), [RecordID(shard: 0, key: 3)])
        XCTAssertTrue(bad.first?.reason.contains("damaged value") == true, "\(bad)")

        let strict = try loader(dir, strict: true)
        XCTAssertThrowsError(try (0..<strict.batchesPerEpoch).forEach { _ = try strict.batch(epoch: 0, index: $0) }) { e in
            guard case let LoaderError.badRecord(shard, key, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(shard, ShardNaming.name(0, of: 2))
            XCTAssertEqual(key, 3)
        }
        let result = try DatasetInspector.inspect(directory: dir, verify: true)
        XCTAssertFalse(result.isValid)
    }

    // MARK: class 10: the loader cross-checks the manifest

    func editManifest(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = "\(dir)/manifest.json"
        var top = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&top)
        try JSONSerialization.data(withJSONObject: top).write(to: URL(fileURLWithPath: path))
    }

    func assertRefused(_ dir: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try loader(dir), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains(expected), "\(e)", file: file, line: line)
        }
    }

    func testLoaderRefusesManifestMismatches() throws {
        let dir = try builtDataset(shards: 4)
        XCTAssertEqual(try loader(dir).listing.totalRecords, 24)     // the untouched dataset loads
        let backup = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/manifest.json"))
        func restore() throws { try backup.write(to: URL(fileURLWithPath: "\(dir)/manifest.json")) }

        try editManifest(dir) { $0["shard_count"] = 3 }
        assertRefused(dir, "shard_count is 3 but 4 shards are listed")
        try restore()
        try editManifest(dir) { top in               // a missing entry (shard_count and total edited to match)
            var shards = top["shards"] as! [[String: Any]]
            shards.remove(at: 2)
            top["shards"] = shards
            top["shard_count"] = 3
            top["total_records"] = shards.reduce(0) { $0 + ($1["records"] as! Int) }
        }
        assertRefused(dir, "a shard entry is missing")
        try restore()
        try editManifest(dir) { top in
            var shards = top["shards"] as! [[String: Any]]
            shards[1]["records"] = 2
            top["shards"] = shards
            top["total_records"] = (top["total_records"] as! Int) - 4
        }
        assertRefused(dir, "holds 6 records but the manifest lists 2")
        try restore()
        try editManifest(dir) { $0["format_version"] = 99 }
        assertRefused(dir, "format_version 99")
        try restore()

        // Shard 1 replaced by a copy of shard 2 (whole directory, then data.mdb alone).
        let fm = FileManager.default
        let s1 = "\(dir)/\(ShardNaming.name(1, of: 4))", s2 = "\(dir)/\(ShardNaming.name(2, of: 4))"
        let saved = try temporary("saved-shard")
        try fm.copyItem(atPath: s1, toPath: "\(saved)/s1")
        try fm.removeItem(atPath: s1)
        try fm.copyItem(atPath: s2, toPath: s1)
        assertRefused(dir, "a copy of another shard")
        try fm.removeItem(atPath: "\(s1)/data.mdb")
        try fm.copyItem(atPath: "\(s2)/data.mdb", toPath: "\(s1)/data.mdb")
        try fm.removeItem(atPath: "\(s1)/shard-summary.json")
        try fm.copyItem(atPath: "\(saved)/s1/shard-summary.json", toPath: "\(s1)/shard-summary.json")
        XCTAssertThrowsError(try loader(dir)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains(ShardNaming.name(1, of: 4)) && (text.contains("bytes") || text.contains("copy of another")), text)
        }
        XCTAssertFalse(try DatasetInspector.inspect(directory: dir, verify: false).isValid)
    }

    // MARK: fuzz: LMDB record reader and image decoders

    /// Random byte flips and truncations of a shard's data.mdb and of JPEG/PNG files, a few
    /// thousand cases in a bounded time: every outcome is a value or a thrown error (a signal
    /// would kill the test process).
    func testFuzzedShardsAndImagesNeverCrash() throws {
        let seed = ProcessInfo.processInfo.environment["ELIP_FUZZ_SEED"].flatMap(UInt64.init) ?? 15
        var g = SplitMix(seed: seed)
        print("fuzz seed \(seed) (set ELIP_FUZZ_SEED to replay)")
        // Small records (values inside leaf pages) and large ones (values on overflow pages).
        var originals: [[UInt8]] = []
        for size in [24, 96] {
            let dir = try builtDataset(images: 8, shards: 1, size: size)
            originals.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(ShardNaming.name(0, of: 1))/data.mdb"))))
        }
        let work = try temporary("fuzz")
        let decoder = try JPEGDecoder()
        let jpeg = try DatasetFixtures.sceneJPEG(3, size: 32)
        let png = try DatasetFixtures.png(width: 12, height: 9)
        let deadline = Date().addingTimeInterval(6)
        var cases = 0, opened = 0, readable = 0, decoded = 0
        // Small pixel limits: a flipped frame header must not turn a case into a huge decode.
        let jpegOptions = JPEGDecodeOptions(maxPixels: 1 << 16), pngOptions = PNGDecodeOptions(maxPixels: 1 << 16)
        while cases < 3000 && Date() < deadline {
            cases += 1
            var bytes = originals[cases % 2]
            Self.mutate(&bytes, &g)
            let env = "\(work)/e\(cases % 4)"
            if cases <= 4 { try FileManager.default.createDirectory(atPath: env, withIntermediateDirectories: true) }
            // Overwrite in place, then cut: O_TRUNC costs milliseconds per case on some file systems.
            let fd = open("\(env)/data.mdb", O_RDWR | O_CREAT, 0o644)
            XCTAssertGreaterThanOrEqual(fd, 0)
            XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }, bytes.count)
            XCTAssertEqual(ftruncate(fd, off_t(bytes.count)), 0)
            close(fd)
            if let e = try? LMDBEnvironment(path: env, readOnly: true, verifyStructure: true) {
                opened += 1
                for k in 0..<10 {
                    if let v = try? e.read({ try $0.get(UInt64(k)) }) ?? nil, let r = try? DatasetRecord.decode(v) {
                        readable += 1
                        if (try? decoder.decode(r.jpeg, options: jpegOptions)) != nil { decoded += 1 }
                    }
                }
                _ = try? e.read { txn in try txn.forEach { _, v in _ = try? DatasetRecord.decode(v); return true } }
            }
            var j = jpeg
            Self.mutate(&j, &g)
            _ = try? decoder.decode(j, options: jpegOptions)
            // A failure must not leave the decoder unusable (the loader reuses one per worker).
            if (try? decoder.decode(jpeg, options: jpegOptions)) == nil {
                XCTFail("the JPEG decoder no longer decodes a valid image after case \(cases)")
                break
            }
            var p = png
            Self.mutate(&p, &g)
            _ = try? PNG.decode(p, options: pngOptions)
        }
        print("fuzz: \(cases) cases, \(opened) shards opened, \(readable) records read, \(decoded) images decoded")
        XCTAssertGreaterThan(cases, 200)
        XCTAssertGreaterThan(readable, 0)
        XCTAssertEqual(decoded, readable, "every record that passes its CRC holds a decodable image")
    }

    static func mutate(_ b: inout [UInt8], _ g: inout SplitMix) {
        guard !b.isEmpty else { return }
        switch g.below(4) {
        case 0: b.removeLast(g.below(b.count))                                  // truncation
        case 1: for _ in 0..<(1 + g.below(4)) { b[g.below(b.count)] ^= UInt8(1 + g.below(255)) }
        case 2:                                                                 // flips in the first pages (meta, tree)
            for _ in 0..<(1 + g.below(3)) { b[g.below(min(b.count, 3 * 4096))] ^= UInt8(1 << g.below(8)) }
        default:                                                                // flips near node headers: size fields
            let i = g.below(b.count)
            b[i] = UInt8(g.below(256))
            if g.below(2) == 0 { b.removeLast(g.below(b.count)) }
        }
    }
}

/// The fuzz test's draws from ELIPShards' seeded SplitMix64.
extension SplitMix {
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}



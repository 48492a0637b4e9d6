import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// The shard loader on small corpora written here (LMDB + DatasetRecord + JPEG, no builder).
final class LoaderTests: XCTestCase {
    static let vocabularyTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "shard", "key", "alt", "a", "photo",
                                   "of", "record", "red", "circle"] + (0..<10).map(String.init)

    func tokenizer() throws -> BertTokenizer {
        try BertTokenizer(vocabulary: Vocabulary(tokens: Self.vocabularyTokens, source: "loader-tests"))
    }

    var tempDirs: [URL] = []

    override func tearDown() {
        for d in tempDirs { try? FileManager.default.removeItem(at: d) }
        tempDirs = []
        super.tearDown()
    }

    static func shardName(_ s: Int, _ n: Int) -> String { String(format: "shard-%05d-of-%05d", s, n) }

    static func captions(shard s: Int, key k: Int) -> [String] {
        k % 3 == 0 ? ["A photo of shard \(s) key \(k)."] : ["Shard \(s), key \(k)!", "alt record \(k) of shard \(s)", "a red circle \(k)"]
    }

    /// Writes shards with `counts[s]` records each (images `size` px, distinct per record) and a
    /// manifest with extra fields the loader must ignore.
    func makeCorpus(_ counts: [Int], size: Int = 20) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-loader-\(UUID().uuidString)")
        tempDirs.append(dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var entries: [String] = []
        for (s, n) in counts.enumerated() {
            let name = Self.shardName(s, counts.count)
            let env = try LMDBEnvironment(path: dir.appendingPathComponent(name).path, readOnly: false, mapSize: 64 << 20)
            try env.write { txn in
                for k in 0..<n {
                    let w = size + (k % 3) * 4, h = size + (s % 2) * 6
                    var px: [UInt8] = []
                    for y in 0..<h { for x in 0..<w { px += [UInt8((x * 9 + s * 50) % 256), UInt8((y * 11 + k * 17) % 256), UInt8((x * y + k) % 256)] } }
                    let jpeg = try JPEG.encode(try RGBImage(width: w, height: h, pixels: px), quality: 90)
                    let rec = DatasetRecord(captions: Self.captions(shard: s, key: k), sourceID: "test:\(s):\(k)", jpeg: jpeg)
                    try txn.put(UInt64(k), rec.encoded())
                }
            }
            // No "bytes": these tests rewrite records after the manifest is written.
            entries.append("{\"name\": \"\(name)\", \"records\": \(n), \"checksum\": \"x\"}")
        }
        let manifest = "{\"format\": \"\(DatasetManifest.formatName)\", \"total_records\": \(counts.reduce(0, +)), \"shards\": [\(entries.joined(separator: ", "))], \"sources\": []}"
        try manifest.write(to: dir.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        return dir
    }

    func options(size: Int = 16, threads: Int = 0, depth: Int = 2, strict: Bool = false) -> ShardLoader.Options {
        var o = ShardLoader.Options.pretrain(imageSize: size)
        o.workerThreads = threads
        o.prefetchDepth = depth
        o.strict = strict
        return o
    }

    func loader(_ dir: URL, rank: Int = 0, world: Int = 1, batch: Int = 4, seed: UInt64 = 7,
                _ o: ShardLoader.Options? = nil) throws -> ShardLoader {
        try ShardLoader(directory: dir.path, rank: rank, worldSize: world, batchSize: batch, seed: seed,
                        tokenizer: try tokenizer(), options: o ?? options())
    }

    // MARK: assignment

    func testAssignmentIsADisjointCompletePartition() throws {
        let layouts: [[Int]] = [[5, 7, 3], [10], [0, 4, 9, 1], [6, 6, 6, 6, 6, 6, 6], [3, 1]]
        for counts in layouts {
            let listing = try ShardListing(shards: counts.enumerated().map { .init(name: "s\($0.offset)", records: $0.element) })
            for world in [1, 2, 3, 5, 8] {
                var all: [RecordID] = []
                var perRank: [Int] = []
                for rank in 0..<world {
                    let a = try ShardAssignment(listing: listing, rank: rank, worldSize: world)
                    var mine: [RecordID] = []
                    for i in 0..<a.recordCount {
                        let r = try XCTUnwrap(a.record(at: i))
                        mine.append(RecordID(shard: r.shard, key: r.key))
                    }
                    XCTAssertNil(a.record(at: a.recordCount))
                    XCTAssertNil(a.record(at: -1))
                    if counts.count >= world {
                        // Whole shards, round robin.
                        XCTAssertTrue(mine.allSatisfy { $0.shard % world == rank }, "\(counts) world \(world)")
                    } else {
                        // A contiguous slice of every shard.
                        for s in counts.indices {
                            let keys = mine.filter { $0.shard == s }.map(\.key)
                            if let lo = keys.min(), let hi = keys.max() { XCTAssertEqual(keys, Array(lo...hi)) }
                        }
                    }
                    XCTAssertEqual(a.recordsPerRank[rank], mine.count)
                    perRank.append(mine.count)
                    all += mine
                }
                let expected = counts.enumerated().flatMap { s, n in (0..<n).map { RecordID(shard: s, key: $0) } }
                XCTAssertEqual(all.count, expected.count, "\(counts) over \(world) ranks: overlap or loss")
                XCTAssertEqual(Set(all), Set(expected), "\(counts) over \(world) ranks")
                // Every rank computes the same batch count: the smallest rank's.
                for b in [1, 2, 3] {
                    let n = Set((0..<world).map { try! ShardAssignment(listing: listing, rank: $0, worldSize: world).batchesPerEpoch(batchSize: b) })
                    XCTAssertEqual(n, [perRank.min()! / b])
                }
            }
        }
        let listing = try ShardListing(shards: [.init(name: "a", records: 1)])
        XCTAssertThrowsError(try ShardAssignment(listing: listing, rank: 2, worldSize: 2))
        XCTAssertThrowsError(try ShardAssignment(listing: listing, rank: 0, worldSize: 0))
    }

    func testManifestReaderToleratesExtraFieldsAndRejectsBadInput() throws {
        let json = #"{"format": "elip-lmdb-image-text", "shards": [{"name": "shard-00000-of-00002", "records": 5, "bytes": 1, "extra": {"a": [1]}}, {"name": "b", "records": 0}], "total_records": 5}"#
        let l = try ShardListing.parse(Data(json.utf8))
        XCTAssertEqual(l.shards, [.init(name: "shard-00000-of-00002", records: 5, bytes: 1), .init(name: "b", records: 0)])
        XCTAssertEqual(l.totalRecords, 5)
        for bad in [#"{"shards": [{"name": "../x", "records": 1}]}"#, #"{"shards": [{"name": "a"}]}"#,
                    #"{"shards": [{"name": "a", "records": -1}]}"#, #"{"shard": []}"#, "not json",
                    #"{"shards": [{"name": "a", "records": 1}, {"name": "a", "records": 2}]}"#] {
            XCTAssertThrowsError(try ShardListing.parse(Data(bad.utf8)), bad) { XCTAssertTrue($0 is LoaderError) }
        }
        XCTAssertThrowsError(try ShardListing.read(directory: "/nonexistent-elip-dir")) { e in
            guard case LoaderError.manifest = e else { return XCTFail("\(e)") }
        }
    }

    // MARK: loader

    func testRanksGetEqualBatchCountsAndReadOnlyTheirShards() throws {
        let dir = try makeCorpus([7, 5, 9])
        // Two ranks: rank 0 owns shards 0 and 2 (16 records), rank 1 shard 1 (5): both run 2 batches of 2.
        let r0 = try loader(dir, rank: 0, world: 2, batch: 2)
        let r1 = try loader(dir, rank: 1, world: 2, batch: 2)
        XCTAssertEqual(r0.batchesPerEpoch, 2)
        XCTAssertEqual(r1.batchesPerEpoch, 2)
        XCTAssertEqual(Set(r0.core.environments.keys), [0, 2])
        XCTAssertEqual(Set(r1.core.environments.keys), [1])
        XCTAssertEqual(r0.summary, r1.summary)
        var seen = Set<RecordID>()
        for (rank, l) in [r0, r1].enumerated() {
            for e in 0..<2 {
                for i in 0..<l.batchesPerEpoch {
                    let b = try l.batch(epoch: e, index: i)
                    XCTAssertEqual(b.batchSize, 2)
                    XCTAssertEqual(b.images.count, 2 * 3 * 16 * 16)
                    XCTAssertTrue(b.records.allSatisfy { $0.shard % 2 == rank })
                    if e == 0 { for r in b.records { XCTAssertTrue(seen.insert(r).inserted, "record \(r) twice") } }
                }
            }
        }
        // A rank never touches other ranks' shards: rank 1 still works with shards 0 and 2 gone.
        try FileManager.default.removeItem(at: dir.appendingPathComponent(Self.shardName(0, 3)))
        try FileManager.default.removeItem(at: dir.appendingPathComponent(Self.shardName(2, 3)))
        let again = try loader(dir, rank: 1, world: 2, batch: 2)
        XCTAssertEqual(try again.batch(epoch: 0, index: 1), try r1.batch(epoch: 0, index: 1))
        XCTAssertThrowsError(try loader(dir, rank: 0, world: 2, batch: 2)) { e in
            guard case let LoaderError.shard(name, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(name, Self.shardName(0, 3))
        }
    }

    func testMoreRanksThanShardsSplitsEveryShard() throws {
        let dir = try makeCorpus([6, 4])
        var all: [RecordID] = []
        for rank in 0..<3 {
            let l = try loader(dir, rank: rank, world: 3, batch: 1)
            XCTAssertEqual(l.batchesPerEpoch, 3)                  // ranks own 3, 3 and 4 records
            XCTAssertEqual(Set(l.core.environments.keys), [0, 1])
            for i in 0..<3 { all += try l.batch(epoch: 0, index: i).records }
        }
        XCTAssertEqual(all.count, Set(all).count)
    }

    func testShuffleDiffersAcrossEpochsAndIsReproducible() throws {
        let dir = try makeCorpus([20, 20])
        let a = try loader(dir, batch: 4), b = try loader(dir, batch: 4), other = try loader(dir, batch: 4, seed: 8)
        let e0 = a.core.recordOrder(epoch: 0), e1 = a.core.recordOrder(epoch: 1)
        XCTAssertNotEqual(e0, e1)
        XCTAssertEqual(Set(e0), Set(e1))
        XCTAssertEqual(Set(e0).count, 40)
        XCTAssertEqual(e0, b.core.recordOrder(epoch: 0))
        XCTAssertEqual(e1, b.core.recordOrder(epoch: 1))
        XCTAssertNotEqual(e0, other.core.recordOrder(epoch: 0))
        // Batches follow the order.
        let batch = try a.batch(epoch: 1, index: 2)
        XCTAssertEqual(batch.records, Array(e1[8..<12]))
        XCTAssertNotEqual(try a.batch(epoch: 0, index: 0).records, try a.batch(epoch: 1, index: 0).records)
    }

    func testResumeEqualityWithPrefetchAndAnyThreadCount() throws {
        let dir = try makeCorpus([9, 8, 7])
        let batch = 3
        // Sequential with prefetch (1 thread), over an epoch boundary.
        let seq = try loader(dir, batch: batch, options(threads: 1, depth: 2))
        let n = seq.batchesPerEpoch
        XCTAssertEqual(n, 8)
        var sequential: [[Int]: LoadedBatch] = [:]
        for e in 0..<2 { for i in 0..<n { sequential[[e, i]] = try seq.batch(epoch: e, index: i) } }
        // Direct random access with 3 threads, and inline without threads: bitwise the same.
        let direct = try loader(dir, batch: batch, options(threads: 3, depth: 3))
        let inline = try loader(dir, batch: batch, options(threads: 0))
        for (e, i) in [(1, 5), (0, 3), (1, 0), (0, 7), (0, 0), (1, 7), (0, 1)] {
            let expected = try XCTUnwrap(sequential[[e, i]])
            let d = try direct.batch(epoch: e, index: i)
            XCTAssertEqual(d, expected, "epoch \(e) batch \(i)")
            XCTAssertEqual(d.images.map(\.bitPattern), expected.images.map(\.bitPattern))
            XCTAssertEqual(try inline.batch(epoch: e, index: i), expected)
        }
        // A fresh loader resumed in the middle of epoch 1 continues identically.
        let resumed = try loader(dir, batch: batch, options(threads: 2, depth: 1))
        for i in 4..<n { XCTAssertEqual(try resumed.batch(epoch: 1, index: i), sequential[[1, i]]) }
        XCTAssertThrowsError(try seq.batch(epoch: 0, index: n)) { e in
            XCTAssertEqual(e as? LoaderError, .indexOutOfRange(epoch: 0, index: n, batchesPerEpoch: n))
        }
        XCTAssertThrowsError(try seq.batch(epoch: -1, index: 0))
    }

    func testPrefetchedNextBatchIsReadyWhenAsked() throws {
        let dir = try makeCorpus([16])
        let l = try loader(dir, batch: 2, options(threads: 2, depth: 2))
        _ = try l.batch(epoch: 0, index: 0)
        // Wait for the two batches ahead to be computed in the background.
        let deadline = Date().addingTimeInterval(20)
        while l.statistics.samplesComputed < 6 && Date() < deadline { usleep(2000) }
        // A sample is counted before its batch is marked complete; on a loaded machine the last
        // one can still be on its way (seen in CI-like runs), so give it a moment.
        usleep(300_000)
        let t0 = Date()
        _ = try l.batch(epoch: 0, index: 1)
        let waited = Date().timeIntervalSince(t0)
        XCTAssertEqual(l.statistics.prefetchHits, 1)
        XCTAssertLessThan(waited, 1, "a prefetched batch is handed over, not computed")
        l.close()
        XCTAssertThrowsError(try l.batch(epoch: 0, index: 2)) { XCTAssertEqual($0 as? LoaderError, .closed) }
    }

    func testCaptionsAreCleanedChosenAndTokenised() throws {
        let dir = try makeCorpus([12])
        let l = try loader(dir, batch: 4)
        var chosen = Set<String>()
        for e in 0..<4 {
            for i in 0..<3 {
                let b = try l.batch(epoch: e, index: i)
                XCTAssertEqual(b.ids.count, 4 * b.length)
                XCTAssertEqual(b.mask.count, 4 * b.length)
                for (row, r) in b.records.enumerated() {
                    let cleaned = Self.captions(shard: r.shard, key: r.key).map { preCaption($0, maxWords: 30) }
                    XCTAssertTrue(cleaned.contains(b.captions[row]), b.captions[row])
                    chosen.insert(b.captions[row])
                    let tokens = try tokenizer().encode(b.captions[row], framing: .albef, maxLength: 25)
                    let ids = Array(b.ids[(row * b.length)..<((row + 1) * b.length)])
                    XCTAssertEqual(Array(ids.prefix(tokens.count)), tokens)
                    XCTAssertTrue(ids.dropFirst(tokens.count).allSatisfy { $0 == 0 })
                    XCTAssertEqual(b.mask[(row * b.length)..<((row + 1) * b.length)].reduce(0, +), Int32(tokens.count))
                    XCTAssertEqual(ids.first, 2)                 // [CLS] of the test vocabulary, no [SEP]
                    XCTAssertFalse(ids.contains(3))
                }
                var longest = 0
                for row in 0..<4 {
                    let m: ArraySlice<Int32> = b.mask[(row * b.length)..<((row + 1) * b.length)]
                    longest = max(longest, Int(m.reduce(0, +)))
                }
                XCTAssertEqual(b.length, longest)
            }
        }
        // Records with several captions show more than one of them over the epochs.
        XCTAssertTrue(chosen.contains { $0.hasPrefix("alt record") })
        XCTAssertTrue(chosen.contains { $0.hasPrefix("a red circle") })
        XCTAssertEqual(preCaption("Shard 1, key 2!"), "shard 1 key 2")
    }

    /// Flips one byte inside the stored value of (shard, key).
    func corrupt(_ dir: URL, shard: String, key: Int, at offset: Int = 40) throws {
        let env = try LMDBEnvironment(path: dir.appendingPathComponent(shard).path, readOnly: false)
        try env.write { txn in
            var v = try XCTUnwrap(try txn.get(UInt64(key)))
            v[offset] ^= 0x20
            try txn.put(UInt64(key), v)
        }
    }

    func testCorruptRecordIsSkippedAndCountedOrFailsInStrictMode() throws {
        let dir = try makeCorpus([8, 8])
        let shard0 = Self.shardName(0, 2)
        try corrupt(dir, shard: shard0, key: 3)
        // A record with a valid CRC whose image is not a JPEG.
        let env = try LMDBEnvironment(path: dir.appendingPathComponent(Self.shardName(1, 2)).path, readOnly: false)
        try env.write { txn in
            try txn.put(UInt64(5), DatasetRecord(captions: ["a photo"], sourceID: "x", jpeg: [0xFF, 0xD8, 0xFF, 1, 2, 3]).encoded())
        }
        for threads in [0, 2] {
            let l = try loader(dir, batch: 4, options(threads: threads))
            XCTAssertEqual(l.batchesPerEpoch, 4)
            var replaced = 0
            for i in 0..<4 {
                let b = try l.batch(epoch: 0, index: i)
                XCTAssertEqual(b.batchSize, 4)
                XCTAssertEqual(b.records.count, 4)
                XCTAssertFalse(b.records.contains(RecordID(shard: 0, key: 3)))
                XCTAssertFalse(b.records.contains(RecordID(shard: 1, key: 5)))
                replaced += b.replacedSamples
            }
            XCTAssertEqual(replaced, 2)
            let bad = l.statistics.badRecords
            XCTAssertEqual(bad.map(\.record), [RecordID(shard: 0, key: 3), RecordID(shard: 1, key: 5)])
            XCTAssertEqual(bad.first?.shardName, shard0)
            XCTAssertTrue(bad[0].reason.contains("CRC"), bad[0].reason)
            XCTAssertTrue(bad[1].reason.contains("image"), bad[1].reason)
        }
        let badIDs: Set<RecordID> = [RecordID(shard: 0, key: 3), RecordID(shard: 1, key: 5)]
        var strictFailures = 0
        for threads in [0, 3] {
            let strict = try loader(dir, batch: 4, options(threads: threads, strict: true))
            let order = strict.core.recordOrder(epoch: 0)
            for i in 0..<4 {
                // The batch fails exactly when one of its scheduled records is bad, naming the first.
                let scheduled = Array(order[(i * 4)..<((i + 1) * 4)])
                if let first = scheduled.first(where: { badIDs.contains($0) }) {
                    XCTAssertThrowsError(try strict.batch(epoch: 0, index: i)) { e in
                        guard case let LoaderError.badRecord(shard, key, reason) = e else { return XCTFail("\(e)") }
                        XCTAssertEqual(shard, Self.shardName(first.shard, 2))
                        XCTAssertEqual(key, first.key)
                        XCTAssertFalse(reason.isEmpty)
                        XCTAssertTrue("\(e)".contains("shard \(shard), key \(key)"), "\(e)")
                    }
                    strictFailures += 1
                } else {
                    XCTAssertEqual(try strict.batch(epoch: 0, index: i).records, scheduled)
                }
            }
        }
        XCTAssertGreaterThan(strictFailures, 0)
    }

    func testAllRecordsBadIsAnErrorNotAHang() throws {
        let dir = try makeCorpus([4])
        for k in 0..<4 { try corrupt(dir, shard: Self.shardName(0, 1), key: k) }
        let l = try loader(dir, batch: 2, options(threads: 2))
        XCTAssertThrowsError(try l.batch(epoch: 0, index: 0)) { e in
            guard case LoaderError.tooManyBadRecords = e else { return XCTFail("\(e)") }
        }
    }

    func testInvalidConfigurationsAreTypedErrors() throws {
        let dir = try makeCorpus([3, 2])
        XCTAssertThrowsError(try loader(dir, rank: 0, world: 2, batch: 3)) { e in
            XCTAssertEqual(e as? LoaderError, .tooFewRecords(minRecordsPerRank: 2, batchSize: 3, worldSize: 2))
        }
        XCTAssertThrowsError(try loader(dir, batch: 0))
        XCTAssertThrowsError(try loader(dir, rank: 3, world: 2, batch: 1))
        XCTAssertThrowsError(try loader(dir, batch: 1, options(size: 0)))
        var o = options()
        o.workerThreads = -1
        XCTAssertThrowsError(try loader(dir, batch: 1, o))
        // Manifest lists more records than the shard holds.
        let listing = try ShardListing(shards: [.init(name: Self.shardName(0, 2), records: 9), .init(name: Self.shardName(1, 2), records: 2)])
        XCTAssertThrowsError(try ShardLoader(directory: dir.path, listing: listing, rank: 0, worldSize: 1, batchSize: 1,
                                             seed: 0, tokenizer: try tokenizer(), options: options())) { e in
            guard case let LoaderError.shard(name, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(name, Self.shardName(0, 2))
        }
    }
}

import Foundation
import XCTest
@testable import ELIPShards

/// Deterministic value bytes for record `i` (variable length 1...300).
fileprivate func lmdbTestValue(_ i: Int) -> [UInt8] {
    let n = 1 + (i &* 7919) % 300
    return (0..<n).map { UInt8(truncatingIfNeeded: i &* 31 &+ $0 &* 7) }
}

final class LMDBTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("elip-lmdb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testKeyHelpersSortNumerically() {
        XCTAssertEqual(LMDBKey.uint64(1), [0, 0, 0, 0, 0, 0, 0, 1])
        XCTAssertEqual(LMDBKey.uint64(0x0102_0304_0506_0708), [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(LMDBKey.uint64(decoding: LMDBKey.uint64(123_456_789)), 123_456_789)
        XCTAssertNil(LMDBKey.uint64(decoding: [1, 2, 3]))
        let values: [UInt64] = [0, 1, 255, 256, 65_535, 1 << 40, .max]
        let keys = values.map(LMDBKey.uint64)
        XCTAssertEqual(keys, keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    func testRoundTrip10kRecordsWithAppend() throws {
        let path = directory + "/db"
        let n = 10_000
        do {
            let env = try LMDBEnvironment(path: path, readOnly: false, mapSize: 64 << 20)
            try env.write { txn in
                for i in 0..<n {
                    try txn.put(UInt64(i), lmdbTestValue(i), flags: .append)
                }
            }
            XCTAssertEqual(try env.count(), n)
        }
        let env = try LMDBEnvironment(path: path, readOnly: true)
        try env.read { txn in
            XCTAssertEqual(try txn.count(), n)
            for i in stride(from: 0, to: n, by: 97) {
                XCTAssertEqual(try txn.get(UInt64(i)), lmdbTestValue(i))
            }
            XCTAssertNil(try txn.get(UInt64(n)))
            XCTAssertFalse(try txn.contains(LMDBKey.uint64(UInt64(n + 5))))
            // Zero-copy access.
            let len = try txn.withValue(forKey: LMDBKey.uint64(42)) { $0.count }
            XCTAssertEqual(len, lmdbTestValue(42).count)
            // Full scan in key order.
            var expected = 0
            try txn.forEach { k, v in
                XCTAssertEqual(LMDBKey.uint64(decoding: k), UInt64(expected))
                XCTAssertEqual(v, lmdbTestValue(expected))
                expected += 1
                return true
            }
            XCTAssertEqual(expected, n)
        }
    }

    func testAppendOutOfOrderIsAnError() throws {
        let env = try LMDBEnvironment(path: directory + "/db", readOnly: false, mapSize: 1 << 20)
        XCTAssertThrowsError(try env.write { txn in
            try txn.put(10, [1], flags: .append)
            try txn.put(5, [2], flags: .append)
        }) { error in
            XCTAssertTrue((error as? LMDBError)?.isKeyExists ?? false, "\(error)")
        }
        // The failed batch was aborted as a whole.
        XCTAssertEqual(try env.count(), 0)
        try env.write { try $0.put(1, [1]) }
        XCTAssertThrowsError(try env.write { try $0.put(1, [2], flags: .noOverwrite) }) { error in
            XCTAssertTrue((error as? LMDBError)?.isKeyExists ?? false)
        }
        try env.write { try $0.put(1, [3]) }     // plain put overwrites
        XCTAssertEqual(try env.read { try $0.get(1) }, [3])
    }

    func testMapGrowthFromTinyMap() throws {
        let path = directory + "/grow"
        let env = try LMDBEnvironment(path: path, readOnly: false, mapSize: 64 << 10)
        let initial = env.mapSize
        XCTAssertLessThanOrEqual(initial, 64 << 10)
        let value = [UInt8](repeating: 0xAB, count: 500)
        // Without growth the batch fails with MAP_FULL and nothing is written.
        XCTAssertThrowsError(try env.write { txn in
            for i in 0..<2_000 { try txn.put(UInt64(i), value, flags: .append) }
        }) { error in
            XCTAssertTrue((error as? LMDBError)?.isMapFull ?? false, "\(error)")
        }
        XCTAssertEqual(try env.count(), 0)
        // With growth it is retried after doubling until it fits (~1 MB of data).
        var attempts = 0
        for batch in 0..<3 {
            try env.writeWithGrowth { txn in
                attempts += 1
                for i in 0..<2_000 {
                    try txn.put(UInt64(batch * 2_000 + i), value, flags: .append)
                }
            }
        }
        XCTAssertGreaterThan(attempts, 3)
        XCTAssertGreaterThan(env.mapSize, 1 << 20)
        XCTAssertEqual(try env.count(), 6_000)
        try env.read { txn in
            XCTAssertEqual(try txn.get(5_999), value)
            XCTAssertEqual(try txn.get(0), value)
        }
        // Growth has a ceiling.
        XCTAssertThrowsError(try env.writeWithGrowth(maxMapSize: env.mapSize) { txn in
            for i in 0..<20_000 { try txn.put(UInt64(100_000 + i), value, flags: .append) }
        }) { error in
            XCTAssertTrue((error as? LMDBError)?.isMapFull ?? false)
        }
    }

    func testGrowthRefusedWhileReaderIsLive() throws {
        let env = try LMDBEnvironment(path: directory + "/busy", readOnly: false, mapSize: 64 << 10)
        let reader = try env.beginRead()
        XCTAssertThrowsError(try env.setMapSize(1 << 20)) { error in
            XCTAssertEqual((error as? LMDBError)?.code, Int32(EBUSY))
        }
        reader.reset()                       // a reset reader holds no snapshot
        XCTAssertNoThrow(try env.setMapSize(1 << 20))
        try env.write { try $0.put(7, [7]) }
        try reader.renew()
        XCTAssertEqual(try reader.get(7), [7])
        reader.end()
        XCTAssertThrowsError(try reader.get(7))  // ended transaction: error, not a crash
    }

    func testCursorOrderAndSeek() throws {
        let env = try LMDBEnvironment(path: directory + "/cur", readOnly: false, mapSize: 1 << 20)
        var keys = (0..<500).map { UInt64($0 * 3) }
        keys.shuffle()
        try env.write { txn in
            for k in keys { try txn.put(k, Array("v\(k)".utf8)) }
            try txn.put(LMDBKey.string("zzz"), [1])       // bytewise: 0x7A... sorts after 0x00...
        }
        try env.read { txn in
            let all = try txn.allKeys()
            XCTAssertEqual(all.count, 501)
            XCTAssertEqual(all, all.sorted { $0.lexicographicallyPrecedes($1) })
            let cursor = try txn.makeCursor()
            defer { cursor.close() }
            let first = try XCTUnwrap(try cursor.first())
            XCTAssertEqual(LMDBKey.uint64(decoding: first.key), 0)
            // Seek to the first key >= 100: 102.
            let s = try XCTUnwrap(try cursor.seek(atLeast: LMDBKey.uint64(100)))
            XCTAssertEqual(LMDBKey.uint64(decoding: s.key), 102)
            XCTAssertEqual(s.value, Array("v102".utf8))
            XCTAssertEqual(LMDBKey.uint64(decoding: try XCTUnwrap(try cursor.next()).key), 105)
            XCTAssertEqual(LMDBKey.uint64(decoding: try XCTUnwrap(try cursor.previous()).key), 102)
            XCTAssertEqual(try XCTUnwrap(try cursor.last()).key, LMDBKey.string("zzz"))
            XCTAssertNil(try cursor.next())
            XCTAssertNil(try cursor.seek(atLeast: LMDBKey.string("zzzz")))
            // forEach from a start key, stopping early.
            var seen: [UInt64] = []
            try txn.forEach(from: LMDBKey.uint64(1_000)) { k, _ in
                seen.append(LMDBKey.uint64(decoding: k) ?? 0)
                return seen.count < 3
            }
            XCTAssertEqual(seen, [1_002, 1_005, 1_008])
        }
    }

    func testReadOnlyReopenAndWriteRefused() throws {
        let path = directory + "/ro"
        do {
            let env = try LMDBEnvironment(path: path, readOnly: false, mapSize: 1 << 20)
            try env.write { txn in
                for i in 0..<100 { try txn.put(UInt64(i), lmdbTestValue(i), flags: .append) }
            }
        }
        let ro = try LMDBEnvironment(path: path, readOnly: true)
        XCTAssertEqual(try ro.count(), 100)
        XCTAssertEqual(try ro.read { try $0.get(99) }, lmdbTestValue(99))
        XCTAssertThrowsError(try ro.beginWrite())
        XCTAssertThrowsError(try ro.write { try $0.put(1, [1]) })
        XCTAssertGreaterThan(try ro.info().pageSize, 0)
    }

    func testMissingPathIsAnErrorWithPath() throws {
        let path = directory + "/does/not/exist"
        XCTAssertThrowsError(try LMDBEnvironment(path: path, readOnly: true)) { error in
            guard let e = error as? LMDBError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.code, ENOENT)
            XCTAssertEqual(e.path, path)
            XCTAssertTrue(e.description.contains(path))
            XCTAssertTrue(e.description.contains("No such file"), e.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))   // read-only never creates
        // A file that is not an LMDB environment.
        let junk = directory + "/junk.mdb"
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: junk))
        XCTAssertThrowsError(try LMDBEnvironment(path: junk, readOnly: true, noSubdir: true)) { error in
            XCTAssertNotNil(error as? LMDBError)
        }
    }

    func testUncommittedWriteIsAbortedOnDeinit() throws {
        let env = try LMDBEnvironment(path: directory + "/abort", readOnly: false, mapSize: 1 << 20)
        do {
            let txn = try env.beginWrite()
            try txn.put(1, [1, 2, 3])
            XCTAssertEqual(try txn.get(1), [1, 2, 3])    // visible inside its own transaction
            XCTAssertEqual(try txn.count(), 1)
        }   // dropped without commit
        XCTAssertEqual(try env.count(), 0)
        // Body throwing aborts too.
        struct Boom: Error {}
        XCTAssertThrowsError(try env.write { txn in
            try txn.put(2, [2])
            throw Boom()
        })
        XCTAssertEqual(try env.count(), 0)
        // Explicit commit / abort; using a finished transaction is an error.
        let t = try env.beginWrite()
        try t.put(3, [3])
        XCTAssertTrue(try t.delete(LMDBKey.uint64(3)))
        XCTAssertFalse(try t.delete(LMDBKey.uint64(3)))
        try t.put(4, [4])
        try t.commit()
        XCTAssertThrowsError(try t.put(5, [5]))
        XCTAssertThrowsError(try t.commit())
        t.abort()                                      // no-op
        XCTAssertEqual(try env.read { try $0.get(4) }, [4])
        XCTAssertThrowsError(try env.write { try $0.put([UInt8](), [1]) })   // empty key
    }

    func testNoSubdirEnvironment() throws {
        let path = directory + "/nested/shard-000.lmdb"
        do {
            let env = try LMDBEnvironment(path: path, readOnly: false, mapSize: 1 << 20, noSubdir: true)
            try env.write { try $0.put(1, [9]) }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path + "-lock"))
        let ro = try LMDBEnvironment(path: path, readOnly: true, noSubdir: true)
        XCTAssertEqual(try ro.read { try $0.get(1) }, [9])
    }

    func testConcurrentReaders() throws {
        let path = directory + "/mt"
        do {
            let env = try LMDBEnvironment(path: path, readOnly: false, mapSize: 16 << 20)
            try env.write { txn in
                for i in 0..<2_000 { try txn.put(UInt64(i), lmdbTestValue(i), flags: .append) }
            }
        }
        let env = try LMDBEnvironment(path: path, readOnly: true, maxReaders: 32)
        let threads = 8
        let lock = NSLock()
        var mismatches = 0
        var errors = 0
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            do {
                // Each worker owns its transaction; reset/renew between "batches".
                let txn = try env.beginRead()
                for batch in 0..<5 {
                    for j in 0..<200 {
                        let i = (t * 997 + batch * 211 + j * 13) % 2_000
                        if try txn.get(UInt64(i)) != lmdbTestValue(i) {
                            lock.lock(); mismatches += 1; lock.unlock()
                        }
                    }
                    txn.reset()
                    try txn.renew()
                }
                txn.end()
            } catch {
                lock.lock(); errors += 1; lock.unlock()
            }
        }
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(errors, 0)
    }
}

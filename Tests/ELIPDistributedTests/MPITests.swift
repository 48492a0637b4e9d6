import Foundation
import XCTest
@testable import ELIPDistributed

/// Multi-process tests. Run under a launcher, e.g.
///   mpirun -np 2 --oversubscribe <bin>/elipPackageTests.xctest ELIPDistributedTests.MPITests
/// (tests-mpi/run.sh does this for 2 and 3 ranks). Without >= 2 ranks every test skips.
///
/// Every rank runs the same tests in the same order, so collectives pair up; every expected error
/// is one all ranks throw together, so no rank is left waiting in a collective.
final class MPITests: XCTestCase {
    var comm: Communicator!

    override class func setUp() {
        super.setUp()
        MPIFinalizer.install()
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(LauncherEnvironment.current.isLaunched,
                          "MPI tests need a launcher: mpirun -np 2 ... (see tests-mpi/run.sh)")
        comm = try Communicator.world()
        try XCTSkipUnless(comm.size >= 2, "MPI tests need >= 2 ranks, launched with \(comm.size)")
    }

    override func tearDownWithError() throws {
        // Keeps a failed test's stray collectives from bleeding into the next test unnoticed.
        if let comm, comm.isDistributed { try comm.barrier() }
    }

    func testWorldMatchesLauncher() throws {
        XCTAssertTrue(comm.isDistributed)
        XCTAssertEqual(comm.size, comm.launcher.expectedSize)
        XCTAssertTrue((0..<comm.size).contains(comm.rank))
        XCTAssertEqual(comm.isRoot, comm.rank == 0)
        if comm.isRoot { print("MPI world: \(comm.size) ranks, thread level \(comm.threadLevel), launcher \(comm.launcher.launcher ?? "?")") }
        if ProcessInfo.processInfo.environment["ELIP_MPI_THREAD_LEVEL"] == nil {
            XCTAssertEqual(comm.threadLevel, .multiple, "OpenMPI 4 provides MPI_THREAD_MULTIPLE")
        }
        let ranks = try comm.allGather([Int32(comm.rank)])
        XCTAssertEqual(ranks, (0..<comm.size).map { [Int32($0)] })
    }

    func testBroadcastArraysFromAnyRoot() throws {
        for root in [0, comm.size - 1] {
            var a: [Float] = comm.rank == root ? (0..<1001).map { Float($0) * 0.5 + Float(root) } : [42]
            try comm.broadcast(&a, root: root)
            XCTAssertEqual(a, (0..<1001).map { Float($0) * 0.5 + Float(root) })
            var empty: [Int64] = comm.rank == root ? [] : [1, 2, 3]
            try comm.broadcast(&empty, root: root)
            XCTAssertEqual(empty, [])
        }
    }

    func testBroadcastBufferBytesAndValue() throws {
        var buf = [Double](repeating: Double(comm.rank), count: 17)
        if comm.isRoot { for i in buf.indices { buf[i] = Double(i) * 1.25 } }
        try buf.withUnsafeMutableBufferPointer { try comm.broadcast($0) }
        XCTAssertEqual(buf, (0..<17).map { Double($0) * 1.25 })

        var bytes = [UInt8](repeating: UInt8(comm.rank), count: 5)
        if comm.isRoot { bytes = [1, 2, 3, 4, 5] }
        try bytes.withUnsafeMutableBytes { try comm.broadcast(bytes: $0) }
        XCTAssertEqual(bytes, [1, 2, 3, 4, 5])

        struct Config: Codable, Equatable { var name: String; var lr: Double; var sizes: [Int] }
        let mine = Config(name: "rank\(comm.rank)", lr: 1e-4 * Double(comm.rank + 1), sizes: [comm.rank])
        let got = try comm.broadcastValue(comm.isRoot ? mine : nil)
        XCTAssertEqual(got, Config(name: "rank0", lr: 1e-4, sizes: [0]))
        // Root with nothing to send: every rank throws.
        assertThrowsDistributed(try comm.broadcastValue(Config?.none)) { if case .codec = $0 { return true }; return false }
        // Mismatched buffer sizes are caught before the data broadcast, on every rank.
        var wrong = [Float](repeating: 0, count: comm.rank == 1 ? 4 : 3)
        assertThrowsDistributed(try wrong.withUnsafeMutableBufferPointer { try comm.broadcast($0) }) {
            if case .inconsistentArguments = $0 { return true }; return false
        }
    }

    func testAllReduceSumMaxMin() throws {
        let n = comm.size, r = comm.rank
        var f: [Float] = [Float(r), Float(r) * 2, -Float(r), 0.5]
        try comm.allReduce(&f, op: .sum)
        let s = Float(n * (n - 1) / 2)
        XCTAssertEqual(f, [s, 2 * s, -s, 0.5 * Float(n)])

        var d: [Double] = [Double(r) + 0.25, -Double(r)]
        try comm.allReduce(&d, op: .max)
        XCTAssertEqual(d, [Double(n - 1) + 0.25, 0])
        try comm.allReduce(&d, op: .min)  // already equal on all ranks
        XCTAssertEqual(d, [Double(n - 1) + 0.25, 0])

        var i: [Int64] = [Int64(r) << 40, Int64(r + 1), -Int64(r)]
        try comm.allReduce(&i, op: .sum)
        XCTAssertEqual(i, [Int64(n * (n - 1) / 2) << 40, Int64(n * (n + 1) / 2), -Int64(n * (n - 1) / 2)])
        XCTAssertEqual(try comm.allReduce(Int64(r), op: .min), 0)
        XCTAssertEqual(try comm.allReduce(Float(r), op: .max), Float(n - 1))

        // A large buffer through the buffer API.
        var big = [Float](repeating: Float(r + 1), count: 1 << 20)
        try big.withUnsafeMutableBufferPointer { try comm.allReduce($0, op: .sum) }
        XCTAssertTrue(big.allSatisfy { $0 == Float(n * (n + 1) / 2) })
        try big.withUnsafeMutableBufferPointer { try comm.allReduceAverage($0) }
        XCTAssertTrue(big.allSatisfy { $0 == Float(n * (n + 1) / 2) })  // the mean of equal buffers
        var spread = [Float](repeating: Float(r + 1), count: 1001)
        try spread.withUnsafeMutableBufferPointer { try comm.allReduceAverage($0) }
        XCTAssertTrue(spread.allSatisfy { abs($0 - Float(n + 1) / 2) < 1e-6 })
    }

    func testAllGatherInRankOrder() throws {
        let local = (0..<5).map { Float(comm.rank * 10 + $0) }
        let all = try comm.allGather(local)
        XCTAssertEqual(all.count, comm.size)
        for r in 0..<comm.size { XCTAssertEqual(all[r], (0..<5).map { Float(r * 10 + $0) }) }

        var flat = [Float](repeating: -1, count: 5 * comm.size)
        try local.withUnsafeBufferPointer { l in try flat.withUnsafeMutableBufferPointer { try comm.allGather(l, into: $0) } }
        XCTAssertEqual(flat, all.flatMap { $0 })

        let uneven = [Float](repeating: 1, count: comm.rank == comm.size - 1 ? 2 : 3)
        assertThrowsDistributed(try comm.allGather(uneven)) { if case .inconsistentArguments = $0 { return true }; return false }
    }

    func testFingerprintAgreementAndMismatch() throws {
        try comm.agree(on: "config: lr=1e-4\nmanifest: 1234 files")
        // Only rank 1 differs.
        assertThrowsDistributed(try comm.agree(on: comm.rank == 1 ? "config B" : "config A", what: "config")) {
            $0 == .fingerprintMismatch(ranks: [1], what: "config")
        }
        // Every rank but 0 differs.
        assertThrowsDistributed(try comm.agree(on: "manifest \(comm.rank)", what: "data manifest")) {
            $0 == .fingerprintMismatch(ranks: Array(1..<comm.size), what: "data manifest")
        }
    }

    func testNonFiniteFlagOnOneRankIsSeenByAll() throws {
        XCTAssertFalse(try comm.anyRankNonFinite(localFlag: false))
        for culprit in 0..<comm.size {
            let loss: Float = comm.rank == culprit ? .nan : 1.5
            XCTAssertTrue(try comm.anyRankNonFinite(localFlag: !loss.isFinite), "culprit \(culprit)")
        }
        XCTAssertTrue(try comm.anyRankNonFinite(localFlag: true))
    }

    func testMPIFailuresBecomeErrors() throws {
        // Bypasses the local root check: MPI itself rejects the root (ERRORS_RETURN) on every rank.
        var a: [Float] = [1]
        assertThrowsDistributed(try a.withUnsafeMutableBufferPointer { try MPI.broadcast($0, root: comm.size + 3, comm.comm!) }) {
            if case let .mpi(call, _, message) = $0 { return call == "MPI_Bcast" && !message.isEmpty }
            return false
        }
    }

    /// The reducer's result is the mean of the ranks' buffers, for buckets smaller than, equal
    /// to and larger than the buffer, odd sizes, and a backward-like sequence of markReady calls.
    func testGradientReducerAveragesAcrossRanks() throws {
        for bucketFloats in [1, 3, 7, 64, 1000, GradientReducer.defaultBucketBytes / 4] {
            let reducer = try GradientReducer(communicator: comm, bucketBytes: bucketFloats * 4)
            XCTAssertEqual(reducer.isOverlapped, comm.threadLevel >= .serialized)
            for count in [1, 7, 64, 1001, 10_007] where count / bucketFloats <= 2_000 {
                var buf = pattern(rank: comm.rank, count: count)
                let timing = try buf.withUnsafeMutableBufferPointer { b -> ReductionTiming in
                    try reducer.begin(buffer: b)
                    // "Backward": layers of odd sizes become final from the end towards the start.
                    var off = count
                    while off > 0 {
                        off = max(0, off - 13)
                        try reducer.markReady(from: off)
                    }
                    return try reducer.finish()
                }
                assertClose(buf, expectedMean(size: comm.size, count: count), "bucket \(bucketFloats) count \(count)")
                XCTAssertEqual(timing.buckets, (count + bucketFloats - 1) / bucketFloats)
                XCTAssertEqual(timing.bytes, count * 4)
                XCTAssertGreaterThan(timing.communicationSeconds, 0)
            }
        }
    }

    func testReducerWithoutOverlapAndRepeatedUse() throws {
        let sync = try GradientReducer(communicator: comm, bucketBytes: 40, overlap: false)
        XCTAssertFalse(sync.isOverlapped)
        let overlapped = try GradientReducer(communicator: comm, bucketBytes: 40)
        for step in 0..<3 {
            for reducer in [sync, overlapped] {
                var buf = pattern(rank: comm.rank, count: 103 + step)
                let t = try buf.withUnsafeMutableBufferPointer { try reducer.allReduceAverage($0) }
                assertClose(buf, expectedMean(size: comm.size, count: 103 + step), "step \(step)")
                XCTAssertEqual(t.buckets, (103 + step + 9) / 10)
            }
        }
    }

    /// Buckets go out only once final, from the end: after marking the last part ready, those
    /// buckets get reduced while the front stays untouched until it is marked too.
    func testReducerReducesOnlyFinalBucketsMeanwhile() throws {
        let reducer = try GradientReducer(communicator: comm, bucketBytes: 100 * 4)
        let count = 1000
        var buf = pattern(rank: comm.rank, count: count)
        let local = buf
        let expected = expectedMean(size: comm.size, count: count)
        try buf.withUnsafeMutableBufferPointer { b in
            try reducer.begin(buffer: b)
            try reducer.markReady(from: 650)  // buckets 900..<1000, 800..<900, 700..<800 final; 600..<700 not
            if reducer.isOverlapped {
                let deadline = Date().addingTimeInterval(30)
                while reducer.completedBuckets < 3 && Date() < deadline { usleep(1_000) }
                XCTAssertEqual(reducer.completedBuckets, 3)
                usleep(50_000)
                XCTAssertEqual(reducer.completedBuckets, 3, "a bucket went out before it was final")
                assertClose(Array(b[700..<1000]), Array(expected[700..<1000]))
            } else {
                usleep(50_000)
                XCTAssertEqual(reducer.completedBuckets, 0, "without a thread, finish() does all the work")
            }
            // Meanwhile the training thread may run its own collectives, unless a reducer thread
            // may be inside MPI and the thread level is below MULTIPLE.
            if !reducer.isOverlapped || comm.threadLevel == .multiple {
                XCTAssertFalse(try comm.anyRankNonFinite(localFlag: false))
            } else {
                assertThrowsDistributed(try comm.anyRankNonFinite(localFlag: false)) { if case .busy = $0 { return true }; return false }
            }
            XCTAssertEqual(Array(b[0..<700]), Array(local[0..<700]))
            let t = try reducer.finish()
            XCTAssertEqual(t.buckets, 10)
            XCTAssertGreaterThanOrEqual(t.communicationSeconds, 0)
        }
        assertClose(buf, expected)
    }

    /// Buckets go out in the plan's issue order once every element of theirs was marked final
    /// (any order of ranges): here the FRONT bucket first, as a model whose first-created
    /// parameters finish first would need. The result is the same mean.
    func testReducerIssuesBucketsInALearnedOrder() throws {
        let reducer = try GradientReducer(communicator: comm, bucketBytes: 100 * 4)
        let count = 1000
        // Boundary k covers [900 - 100k, 1000 - 100k): issue the front (k = 9) first.
        try reducer.setIssueOrder([9, 8, 0, 1, 2, 3, 4, 5, 6, 7], count: count)
        var buf = pattern(rank: comm.rank, count: count)
        let local = buf
        let expected = expectedMean(size: comm.size, count: count)
        try buf.withUnsafeMutableBufferPointer { b in
            try reducer.begin(buffer: b)
            try reducer.markReady(950..<1000)   // half of bucket 0: not complete
            try reducer.markReady(0..<60)       // part of the front bucket
            try reducer.markReady(60..<100)     // front bucket complete -> first in the plan
            if reducer.isOverlapped {
                let deadline = Date().addingTimeInterval(30)
                while reducer.completedBuckets < 1 && Date() < deadline { usleep(1_000) }
                usleep(50_000)
                XCTAssertEqual(reducer.completedBuckets, 1, "only the complete bucket that is next in the plan goes out")
                assertClose(Array(b[0..<100]), Array(expected[0..<100]))
                XCTAssertEqual(Array(b[100..<1000]), Array(local[100..<1000]))
            }
            try reducer.markReady(100..<950)
            _ = try reducer.finish()
        }
        assertClose(buf, expected)
    }

    /// Ranks that would issue buckets in different orders fail together instead of pairing the
    /// wrong buckets.
    func testIssueOrderMismatchThrowsOnEveryRank() throws {
        let reducer = try GradientReducer(communicator: comm, bucketBytes: 10 * 4)
        try reducer.setIssueOrder(comm.rank == 1 ? [1, 0, 2] : [0, 1, 2], count: 25)
        var buf = pattern(rank: comm.rank, count: 25)
        assertThrowsDistributed(try buf.withUnsafeMutableBufferPointer { try reducer.allReduceAverage($0) }) {
            if case .inconsistentArguments = $0 { return true }; return false
        }
    }

    func testReducerLayoutMismatchThrowsOnEveryRank() throws {
        let reducer = try GradientReducer(communicator: comm, bucketBytes: comm.rank == 1 ? 64 : 32)
        var buf = pattern(rank: comm.rank, count: 50)
        assertThrowsDistributed(try buf.withUnsafeMutableBufferPointer { try reducer.allReduceAverage($0) }) {
            if case .inconsistentArguments = $0 { return true }; return false
        }
        let reducer2 = try GradientReducer(communicator: comm, bucketBytes: 64)
        var buf2 = pattern(rank: comm.rank, count: comm.rank == 0 ? 0 : 9)
        assertThrowsDistributed(try buf2.withUnsafeMutableBufferPointer { try reducer2.allReduceAverage($0) }) {
            if case .inconsistentArguments = $0 { return true }; return false
        }
    }
}

/// Finalizes MPI once the whole bundle has run (only then: MPI cannot be re-initialised).
final class MPIFinalizer: NSObject, XCTestObservation {
    nonisolated(unsafe) private static var installed = false
    static func install() {
        guard !installed else { return }
        installed = true
        XCTestObservationCenter.shared.addTestObserver(MPIFinalizer())
    }
    func testBundleDidFinish(_ testBundle: Bundle) {
        guard LauncherEnvironment.current.isLaunched, let c = try? Communicator.world() else { return }
        do { try c.finalize() } catch { print("MPI finalize failed: \(error)") }
    }
}

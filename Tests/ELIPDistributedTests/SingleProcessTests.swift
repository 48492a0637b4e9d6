import XCTest
@testable import ELIPDistributed

/// The communicator without a launcher: rank 0 of 1, collectives are identities.
final class SingleProcessTests: XCTestCase {
    func testWorldWithoutLauncherIsSingleProcess() throws {
        try XCTSkipIf(LauncherEnvironment.current.isLaunched, "launched by an MPI launcher")
        let c = try Communicator.world()
        XCTAssertFalse(c.isDistributed)
        XCTAssertEqual(c.rank, 0)
        XCTAssertEqual(c.size, 1)
        XCTAssertTrue(c.isRoot)
        XCTAssertTrue(try Communicator.world() === c)
    }

    func testCollectivesAreIdentities() throws {
        let c = Communicator.singleProcess()
        try c.barrier()
        var a: [Float] = [1, 2, 3]
        try c.broadcast(&a)
        XCTAssertEqual(a, [1, 2, 3])
        var d: [Double] = [1.5, -2]
        try c.allReduce(&d, op: .sum)
        XCTAssertEqual(d, [1.5, -2])
        XCTAssertEqual(try c.allReduce(Int64(7), op: .max), 7)
        XCTAssertEqual(try c.allReduce(Float(-1), op: .min), -1)
        XCTAssertEqual(try c.allGather([Float(4), 5]), [[4, 5]])
        var bytes: [UInt8] = [9, 8]
        try bytes.withUnsafeMutableBytes { try c.broadcast(bytes: $0) }
        XCTAssertEqual(bytes, [9, 8])
        struct Config: Codable, Equatable { var name: String; var lr: Double }
        XCTAssertEqual(try c.broadcastValue(Config(name: "x", lr: 1e-4)), Config(name: "x", lr: 1e-4))
        assertThrowsDistributed(try c.broadcastValue(Config?.none)) { if case .codec = $0 { return true }; return false }
        try c.agree(on: "anything")
        XCTAssertTrue(try c.anyRankNonFinite(localFlag: true))
        XCTAssertFalse(try c.anyRankNonFinite(localFlag: false))
        assertThrowsDistributed(try c.broadcast(&a, root: 1)) { if case .invalidArgument = $0 { return true }; return false }
        var g = [Float](repeating: 0, count: 2)
        let local: [Float] = [3, 4]
        try local.withUnsafeBufferPointer { l in try g.withUnsafeMutableBufferPointer { try c.allGather(l, into: $0) } }
        XCTAssertEqual(g, [3, 4])
        try a.withUnsafeMutableBufferPointer { try c.allReduceAverage($0) }
        XCTAssertEqual(a, [1, 2, 3])
    }

    func testFinalizeIsIdempotentAndBlocksLaterCalls() throws {
        let c = Communicator.singleProcess()
        try c.finalize()
        try c.finalize()
        // Single-process collectives never touch MPI, so they keep working after finalize.
        try c.barrier()
    }

    func testReducerIsANoOpWithTheSameProtocol() throws {
        let c = Communicator.singleProcess()
        let reducer = try GradientReducer(communicator: c, bucketBytes: 16)
        XCTAssertFalse(reducer.isOverlapped)
        var buf = pattern(rank: 0, count: 37)
        let before = buf
        let timing = try buf.withUnsafeMutableBufferPointer { b -> ReductionTiming in
            try reducer.begin(buffer: b)
            for off in stride(from: 36, through: 0, by: -5) { try reducer.markReady(from: off) }
            return try reducer.finish()
        }
        XCTAssertEqual(buf, before)
        XCTAssertEqual(timing, ReductionTiming())
        XCTAssertEqual(timing.hiddenShare, 0)
        let t2 = try buf.withUnsafeMutableBufferPointer { try reducer.allReduceAverage($0) }
        XCTAssertEqual(t2.communicationSeconds, 0)
        XCTAssertEqual(buf, before)
    }

    func testReducerMisuseThrows() throws {
        let reducer = try GradientReducer(communicator: .singleProcess())
        let isInvalid: (DistributedError) -> Bool = { if case .invalidArgument = $0 { return true }; return false }
        assertThrowsDistributed(try reducer.finish(), matches: isInvalid)
        assertThrowsDistributed(try reducer.markReady(from: 0), matches: isInvalid)
        var buf = [Float](repeating: 1, count: 8)
        try buf.withUnsafeMutableBufferPointer { b in
            try reducer.begin(buffer: b)
            assertThrowsDistributed(try reducer.begin(buffer: b), matches: isInvalid)
            assertThrowsDistributed(try reducer.markReady(from: 9), matches: isInvalid)
            assertThrowsDistributed(try reducer.markReady(from: -1), matches: isInvalid)
            assertThrowsDistributed(try reducer.markReady(5..<9), matches: isInvalid)
            try reducer.markReady(0..<8)
            _ = try reducer.finish()
        }
    }

    func testTimingArithmetic() {
        var t = ReductionTiming()
        t.communicationSeconds = 2; t.waitSeconds = 0.5; t.bytes = 4_000
        XCTAssertEqual(t.hiddenShare, 0.75, accuracy: 1e-12)
        XCTAssertEqual(t.bytesPerSecond, 2_000, accuracy: 1e-9)
        t.waitSeconds = 3
        XCTAssertEqual(t.hiddenShare, 0)
    }

    func testErrorMessagesNameTheProblem() {
        XCTAssertEqual(DistributedError.fingerprintMismatch(ranks: [1, 2], what: "config").description,
                       "config differs from rank 0 on ranks 1, 2")
        XCTAssertTrue(DistributedError.mpi(call: "MPI_Bcast", code: 8, message: "MPI_ERR_ROOT: invalid root")
            .description.contains("MPI_Bcast failed"))
    }
}

import XCTest
import ELIPTensor
@testable import ELIPDistributed

/// The reducer on a real ParameterArena, driven like a trainer: broadcast values from rank 0,
/// then reduce gradients while "backward" finishes parameters from the last to the first.
/// Runs single-process under `swift test` and on every rank under mpirun.
final class ArenaTests: XCTestCase {
    override class func setUp() { super.setUp(); MPIFinalizer.install() }

    func testArenaBroadcastAndGradientMean() throws {
        let comm = try Communicator.world()
        let arena = ParameterArena(capacity: 1 << 16)
        for (i, shape) in [[3, 5], [7], [2, 2, 2], [33], [1]].enumerated() { _ = try arena.add("p\(i)", shape: shape) }
        let n = arena.values.count
        let values = arena.values
        for i in 0..<n { values[i] = Float(comm.rank * 1000 + i) }
        try comm.broadcastValues(of: arena)
        XCTAssertEqual(Array(arena.values), (0..<n).map { Float($0) })

        let grads = arena.gradients
        let local = pattern(rank: comm.rank, count: n)
        for i in 0..<n { grads[i] = local[i] }
        let reducer = try GradientReducer(communicator: comm, bucketBytes: 40 * 4)
        try reducer.begin(gradientsOf: arena)
        for e in arena.entries.reversed() { try reducer.markReady(from: e.offset) }
        let t = try reducer.finish()
        assertClose(Array(arena.gradients), expectedMean(size: comm.size, count: n))
        XCTAssertEqual(t.buckets, comm.size > 1 ? (n + 39) / 40 : 0)
    }
}

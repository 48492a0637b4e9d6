@testable import ELIPTensor
import XCTest

/// Issue 15 class 13: the parameter arena's address-space reservation is sized from the model
/// and a reservation that cannot be made is a thrown error, never a fatalError.
final class ArenaReservationTests: XCTestCase {
    /// 4 PiB cannot be reserved on any machine (x86-64 user space is 128 TiB): `add` throws an
    /// error saying why, instead of the process dying.
    func testUnreservableCapacityIsAThrownError() {
        let arena = ParameterArena(capacity: 1 << 50)
        XCTAssertThrowsError(try arena.add("w", shape: [4, 4])) { error in
            XCTAssertTrue("\(error)".contains("cannot reserve") && "\(error)".contains("ulimit -v"), "\(error)")
        }
        XCTAssertEqual(arena.values.count, 0)
        XCTAssertEqual(arena.gradients.count, 0)
    }

    /// A measuring arena lays parameters out exactly as a real one, so its `used` is the capacity
    /// the real build needs (and fills exactly).
    func testMeasuringArenaGivesTheExactCapacity() throws {
        let shapes: [[Int]] = [[3, 5], [7], [64, 33], [1], [0, 4], [1000]]
        let probe = ParameterArena.measuring()
        for (i, s) in shapes.enumerated() { _ = try probe.add("p\(i)", shape: s, init: .truncatedNormal(std: 0.02)) }
        XCTAssertEqual(probe.values.count, 0, "a measuring arena holds no values")
        let real = ParameterArena(capacity: probe.used)
        for (i, s) in shapes.enumerated() { _ = try real.add("p\(i)", shape: s, init: .truncatedNormal(std: 0.02)) }
        XCTAssertEqual(real.used, probe.used)
        XCTAssertEqual(real.entries.map(\.offset), probe.entries.map(\.offset))
        XCTAssertThrowsError(try real.add("one more", shape: [1]), "the reservation is exact")
        real.initialise(seed: 1)
        XCTAssertTrue(real.values.allSatisfy { $0.isFinite })
    }
}

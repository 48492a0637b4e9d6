import Foundation
import XCTest
@testable import ELIPTensor

/// ReLU (the ALBEF task heads): values and a finite-difference gradient check.
final class ReLUTests: XCTestCase {
    func testReLUValuesAndGradient() throws {
        let x = randomTensor([4, 9], seed: 5, scale: 3)
        let y = x.relu().toArray(), xs = x.toArray()
        XCTAssertTrue(xs.contains { $0 < 0 } && xs.contains { $0 > 0 })
        for (a, b) in zip(y, xs) { XCTAssertEqual(a, max(b, 0)) }
        assertGradients([x]) { x.relu() }
    }
}

import ELIPTensor
import Foundation
import XCTest

/// tanh (the pooler non-linearity of METER's cross-modal poolers): values and gradients.
final class TanhTests: XCTestCase {
    func testTanhValuesAndGradients() throws {
        let x = randomTensor([3, 7], seed: 11, scale: 2)
        let y = x.tanh().toArray(), xs = x.toArray()
        for (a, b) in zip(y, xs) { XCTAssertEqual(Double(a), Foundation.tanh(Double(b)), accuracy: 1e-6) }
        XCTAssertEqual(Tensor.full([2], 40).tanh().toArray(), [1, 1])  // saturates, no NaN
        assertGradients([x]) { x.tanh() }
    }
}

import XCTest
@testable import ELIPTensor

/// Random tensor with entries ~ U(-scale, scale), marked as a gradient target.
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1, grad: Bool = true) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    let n = shape.reduce(1, *)
    let t = try! Tensor((0..<n).map { _ in (rng.nextUniform() * 2 - 1) * scale }, shape: shape)
    return grad ? t.requiringGrad() : t
}

/// Runs a gradient check and fails the test with the mismatch when there is one.
func assertGradients(_ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
                     file: StaticString = #filePath, line: UInt = #line, _ f: () throws -> Tensor) {
    do {
        let report = try GradientCheck.check(inputs: inputs, eps: eps, atol: atol, rtol: rtol, f)
        XCTAssertGreaterThan(report.checked, 0, "no element was checked", file: file, line: line)
    } catch {
        XCTFail("\(error)", file: file, line: line)
    }
}

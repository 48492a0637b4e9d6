import CKernels
import XCTest

/// The C kernels' element-wise loops are marked safe to vectorise in place (`ELEMENTWISE`): a
/// kernel called with y == x must give bitwise what it gives out of place, and attention's fused
/// softmax backward must equal the unfused expression it replaced.
final class RowwiseKernelTests: XCTestCase {
    /// Rows of 257 (a 16-lane body and a tail) with the masked and extreme values the engine feeds:
    /// padding at -10000, a fully masked row at -inf, large positives.
    static let rows = 5, cols = 257
    static func scores() -> [Float] {
        var state: UInt32 = 7
        var x = (0..<(rows * cols)).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) * 16 - 8
        }
        for j in 200..<cols { x[j] = -10000 }                      // row 0: padded keys
        for j in 0..<cols { x[cols + j] = -.infinity }             // row 1: fully masked
        x[2 * cols + 3] = 95; x[2 * cols + 4] = -95                // row 2: beyond exp's range
        return x
    }

    func testRowKernelsInPlaceEqualOutOfPlace() {
        let rows = Int64(Self.rows), cols = Int64(Self.cols)
        let kernels: [(String, (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)] = [
            ("softmax", { elip_softmax_rows($0, $1, rows, cols) }),
            ("log-softmax", { elip_log_softmax_rows($0, $1, rows, cols) }),
        ]
        for (name, kernel) in kernels {
            let x = Self.scores()
            var out = [Float](repeating: 0, count: x.count), inPlace = x
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { kernel(xp.baseAddress!, $0.baseAddress!) } }
            inPlace.withUnsafeMutableBufferPointer { kernel(UnsafePointer($0.baseAddress!), $0.baseAddress!) }
            XCTAssertEqual(out.map(\.bitPattern), inPlace.map(\.bitPattern), name)
            // softmax turns a row masked with -inf throughout into zeros; log-softmax has no finite
            // answer there, every other row is finite.
            let masked = Self.cols..<(2 * Self.cols)
            if name == "softmax" { XCTAssertEqual(Array(out[masked]), [Float](repeating: 0, count: Self.cols)) }
            XCTAssertFalse(out.enumerated().contains { !masked.contains($0.offset) && !$0.element.isFinite }, name)
        }
    }

    func testElementwiseKernelsInPlaceEqualOutOfPlace() {
        let n = Int64(Self.rows * Self.cols)
        let kernels: [(String, (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)] = [
            ("exp", { elip_exp($0, $1, n) }),
            ("erf", { elip_erf($0, $1, n) }),
            ("GELU", { elip_gelu_forward($0, $1, n) }),
            ("QuickGELU", { elip_quick_gelu_forward($0, $1, n) }),
        ]
        for (name, kernel) in kernels {
            let x = Self.scores().map { $0.isFinite ? $0 : -50 }
            var out = [Float](repeating: 0, count: x.count), inPlace = x
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { kernel(xp.baseAddress!, $0.baseAddress!) } }
            inPlace.withUnsafeMutableBufferPointer { kernel(UnsafePointer($0.baseAddress!), $0.baseAddress!) }
            XCTAssertEqual(out.map(\.bitPattern), inPlace.map(\.bitPattern), name)
        }
    }

    /// d = p * (d - dot(p, d)) * scale per row, as the Swift loop in attention's backward wrote it.
    func testScaledSoftmaxBackwardEqualsTheUnfusedExpression() {
        let rows = Self.rows, cols = Self.cols
        var p = [Float](repeating: 0, count: rows * cols)
        let x = Self.scores()
        x.withUnsafeBufferPointer { xp in p.withUnsafeMutableBufferPointer { elip_softmax_rows(xp.baseAddress!, $0.baseAddress!, Int64(rows), Int64(cols)) } }
        let dP = x.map { $0.isFinite ? $0 * 0.01 : 0.5 }
        let scale: Float = 0.125
        var expected = dP
        for r in 0..<rows {
            let dot = p.withUnsafeBufferPointer { pp in expected.withUnsafeBufferPointer { elip_dot(pp.baseAddress! + r * cols, $0.baseAddress! + r * cols, Int64(cols)) } }
            for j in 0..<cols { expected[r * cols + j] = p[r * cols + j] * (expected[r * cols + j] - dot) * scale }
        }
        var fused = dP
        p.withUnsafeBufferPointer { pp in fused.withUnsafeMutableBufferPointer {
            elip_softmax_backward_scaled_rows(pp.baseAddress!, $0.baseAddress!, Int64(rows), Int64(cols), scale)
        } }
        XCTAssertEqual(fused.map(\.bitPattern), expected.map(\.bitPattern))
    }
}

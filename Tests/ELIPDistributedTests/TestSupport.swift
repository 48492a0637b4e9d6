import XCTest
@testable import ELIPDistributed

/// Asserts that `body` throws a `DistributedError` accepted by `matches`.
func assertThrowsDistributed<T>(_ body: @autoclosure () throws -> T, _ message: String = "",
                                file: StaticString = #filePath, line: UInt = #line,
                                matches: (DistributedError) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected a DistributedError \(message)", file: file, line: line)
    } catch let e as DistributedError {
        XCTAssertTrue(matches(e), "unexpected error: \(e) \(message)", file: file, line: line)
    } catch {
        XCTFail("unexpected non-DistributedError \(error) \(message)", file: file, line: line)
    }
}

/// Rank r's gradient pattern: small integers, so sums are exact and the mean is known.
func pattern(rank: Int, count: Int) -> [Float] {
    (0..<count).map { Float(($0 % 97) * (rank + 1) + rank) - 40 }
}

func expectedMean(size: Int, count: Int) -> [Float] {
    var sum = [Float](repeating: 0, count: count)
    for r in 0..<size { for (i, v) in pattern(rank: r, count: count).enumerated() { sum[i] += v } }
    return sum.map { $0 / Float(size) }
}

func assertClose(_ a: [Float], _ b: [Float], tolerance: Float = 1e-5, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, message, file: file, line: line)
    for i in 0..<min(a.count, b.count) where abs(a[i] - b[i]) > tolerance * max(1, abs(b[i])) {
        XCTFail("element \(i): \(a[i]) != \(b[i]) \(message)", file: file, line: line)
        return
    }
}

import ELIPModel
import XCTest

/// PyTorch's CPU topk order under ties. The expected indices were produced by libstdc++ itself
/// (g++: std::nth_element + std::sort of the first k - 1, or std::partial_sort when k * 64 <= n,
/// with TopKImpl.h's comparator), covering both paths, sorts longer than 16 and all-equal input.
final class TorchTopKTests: XCTestCase {
    func testTiesAreOrderedAsLibstdcxxOrdersThem() throws {
        // (k, values as digits d -> d / 4, expected indices)
        let cases: [(Int, String, [Int])] = [
            (4, "212122220102", [7, 5, 0, 6]),
            (12, "000110100001", [6, 11, 4, 3, 7, 1, 10, 9, 5, 2, 8, 0]),
            (30, "2131013110011112211113202311202202022232", [2, 38, 21, 6, 25, 39, 0, 22, 24, 16, 15, 30, 31, 33, 35, 36, 37, 28, 20, 12, 11, 8, 7, 5, 3, 1, 18, 26, 27, 13]),
            (2, "0112001021102111201020200011212110221101001221011220121100202211020022100221112100201100220210011001101202112211111100120211001122", [8, 3]),
            (3, "10101111111001111111111110111000111010111000100001000001010011110001011110101011110111100110001010101111011111011111011110100101001011010011011110001111011100011000111111011010111100111010001000110110", [4, 0, 2]),
            (5, "000000000", [7, 5, 6, 4, 8]),
            (1, "0100000101001001011111001010100110011100010000101111001001000100110111", [1]),
        ]
        for (k, digits, expected) in cases {
            let values = digits.map { Float(Int(String($0))!) / 4 }
            XCTAssertEqual(try TorchTopK.largest(values, k: k), expected, digits)
        }
    }

    /// Without ties the result is simply the k largest, descending.
    func testDistinctValuesAreSortedDescending() throws {
        var g = SystemRandomNumberGenerator()
        for n in [1, 5, 17, 64, 300] {
            let values = (0..<n).map { _ in Float.random(in: -1...1, using: &g) }
            for k in Set([1, n / 2 + 1, n]) {
                XCTAssertEqual(try TorchTopK.largest(values, k: k), Array(values.indices.sorted { values[$0] > values[$1] }.prefix(k)))
            }
        }
        XCTAssertEqual(try TorchTopK.largest([1, 2], k: 0), [])
        XCTAssertThrowsError(try TorchTopK.largest([1, 2], k: 3)) { XCTAssertTrue("\($0)".contains("k 3"), "\($0)") }
    }
}

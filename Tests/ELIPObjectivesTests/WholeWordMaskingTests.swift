import ELIPObjectives
import XCTest

/// METER's whole-word MLM masking: the count rule with Python's rounding, specials never masked,
/// "##" continuations masked with their word, and the 80/10/10 split and per-token rate over many rows.
final class WholeWordMaskingTests: XCTestCase {
    private let specials: Set<Int> = [0, 1, 2, 3, 99]  // <s> <pad> </s> <unk> <mask>

    private func masking(_ p: Double = 0.15, continuation: Set<Int> = []) throws -> WholeWordMasking {
        try WholeWordMasking(probability: p, vocabularySize: 100, maskId: 99, specialIds: specials, continuationIds: continuation)
    }

    func testDrawCountRoundsHalfToEvenAsPython() throws {
        XCTAssertEqual(try masking(0.15).drawCount(length: 50), 8)   // round(7.5) = 8
        XCTAssertEqual(try masking(0.4).drawCount(length: 16), 6)    // round(6.4) = 6
        XCTAssertEqual(try masking(0.25).drawCount(length: 10), 2)   // round(2.5) = 2
        XCTAssertEqual(try masking(0.1).drawCount(length: 5), 1)     // max(1, round(0.5) = 0)
        XCTAssertThrowsError(try WholeWordMasking(probability: 0, vocabularySize: 10, maskId: 9, specialIds: []))
        XCTAssertThrowsError(try WholeWordMasking(probability: 0.15, vocabularySize: 10, maskId: 10, specialIds: []))
        XCTAssertThrowsError(try masking().mask([0, 1, 2], length: 2, seed: 1))
    }

    func testSpecialsAreNeverMaskedAndCountsAreBounded() throws {
        let m = try masking(0.4)
        // <s> w w w w w </s> <pad> x3, 8 rows.
        let row = [0, 10, 11, 12, 13, 14, 2, 1, 1, 1]
        let ids = Array([[Int]](repeating: row, count: 8).joined())
        let (inputs, labels) = try m.mask(ids, length: 10, seed: 7)
        for r in 0..<8 {
            let masked = (0..<10).filter { labels[r * 10 + $0] != -100 }
            XCTAssertLessThanOrEqual(masked.count, 4)
            for k in masked {
                XCTAssertFalse(specials.contains(ids[r * 10 + k]))
                XCTAssertEqual(labels[r * 10 + k], ids[r * 10 + k])
            }
            for k in 0..<10 where labels[r * 10 + k] == -100 { XCTAssertEqual(inputs[r * 10 + k], ids[r * 10 + k]) }
        }
        // Same seed and rows: same result; the rows of one call are not all alike.
        let again = try m.mask(ids, length: 10, seed: 7)
        XCTAssertEqual(again.inputs, inputs)
        XCTAssertEqual(again.labels, labels)
        XCTAssertGreaterThan(Set((0..<8).map { Array(labels[($0 * 10)..<($0 * 10 + 10)]) }).count, 1)
        // firstRow shifts the stream: row 3 of the batch equals row 0 of a call starting there.
        let shifted = try m.mask(row, length: 10, seed: 7, firstRow: 3)
        XCTAssertEqual(shifted.labels, Array(labels[30..<40]))
    }

    func testContinuationTokensAreMaskedWithTheirWord() throws {
        // Ids 50 and 51 continue the previous word: [10, 50, 51] is one 3-token word.
        let m = try masking(0.5, continuation: [50, 51])
        let row = [0, 10, 50, 51, 20, 2]  // n = 3
        for seed in 0..<200 {
            let labels = try m.mask(row, length: 6, seed: UInt64(seed)).labels
            let wordMasked = (1...3).map { labels[$0] != -100 }
            XCTAssertTrue(wordMasked.allSatisfy { $0 } || wordMasked.allSatisfy { !$0 }, "seed \(seed): \(labels)")
        }
    }

    func testRatesMatchTheCollator() throws {
        let m = try masking(0.15)
        let length = 50, rows = 4000
        var row = [0] + (0..<20).map { 10 + $0 } + [2]
        row += [Int](repeating: 1, count: length - row.count)
        let ids = Array([[Int]](repeating: row, count: rows).joined())
        let (inputs, labels) = try m.mask(ids, length: length, seed: 11)
        var masked = 0, toMask = 0, kept = 0
        for i in ids.indices where labels[i] != -100 {
            masked += 1
            if inputs[i] == 99 { toMask += 1 } else if inputs[i] == ids[i] { kept += 1 }
        }
        // Each of the 20 real tokens is drawn with probability 8/50.
        let rate = Double(masked) / Double(rows * 20)
        XCTAssertEqual(rate, 8.0 / 50.0, accuracy: 0.01)
        XCTAssertEqual(Double(toMask) / Double(masked), 0.8, accuracy: 0.02)
        // Unchanged: 10% plus the random draws that hit the same id (1% of 10%).
        XCTAssertEqual(Double(kept) / Double(masked), 0.1 + 0.1 / 100, accuracy: 0.02)
    }
}

import XCTest
@testable import ELIPTrain

/// `MaxBatchSearch` on synthetic memory curves: the answer equals the brute-force one, and the
/// search never runs a batch far past the budget (a process that does is killed for want of
/// memory before it can report anything).
final class MaxBatchSearchTests: XCTestCase {
    static let mib = 1 << 20

    /// Step memory as the caching allocator makes it: `base + perImage * b` rounded up to a
    /// quarter-power-of-two size class, so neighbouring batches often read the same bytes.
    static func sizeClassed(base: Int, perImage: Int) -> (Int) -> Int {
        { b in
            let raw = base + perImage * b
            var c = 1
            while c < raw { c <<= 1 }
            let quarter = max(1, c / 8)
            return (raw + quarter - 1) / quarter * quarter
        }
    }

    func search(budget: Int, fixed: Int, limit: Int = 4096, live: @escaping (Int) -> Int) throws -> (MaxBatchSearch.Result, [Int]) {
        var ran: [Int] = []
        let r = try MaxBatchSearch.run(variant: "v", budget: budget, fixedBytes: fixed, limit: limit, limitReason: "limit") { b in
            ran.append(b)
            return MaxBatchSearch.Probe(batch: b, liveBytes: live(b), seconds: Double(b))
        }
        return (r, ran)
    }

    /// BLIP unpruned as measured on 2026-12-01: batches 33 and 34 both read 10912 MiB. The old
    /// search took the slope between them (0) and doubled to 68, ~21 GiB of step tensors.
    func testEqualNeighboursDoNotDoubleTheBatch() throws {
        let live: (Int) -> Int = { b in b == 33 || b == 34 ? 10912 * Self.mib : (130 + 318 * b) * Self.mib }
        let budget = 16384 * Self.mib, fixed = 4987 * Self.mib
        let (r, ran) = try search(budget: budget, fixed: fixed) { live($0) }
        let truth = (1...200).last { fixed + live($0) <= budget }!
        XCTAssertEqual(r.maxBatch, truth, "ran \(ran)")
        XCTAssertLessThanOrEqual(ran.max()!, truth + 2, "ran \(ran)")
    }

    /// Many curves with size-class plateaus: always the brute-force answer, no run past 1.3x the
    /// budget, and every reported batch was run.
    func testSizeClassCurvesFindTheLargestFittingBatch() throws {
        for perImage in [37, 120, 255, 311, 436, 924] {
            for base in [0, 90, 400] {
                let live = Self.sizeClassed(base: base * Self.mib, perImage: perImage * Self.mib)
                let budget = 16384 * Self.mib, fixed = 4418 * Self.mib
                let (r, ran) = try search(budget: budget, fixed: fixed, live: live)
                let truth = (1...4096).last { fixed + live($0) <= budget }
                XCTAssertEqual(r.maxBatch, truth, "perImage \(perImage) base \(base): ran \(ran)")
                XCTAssertTrue(ran.contains(r.maxBatch ?? 0), "reported batch was not run: \(ran)")
                let worst = ran.map { fixed + live($0) }.max()!
                XCTAssertLessThanOrEqual(Double(worst), 1.3 * Double(budget), "perImage \(perImage) base \(base): ran \(ran)")
                if let over = r.firstBatchOver { XCTAssertEqual(over, r.maxBatch! + 1) }
            }
        }
    }

    func testNothingFitsAndTheLimit() throws {
        let (none, ranNone) = try search(budget: 100, fixed: 90) { _ in 50 }
        XCTAssertNil(none.maxBatch)
        XCTAssertEqual(none.firstBatchOver, 1)
        XCTAssertEqual(ranNone, [1])
        let (capped, _) = try search(budget: 1 << 40, fixed: 0, limit: 48) { $0 * 1000 }
        XCTAssertEqual(capped.maxBatch, 48)
        XCTAssertNil(capped.firstBatchOver)
        XCTAssertEqual(capped.limitedBy, "limit")
    }
}

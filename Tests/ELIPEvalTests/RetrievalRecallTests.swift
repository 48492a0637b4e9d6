@testable import ELIPEval
import ELIPModel
import ELIPTrain
import Foundation
import XCTest

/// The recall math of ALBEF's itm_eval on hand-made score matrices.
final class RetrievalRecallTests: XCTestCase {
    /// `n` images with captions [2i, 2i + 1].
    func twoCaptionsEach(_ n: Int) -> (txt2img: [Int], img2txt: [[Int]]) {
        ((0..<(2 * n)).map { $0 / 2 }, (0..<n).map { [2 * $0, 2 * $0 + 1] })
    }

    func testPerfectRankingGivesOneHundred() throws {
        let (t2iMap, i2tMap) = twoCaptionsEach(3)
        let i2t = (0..<3).map { i in (0..<6).map { t in Float(t / 2 == i ? 10 : -Float(t)) } }
        let t2i = (0..<6).map { t in (0..<3).map { i in Float(t / 2 == i ? 5 : 0.1 * Float(i)) } }
        let m = try RetrievalRecall.metrics(i2t: .init(dense: i2t), t2i: .init(dense: t2i), txt2img: t2iMap, img2txt: i2tMap)
        for (k, v) in m.entries { XCTAssertEqual(v, 100, k) }
    }

    /// Ground truth always last among 12 candidates: rank 11, outside every cut-off.
    func testWorstRankingGivesZero() throws {
        let n = 12
        let i2t = (0..<n).map { i in (0..<n).map { t in Float(t == i ? -50 : t) } }
        let t2i = (0..<n).map { t in (0..<n).map { i in Float(i == t ? -50 : -i) } }
        let m = try RetrievalRecall.metrics(i2t: .init(dense: i2t), t2i: .init(dense: t2i),
                                            txt2img: Array(0..<n), img2txt: (0..<n).map { [$0] })
        for (k, v) in m.entries { XCTAssertEqual(v, 0, k) }
        XCTAssertEqual(RetrievalRecall.imageRanks(i2t: .init(dense: i2t), img2txt: (0..<n).map { [$0] }), [Int](repeating: 11, count: n))
    }

    /// TR counts an image when ANY of its captions is in the top K (ALBEF: min rank over captions).
    func testSeveralCaptionsPerImageTakeTheBestRank() throws {
        let (t2iMap, i2tMap) = twoCaptionsEach(6)  // 12 captions
        // Image 0: its caption 1 is first, caption 0 is last. Image 1: its captions at ranks 3 and 7.
        var i2t = [[Float]](repeating: [Float](repeating: 0, count: 12), count: 6)
        for t in 0..<12 { i2t[0][t] = Float(-t) }
        i2t[0][1] = 100; i2t[0][0] = -100
        let order1 = [4, 5, 6, 2, 7, 8, 9, 3, 10, 11, 0, 1]  // rank r -> caption
        for (r, t) in order1.enumerated() { i2t[1][t] = Float(100 - r) }
        // Images 2-5: their captions outside the top 10.
        for i in 2..<6 {
            for t in 0..<12 { i2t[i][t] = (t / 2 == i) ? -10 : Float(t) }
        }
        let ranks = RetrievalRecall.imageRanks(i2t: .init(dense: i2t), img2txt: i2tMap)
        XCTAssertEqual(ranks[0], 0)
        XCTAssertEqual(ranks[1], 3)
        XCTAssertTrue(ranks[2...].allSatisfy { $0 >= 10 }, "\(ranks)")
        let t2i = (0..<12).map { t in (0..<6).map { i in Float(i == t / 2 ? 1 : 0) } }
        let m = try RetrievalRecall.metrics(i2t: .init(dense: i2t), t2i: .init(dense: t2i), txt2img: t2iMap, img2txt: i2tMap)
        XCTAssertEqual(m.txtR1, 100.0 / 6, accuracy: 1e-9)
        XCTAssertEqual(m.txtR5, 200.0 / 6, accuracy: 1e-9)
        XCTAssertEqual(m.txtR10, 200.0 / 6, accuracy: 1e-9)
        XCTAssertEqual(m.imgR1, 100)
        XCTAssertEqual(m.rMean, ((100.0 / 6 + 400.0 / 6) / 3 + 100) / 2, accuracy: 1e-9)
    }

    /// Equal scores rank by ascending candidate index.
    func testTiesRankByIndexOrder() {
        let row = RetrievalScores.Row(indices: [0, 1, 2, 3, 4], scores: [1, 1, 1, 1, 1])
        XCTAssertEqual((0..<5).map { RetrievalRecall.rank(of: $0, in: row, columns: 5, fill: -100) }, [0, 1, 2, 3, 4])
        let mixed = RetrievalScores.Row(indices: [0, 1, 2, 3], scores: [2, 5, 2, 5])
        XCTAssertEqual((0..<4).map { RetrievalRecall.rank(of: $0, in: mixed, columns: 4, fill: -100) }, [2, 0, 3, 1])
    }

    /// Sparse rows: unscored candidates hold the fill value (-100) and tie among themselves (and
    /// with explicit -100 scores) by index.
    func testFillEntriesRankAfterTheRescoredOnesAndTieByIndex() {
        let row = RetrievalScores.Row(indices: [3, 5], scores: [5, -100])
        let ranks = (0..<6).map { RetrievalRecall.rank(of: $0, in: row, columns: 6, fill: -100) }
        // Order: 3 (score 5), then 0, 1, 2, 4, 5 (all -100, by index).
        XCTAssertEqual(ranks, [1, 2, 3, 0, 4, 5])
        // A rescored candidate below the fill ranks after every unscored one.
        let low = RetrievalScores.Row(indices: [1], scores: [-200])
        XCTAssertEqual(RetrievalRecall.rank(of: 1, in: low, columns: 4, fill: -100), 3)
        XCTAssertEqual(RetrievalRecall.rank(of: 2, in: low, columns: 4, fill: -100), 1)
    }

    func testNaNRanksLast() {
        let row = RetrievalScores.Row(indices: [0, 1, 2], scores: [.nan, -3, 1])
        XCTAssertEqual((0..<3).map { RetrievalRecall.rank(of: $0, in: row, columns: 3, fill: -100) }, [2, 1, 0])
        XCTAssertEqual(RetrievalRecall.topK([.nan, -3, 1], k: 3), [2, 1, 0])
    }

    /// Fewer candidates than the cut-offs (or k_test): everything is within the top 5 and 10.
    func testKLargerThanTheCandidateCount() throws {
        XCTAssertEqual(RetrievalRecall.topK([0.1, 0.9, 0.5], k: 10), [1, 2, 0])
        XCTAssertEqual(RetrievalRecall.topK([Float](), k: 4), [])
        // 3 images x 3 captions, ground truth always last.
        let i2t: [[Float]] = (0..<3).map { i in (0..<3).map { t in t == i ? -1 : 1 } }
        let m = try RetrievalRecall.metrics(i2t: .init(dense: i2t), t2i: .init(dense: i2t), txt2img: [0, 1, 2], img2txt: [[0], [1], [2]])
        XCTAssertEqual([m.txtR1, m.txtR5, m.txtR10, m.imgR1, m.imgR5, m.imgR10], [0, 100, 100, 0, 100, 100])
    }

    /// rank() and topK() agree with a brute-force stable sort on random matrices with many ties.
    func testAgreesWithBruteForceOnRandomScores() {
        var g = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let n = Int.random(in: 1...30, using: &g)
            let scores = (0..<n).map { _ in Float(Int.random(in: -3...3, using: &g)) }
            let order = Array(0..<n).sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            let row = RetrievalScores.Row(indices: Array(0..<n), scores: scores)
            for c in 0..<n { XCTAssertEqual(RetrievalRecall.rank(of: c, in: row, columns: n, fill: -100), order.firstIndex(of: c)!) }
            let k = Int.random(in: 0...(n + 2), using: &g)
            XCTAssertEqual(RetrievalRecall.topK(scores, k: k), Array(order.prefix(k)))
            // A sparse version (explicit top-k, fill for the rest) ranks like its dense matrix.
            let top = Array(order.prefix(min(k, n)))
            let sparse = RetrievalScores(columns: n, fill: -5, rows: [.init(indices: top, scores: top.map { scores[$0] })])
            let dense = sparse.denseMatrix()[0]
            let denseOrder = Array(0..<n).sorted { dense[$0] != dense[$1] ? dense[$0] > dense[$1] : $0 < $1 }
            for c in 0..<n {
                XCTAssertEqual(RetrievalRecall.rank(of: c, in: sparse.rows[0], columns: n, fill: -5), denseOrder.firstIndex(of: c)!)
            }
        }
    }

    func testInconsistentInputsAreClearErrors() {
        let ok = RetrievalScores(dense: [[1, 2]])
        XCTAssertThrowsError(try RetrievalRecall.metrics(i2t: ok, t2i: .init(dense: [[1], [2]]), txt2img: [0, 0, 0], img2txt: [[0, 1, 2]])) {
            XCTAssertTrue("\($0)".contains("image->text scores are 1 x 2"), "\($0)")
        }
        XCTAssertThrowsError(try RetrievalRecall.metrics(i2t: ok, t2i: .init(dense: [[1], [2]]), txt2img: [0, 1], img2txt: [[0, 1]])) {
            XCTAssertTrue("\($0)".contains("caption 1 maps to image 1"), "\($0)")
        }
        XCTAssertThrowsError(try RetrievalRecall.metrics(i2t: ok, t2i: .init(dense: [[1], [2]]), txt2img: [0, 0], img2txt: [[0, 2]])) {
            XCTAssertTrue("\($0)".contains("lists caption 2"), "\($0)")
        }
        let dup = RetrievalScores(columns: 2, rows: [.init(indices: [1, 1], scores: [0, 0])])
        XCTAssertThrowsError(try RetrievalRecall.metrics(i2t: dup, t2i: .init(dense: [[1], [2]]), txt2img: [0, 0], img2txt: [[0, 1]]))
    }
}

import Foundation

/// One direction of retrieval scores (image->text or text->image): `rows` queries x `columns`
/// candidates. Each row lists its explicitly scored candidates (the top k_test re-scored by ITM);
/// every other entry is `fill` (ALBEF: -100).
public struct RetrievalScores: Equatable, Sendable {
    public struct Row: Equatable, Sendable {
        /// Candidate indices with an explicit score (distinct, in [0, columns)).
        public var indices: [Int]
        public var scores: [Float]
        public init(indices: [Int], scores: [Float]) {
            self.indices = indices
            self.scores = scores
        }
    }

    public var columns: Int
    public var fill: Float
    public var rows: [Row]

    public init(columns: Int, fill: Float = -100, rows: [Row]) {
        self.columns = columns
        self.fill = fill
        self.rows = rows
    }

    /// A dense matrix (every entry explicit), e.g. a hand-made score matrix in a test.
    public init(dense: [[Float]]) {
        columns = dense.first?.count ?? 0
        fill = -100
        rows = dense.map { Row(indices: Array($0.indices), scores: $0) }
    }

    /// The dense matrix (fill where no explicit score).
    public func denseMatrix() -> [[Float]] {
        rows.map { r in
            var d = [Float](repeating: fill, count: columns)
            for (i, s) in zip(r.indices, r.scores) where i >= 0 && i < columns { d[i] = s }
            return d
        }
    }
}

/// Recall@K of ALBEF's `itm_eval` (Retrieval.py), in percent.
public struct RetrievalMetrics: Codable, Equatable, Sendable {
    public var txtR1: Double, txtR5: Double, txtR10: Double, txtRMean: Double
    public var imgR1: Double, imgR5: Double, imgR10: Double, imgRMean: Double
    public var rMean: Double

    enum CodingKeys: String, CodingKey {
        case txtR1 = "txt_r1", txtR5 = "txt_r5", txtR10 = "txt_r10", txtRMean = "txt_r_mean"
        case imgR1 = "img_r1", imgR5 = "img_r5", imgR10 = "img_r10", imgRMean = "img_r_mean"
        case rMean = "r_mean"
    }

    /// The six recalls and the three means as (key, value) in ALBEF's order.
    public var entries: [(String, Double)] {
        [("txt_r1", txtR1), ("txt_r5", txtR5), ("txt_r10", txtR10), ("txt_r_mean", txtRMean),
         ("img_r1", imgR1), ("img_r5", imgR5), ("img_r10", imgR10), ("img_r_mean", imgRMean), ("r_mean", rMean)]
    }
}

/// Errors of the recall computation: inconsistent shapes or ground truth.
public struct RetrievalError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The ranking and recall rules of ALBEF's `itm_eval`, on score matrices that tests can write
/// by hand.
///
/// Rank of a candidate in a query's row: its 0-based position when the row is sorted by
/// descending score. TR@K counts an image when ANY of its ground-truth captions has rank < K
/// (ALBEF: the minimum rank over `img2txt[image]`); IR@K counts a caption when its image has
/// rank < K. r_mean = (mean(TR@1,5,10) + mean(IR@1,5,10)) / 2.
///
/// Tie rule: equal scores are ordered by ascending candidate index (a stable descending sort),
/// i.e. rank = #(candidates scoring strictly higher) + #(equal-scoring candidates with a lower
/// index). ALBEF takes `np.argsort(score)[::-1]`; NumPy's default sort is not stable, so its
/// order among ties is unspecified (with a stable sort the reversal would put the HIGHER index
/// first). Our rule is deterministic and counts no tie in the query's favour beyond index order.
/// Ties matter mainly for the `fill` entries (-100) outside the top k_test when k_test < 10.
/// NaN scores rank below every number (they are treated as -infinity).
public enum RetrievalRecall {
    /// The cut-offs of the protocol.
    public static let cutoffs = [1, 5, 10]

    @inline(__always) static func key(_ s: Float) -> Float { s.isNaN ? -.infinity : s }

    /// 0-based rank of candidate `column` in `row` (see the type's tie rule).
    public static func rank(of column: Int, in row: RetrievalScores.Row, columns: Int, fill: Float) -> Int {
        let f = key(fill)
        var own = f
        var explicitBelow = 0  // explicit candidates with index < column
        for (i, s) in zip(row.indices, row.scores) {
            if i == column { own = key(s) }
            if i < column { explicitBelow += 1 }
        }
        var rank = 0
        for (i, s0) in zip(row.indices, row.scores) where i != column {
            let s = key(s0)
            if s > own || (s == own && i < column) { rank += 1 }
        }
        // Implicit candidates (score `fill`), other than `column` itself.
        let implicitCount = columns - row.indices.count
        if f > own {
            rank += implicitCount  // `column` is explicit here (an implicit one scores `fill`)
        } else if f == own {
            rank += column - explicitBelow  // implicit candidates with a lower index
        }
        return rank
    }

    /// Checks shapes and ground truth: i2t is images x texts, t2i texts x images,
    /// `txt2img[t]` is caption t's image, `img2txt[i]` lists image i's captions.
    public static func validate(i2t: RetrievalScores, t2i: RetrievalScores, txt2img: [Int], img2txt: [[Int]]) throws {
        let images = img2txt.count, texts = txt2img.count
        guard i2t.rows.count == images, i2t.columns == texts else {
            throw RetrievalError("image->text scores are \(i2t.rows.count) x \(i2t.columns), expected \(images) images x \(texts) texts")
        }
        guard t2i.rows.count == texts, t2i.columns == images else {
            throw RetrievalError("text->image scores are \(t2i.rows.count) x \(t2i.columns), expected \(texts) texts x \(images) images")
        }
        for (t, i) in txt2img.enumerated() where i < 0 || i >= images {
            throw RetrievalError("caption \(t) maps to image \(i), outside [0, \(images))")
        }
        for (i, caps) in img2txt.enumerated() {
            guard !caps.isEmpty else { throw RetrievalError("image \(i) has no caption") }
            for t in caps where t < 0 || t >= texts || txt2img[t] != i {
                throw RetrievalError("image \(i) lists caption \(t), which is not one of its captions")
            }
        }
        for (name, s) in [("image->text", i2t), ("text->image", t2i)] {
            for (q, r) in s.rows.enumerated() {
                guard r.indices.count == r.scores.count, Set(r.indices).count == r.indices.count,
                      r.indices.allSatisfy({ $0 >= 0 && $0 < s.columns }) else {
                    throw RetrievalError("\(name) row \(q): explicit indices must be distinct, in [0, \(s.columns)), one score each")
                }
            }
        }
    }

    /// ALBEF's rank per image: the best rank of any of its captions.
    public static func imageRanks(i2t: RetrievalScores, img2txt: [[Int]]) -> [Int] {
        i2t.rows.enumerated().map { i, row in
            img2txt[i].map { rank(of: $0, in: row, columns: i2t.columns, fill: i2t.fill) }.min() ?? Int.max
        }
    }

    /// Rank of each caption's image.
    public static func textRanks(t2i: RetrievalScores, txt2img: [Int]) -> [Int] {
        t2i.rows.enumerated().map { t, row in rank(of: txt2img[t], in: row, columns: t2i.columns, fill: t2i.fill) }
    }

    /// Percent of ranks below k.
    public static func recall(_ ranks: [Int], below k: Int) -> Double {
        guard !ranks.isEmpty else { return 0 }
        return 100 * Double(ranks.filter { $0 < k }.count) / Double(ranks.count)
    }

    /// TR@1/5/10, IR@1/5/10 and the means (ALBEF's `itm_eval`).
    public static func metrics(i2t: RetrievalScores, t2i: RetrievalScores, txt2img: [Int], img2txt: [[Int]]) throws -> RetrievalMetrics {
        try validate(i2t: i2t, t2i: t2i, txt2img: txt2img, img2txt: img2txt)
        let tr = imageRanks(i2t: i2t, img2txt: img2txt), ir = textRanks(t2i: t2i, txt2img: txt2img)
        let t = cutoffs.map { recall(tr, below: $0) }, i = cutoffs.map { recall(ir, below: $0) }
        let tm = (t[0] + t[1] + t[2]) / 3, im = (i[0] + i[1] + i[2]) / 3
        return RetrievalMetrics(txtR1: t[0], txtR5: t[1], txtR10: t[2], txtRMean: tm,
                                imgR1: i[0], imgR5: i[1], imgR10: i[2], imgRMean: im, rMean: (tm + im) / 2)
    }

    /// The `k` best candidates of `scores` by descending score, ties by ascending index (the
    /// same order as `rank`); k is clamped to the number of candidates.
    public static func topK(_ scores: UnsafeBufferPointer<Float>, k: Int) -> [Int] {
        let n = scores.count, k = max(0, min(k, n))
        guard k > 0 else { return [] }
        let better: (Int, Int) -> Bool = { a, b in
            let x = key(scores[a]), y = key(scores[b])
            return x != y ? x > y : a < b
        }
        if k * 8 >= n { return Array(Array(0..<n).sorted(by: better).prefix(k)) }
        // Keep a sorted buffer of the best k seen so far.
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for j in 0..<n {
            if best.count == k, !better(j, best[k - 1]) { continue }
            var lo = 0, hi = best.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if better(best[mid], j) { lo = mid + 1 } else { hi = mid }
            }
            best.insert(j, at: lo)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    public static func topK(_ scores: [Float], k: Int) -> [Int] {
        scores.withUnsafeBufferPointer { topK($0, k: k) }
    }
}

import Foundation

/// CIDEr-D as pycocoevalcap's `cider_scorer.py` computes it (reported as `CIDEr`): TF-IDF
/// weighted n-gram vectors (n = 1...4) compared by cosine similarity, each candidate weight
/// clipped to the reference's (so repeating a phrase does not pay), times a Gaussian penalty on
/// the length difference (sigma 6), averaged over orders and references, times 10.
///
/// The IDF comes from the evaluated set itself: df(g) is the number of images whose references
/// (the union over the image's references) contain g, and N the number of images; so a score
/// depends on every other image of the set, and corpus and per-image values are computed together.
public struct CIDErScorer {
    public static let maxOrder = 4
    public static let sigma = 6.0

    /// One image: its tokenized candidate and references, as word lists.
    public struct Image {
        public var candidate: [String]
        public var references: [[String]]
        public init(candidate: [String], references: [[String]]) {
            self.candidate = candidate
            self.references = references
        }
    }

    /// Corpus CIDEr-D (the mean of the per-image scores) and the per-image scores, in input order.
    public static func scores(_ images: [Image]) -> (corpus: Double, perImage: [Double]) {
        guard !images.isEmpty else { return (0, []) }
        let scorer = CIDErScorer(referenceSets: images.map(\.references))
        let perImage = images.map { scorer.score(candidate: $0.candidate, references: $0.references) }
        return (perImage.reduce(0, +) / Double(perImage.count), perImage)
    }

    /// ln(df(g)) of every n-gram that occurs in some image's references.
    private var logDocumentFrequency: [String: Double] = [:]
    /// ln N (pycocoevalcap's `ref_len`).
    let logImageCount: Double

    /// The document frequencies of the given images' references (one list of references per image).
    init(referenceSets: [[[String]]]) {
        logImageCount = log(Double(referenceSets.count))
        var df: [String: Int] = [:]
        for references in referenceSets {
            var seen = Set<String>()
            for r in references {
                for k in 1...Self.maxOrder { seen.formUnion(NGramCounts(r, order: k).grams) }
            }
            for g in seen { df[g, default: 0] += 1 }
        }
        logDocumentFrequency = df.mapValues { log(Double(max(1, $0))) }
    }

    /// The TF-IDF vector of a caption, one per order: count x (ln N - ln max(1, df)), n-grams in
    /// order of first occurrence; its norms; and its length as pycocoevalcap measures it (the
    /// number of bigram positions).
    struct Vector {
        var weights: [[(gram: String, weight: Double)]] = []
        var lookup: [[String: Double]] = []
        var norms: [Double] = []
        var length: Int = 0
    }

    func vector(_ words: [String]) -> Vector {
        var v = Vector()
        for k in 1...Self.maxOrder {
            let grams = NGramCounts(words, order: k)
            var entries: [(gram: String, weight: Double)] = []
            var lookup: [String: Double] = [:]
            var squares = 0.0
            for (gram, count) in grams.entries {
                let w = Double(count) * (logImageCount - (logDocumentFrequency[gram] ?? 0))
                entries.append((gram, w))
                lookup[gram] = w
                squares += w * w
                if k == 2 { v.length += count }
            }
            v.weights.append(entries)
            v.lookup.append(lookup)
            v.norms.append(squares.squareRoot())
        }
        return v
    }

    /// sim_k(c, r) for k = 1...4: sum over c's k-grams of min(v_c, v_r) x v_r, divided by both
    /// norms (unless one is 0, when the sum is 0 too), times exp(-(len c - len r)^2 / (2 sigma^2)).
    func similarity(_ c: Vector, _ r: Vector) -> [Double] {
        let delta = Double(c.length - r.length)
        // pycocoevalcap writes np.e ** x; pow keeps its rounding.
        let lengthPenalty = pow(M_E, -(delta * delta) / (2 * Self.sigma * Self.sigma))
        return (0..<Self.maxOrder).map { k in
            var value = 0.0
            for (gram, weight) in c.weights[k] {
                let referenceWeight = r.lookup[k][gram] ?? 0
                value += min(weight, referenceWeight) * referenceWeight
            }
            if c.norms[k] != 0 && r.norms[k] != 0 { value /= c.norms[k] * r.norms[k] }
            return value * lengthPenalty
        }
    }

    /// CIDEr-D of one image: 10 x the mean over references of the mean over orders of sim_k.
    func score(candidate: [String], references: [[String]]) -> Double {
        guard !references.isEmpty else { return 0 }
        let c = vector(candidate)
        var sum = [Double](repeating: 0, count: Self.maxOrder)
        for r in references {
            for (k, s) in similarity(c, vector(r)).enumerated() { sum[k] += s }
        }
        var mean = sum.reduce(0, +) / Double(Self.maxOrder)
        mean /= Double(references.count)
        return mean * 10
    }
}

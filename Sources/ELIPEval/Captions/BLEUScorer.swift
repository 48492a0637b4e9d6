import Foundation

/// The n-grams of a word sequence of one order, with counts, in order of first occurrence (the
/// order pycocoevalcap's dictionaries iterate in, so sums add in the same order).
struct NGramCounts {
    private(set) var grams: [String] = []
    private(set) var counts: [String: Int] = [:]

    /// The k-grams of `words` (k >= 1). Words never contain a space, so joining with one is a
    /// faithful key (pycocoevalcap uses tuples).
    init(_ words: [String], order k: Int) {
        guard words.count >= k else { return }
        for i in 0...(words.count - k) {
            let g = words[i..<(i + k)].joined(separator: " ")
            if let c = counts[g] {
                counts[g] = c + 1
            } else {
                counts[g] = 1
                grams.append(g)
            }
        }
    }

    subscript(_ gram: String) -> Int { counts[gram] ?? 0 }

    /// (n-gram, count) in order of first occurrence.
    var entries: [(gram: String, count: Int)] { grams.map { ($0, counts[$0] ?? 0) } }
}

/// What BLEU keeps of one image: pycocoevalcap's `cook_test` with the closest reference length.
public struct BLEUStatistics: Equatable, Sendable {
    /// Candidate words (T_i) and the reference length closest to it (ties take the shorter).
    public var testLength: Int
    public var referenceLength: Int
    /// Per order k = 1...4: candidate k-gram positions, and those matched by some reference
    /// (each distinct k-gram clipped to its largest count in any one reference).
    public var guess: [Int]
    public var correct: [Int]

    public init(testLength: Int, referenceLength: Int, guess: [Int], correct: [Int]) {
        self.testLength = testLength
        self.referenceLength = referenceLength
        self.guess = guess
        self.correct = correct
    }
}

/// BLEU-1..4 as pycocoevalcap's `bleu_scorer.py` computes them (option "closest"), on tokenized
/// captions. Its smoothing constants stay: a candidate with no matching 4-gram scores about 1e-5
/// rather than 0, and an empty candidate exactly 0 (through the brevity penalty).
public enum BLEUScorer {
    public static let maxOrder = 4
    /// pycocoevalcap's `tiny` and `small`, added to every numerator and denominator.
    static let tiny = 1e-15, small = 1e-9

    /// The statistics of a candidate against its references (words of tokenized captions).
    public static func statistics(candidate: [String], references: [[String]]) -> BLEUStatistics {
        let t = candidate.count
        // min over (|l - T|, l): the closest length, the shorter one on a tie.
        let closest = references.map(\.count).min { a, b in
            (abs(a - t), a) < (abs(b - t), b)
        } ?? 0
        var guess: [Int] = [], correct: [Int] = []
        for k in 1...maxOrder {
            let candidateGrams = NGramCounts(candidate, order: k)
            let referenceGrams = references.map { NGramCounts($0, order: k) }
            var matched = 0
            for (gram, count) in candidateGrams.entries {
                let allowed = referenceGrams.map { $0[gram] }.max() ?? 0
                matched += min(count, allowed)
            }
            guess.append(max(0, t - k + 1))
            correct.append(matched)
        }
        return BLEUStatistics(testLength: t, referenceLength: closest, guess: guess, correct: correct)
    }

    /// Bleu_1..Bleu_4 of one image (pycocoevalcap's per-image list).
    public static func scores(_ s: BLEUStatistics) -> [Double] {
        scores(testLength: s.testLength, referenceLength: s.referenceLength, guess: s.guess, correct: s.correct)
    }

    /// Corpus Bleu_1..Bleu_4: the statistics summed over the images, then the same formula.
    public static func corpusScores(_ images: [BLEUStatistics]) -> [Double] {
        var guess = [Int](repeating: 0, count: maxOrder), correct = guess
        var testLength = 0, referenceLength = 0
        for s in images {
            testLength += s.testLength
            referenceLength += s.referenceLength
            for k in 0..<maxOrder {
                guess[k] += s.guess[k]
                correct[k] += s.correct[k]
            }
        }
        return scores(testLength: testLength, referenceLength: referenceLength, guess: guess, correct: correct)
    }

    /// Bleu_n = (prod_{k<=n} (correct_k + tiny) / (guess_k + small))^(1/n) x BP, with
    /// BP = exp(1 - 1/ratio) when ratio = (T + tiny) / (R + small) < 1; float operations in
    /// pycocoevalcap's order.
    static func scores(testLength: Int, referenceLength: Int, guess: [Int], correct: [Int]) -> [Double] {
        var product = 1.0
        var bleu: [Double] = []
        for k in 0..<maxOrder {
            product *= (Double(correct[k]) + tiny) / (Double(guess[k]) + small)
            bleu.append(pow(product, 1.0 / Double(k + 1)))
        }
        let ratio = (Double(testLength) + tiny) / (Double(referenceLength) + small)
        if ratio < 1 {
            let brevityPenalty = exp(1 - 1 / ratio)
            bleu = bleu.map { $0 * brevityPenalty }
        }
        return bleu
    }
}

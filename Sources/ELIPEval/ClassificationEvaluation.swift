import ELIPDistributed
import ELIPModel
import Foundation

/// The contiguous block of `count` samples that rank `rank` of `worldSize` evaluates: the blocks
/// of all ranks cover every sample exactly once (no padding with repeated samples).
public func evaluationBlock(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
    (rank * count / worldSize)..<((rank + 1) * count / worldSize)
}

/// Accuracy of a classification head over a split (VE.py's and NLVR.py's evaluate: argmax of the
/// online head == label), every sample once under any number of ranks; counts summed over ranks.
public struct ClassificationResult {
    public let samples: Int
    public let correct: Int
    /// confusion[label][prediction].
    public let confusion: [[Int]]
    /// The class names in label order, for the JSON's confusion rows.
    public let labelNames: [String]
    public let seconds: Double
    public var accuracy: Double { samples > 0 ? 100 * Double(correct) / Double(samples) : 0 }
    /// The majority-class accuracy of the split (what a constant answer scores).
    public var majorityBaseline: Double {
        samples > 0 ? 100 * Double(confusion.map { $0.reduce(0, +) }.max() ?? 0) / Double(samples) : 0
    }

    public func jsonObject(extra: [String: Any]) -> [String: Any] {
        var o = extra
        o["metric"] = "accuracy"
        o["accuracy"] = accuracy
        o["samples"] = samples
        o["correct"] = correct
        o["majority_baseline"] = majorityBaseline
        o["confusion"] = ["rows": "label (\(labelNames.joined(separator: ", ")))", "columns": "prediction", "counts": confusion]
        return o
    }

    /// Runs `logits(rows)` ([rows.count x classes], row-major) over this rank's block in batches,
    /// takes torch.max's first maximum as the prediction, and sums the confusion over the ranks.
    static func evaluate(labels: [Int], labelNames: [String], annotationFile: String, batchSize: Int,
                         communicator comm: Communicator, progress: (Int, Int) -> Void,
                         logits: (Range<Int>) throws -> [Float]) throws -> ClassificationResult {
        let start = Date()
        let classes = labelNames.count
        var counts = [Int64](repeating: 0, count: classes * classes)
        let mine = evaluationBlock(count: labels.count, rank: comm.rank, worldSize: comm.size)
        var done = 0
        for lo in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let rows = lo..<min(lo + batchSize, mine.upperBound)
            let out = try logits(rows)
            for (b, i) in rows.enumerated() {
                let row = Array(out[(b * classes)..<((b + 1) * classes)])
                guard row.allSatisfy(\.isFinite) else {
                    throw RetrievalError("\(annotationFile): entry \(i): the model's logits are not finite (\(row)); the weights are damaged or diverged")
                }
                var prediction = 0
                for c in 1..<classes where row[c] > row[prediction] { prediction = c }
                counts[labels[i] * classes + prediction] += 1
            }
            done += rows.count
            progress(done, mine.count)
        }
        try comm.allReduce(&counts, op: .sum)
        let confusion = (0..<classes).map { l in (0..<classes).map { Int(counts[l * classes + $0]) } }
        let correct = (0..<classes).map { confusion[$0][$0] }.reduce(0, +)
        return ClassificationResult(samples: Int(counts.reduce(0, +)), correct: correct, confusion: confusion,
                                    labelNames: labelNames, seconds: Date().timeIntervalSince(start))
    }
}

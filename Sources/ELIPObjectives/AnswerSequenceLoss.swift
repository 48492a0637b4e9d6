import ELIPTensor

/// Sequence losses of a causal decoder summed over each sequence's tokens (ALBEF's
/// `BertLMHeadModel(..., reduction='none')`: VQA's answer loss and `rank_answer`'s scores),
/// optionally mixed with distillation from a teacher's soft targets:
///   loss_s = sum over predicted tokens t of s: (1 - alpha) (-log p_t[y_t]) + alpha (-sum_v log p_t[v] q_t[v]).
/// No label smoothing (model_vqa.py passes none). The rows are those of
/// `CausalLanguageModeling.predictingRows`: row r predicts `labels[r]` for sequence `sequenceOf[r]`.
public enum AnswerSequenceLoss {
    /// `logits` [R, V] of the predicting rows; `teacherProbabilities` [R, V] (nil: no
    /// distillation). Returns the per-sequence losses (no gradient) and `sum_s weights[s] * loss_s`
    /// scaled by `scale`, differentiable in `logits`.
    public static func loss(logits: Tensor, labels: [Int], sequenceOf: [Int], sequences: Int,
                            teacherProbabilities: Tensor?, alpha: Float, weights: [Float]? = nil,
                            scale: Float = 1) throws -> (total: Tensor, perSequence: [Float]) {
        guard logits.rank == 2, labels.count == logits.shape[0], sequenceOf.count == labels.count else {
            throw TensorError.shapeMismatch(op: "answer sequence loss (logits vs labels)", lhs: logits.shape, rhs: [labels.count, sequenceOf.count])
        }
        let rows = logits.shape[0], vocab = logits.shape[1]
        if let bad = labels.first(where: { $0 < 0 || $0 >= vocab }) {
            throw TensorError.invalidArgument(op: "answer sequence loss", reason: "label \(bad) outside [0, \(vocab))")
        }
        if let bad = sequenceOf.first(where: { $0 < 0 || $0 >= sequences }) {
            throw TensorError.invalidArgument(op: "answer sequence loss", reason: "sequence \(bad) outside [0, \(sequences))")
        }
        if let weights, weights.count != sequences {
            throw TensorError.shapeMismatch(op: "answer sequence loss (weights vs sequences)", lhs: [weights.count], rhs: [sequences])
        }
        if let t = teacherProbabilities, t.shape != logits.shape {
            throw TensorError.shapeMismatch(op: "answer sequence loss (teacher vs logits)", lhs: t.shape, rhs: logits.shape)
        }
        let hardWeight = teacherProbabilities == nil ? 1 : 1 - alpha
        let logp = logits.logSoftmax()
        let lp = logp.toArray(), q = teacherProbabilities?.toArray()
        // Target matrix: the loss is -sum(log p * targets); row r's targets carry its sequence's weight.
        var targets = [Float](repeating: 0, count: rows * vocab)
        var perSequence = [Double](repeating: 0, count: sequences)
        for r in 0..<rows {
            let s = sequenceOf[r], base = r * vocab
            let w = (weights?[s] ?? 1) * scale
            var rowLoss = -Double(hardWeight) * Double(lp[base + labels[r]])
            targets[base + labels[r]] += hardWeight * w
            if let q {
                var soft = 0.0
                for v in 0..<vocab {
                    soft -= Double(lp[base + v]) * Double(q[base + v])
                    targets[base + v] += alpha * w * q[base + v]
                }
                rowLoss += Double(alpha) * soft
            }
            perSequence[s] += rowLoss
        }
        let total = try (logp * Tensor(targets, shape: [rows, vocab])).sum().scaled(-1)
        return (total, perSequence.map(Float.init))
    }
}

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
        let logp = logits.logSoftmax()
        let rowWeight = sequenceOf.map { (weights?[$0] ?? 1) * scale }
        var perSequence = [Double](repeating: 0, count: sequences)
        guard let teacherProbabilities else {
            // Hard targets only (rank_answer, no distillation): pick -log p[label] per row rather
            // than a dense [R, V] target matrix (R = questions x k x tokens at test time).
            for r in 0..<rows { perSequence[sequenceOf[r]] -= Double(logp[flat: r * vocab + labels[r]]) }
            let picked = try logp.reshaped([rows * vocab, 1]).gatherRows((0..<rows).map { $0 * vocab + labels[$0] })
            let total = try (picked * Tensor(rowWeight, shape: [rows, 1])).sum().scaled(-1)
            return (total, perSequence.map(Float.init))
        }
        let lp = logp.toArray(), q = teacherProbabilities.toArray()
        // Target matrix: the loss is -sum(log p * targets); row r's targets carry its sequence's weight.
        var targets = [Float](repeating: 0, count: rows * vocab)
        for r in 0..<rows {
            let base = r * vocab, w = rowWeight[r]
            var soft = 0.0
            for v in 0..<vocab {
                soft -= Double(lp[base + v]) * Double(q[base + v])
                targets[base + v] = alpha * w * q[base + v]
            }
            targets[base + labels[r]] += (1 - alpha) * w
            perSequence[sequenceOf[r]] += Double(1 - alpha) * -Double(lp[base + labels[r]]) + Double(alpha) * soft
        }
        let total = try (logp * Tensor(targets, shape: [rows, vocab])).sum().scaled(-1)
        return (total, perSequence.map(Float.init))
    }
}

import ELIPTensor

/// Ids of the special tokens of a vocabulary, as its tokenizer defines them (never literals in
/// model code).
public struct SpecialTokens: Equatable, Sendable {
    public var pad: Int, unknown: Int, cls: Int, sep: Int, mask: Int

    public init(pad: Int, unknown: Int, cls: Int, sep: Int, mask: Int) {
        self.pad = pad
        self.unknown = unknown
        self.cls = cls
        self.sep = sep
        self.mask = mask
    }

    /// bert-base-uncased's WordPiece vocabulary: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
    /// [MASK] 103 (what a model uses when no vocabulary file is at hand, e.g. a benchmark).
    public static let bertBaseUncased = SpecialTokens(pad: 0, unknown: 100, cls: 101, sep: 102, mask: 103)
}

/// Masked language modelling as ALBEF does it (SPEC §3): each token with probability p, never
/// padding or [CLS]; of the masked, 80% become [MASK], half of the rest a random id, the rest stay;
/// the loss is cross-entropy on the masked positions, mixed with distillation from a teacher.
public struct MaskedLanguageModeling: Sendable {
    public let probability: Float
    public let vocabularySize: Int
    public let specials: SpecialTokens

    public init(probability: Float, vocabularySize: Int, specials: SpecialTokens) {
        self.probability = probability
        self.vocabularySize = vocabularySize
        self.specials = specials
    }

    /// Masked input ids and labels (-100 where not masked). The draws for token i come from
    /// (seed, firstToken + i), so a token's fate depends only on its position in the global batch.
    public func mask(_ ids: [Int], seed: UInt64, firstToken: Int = 0) -> (inputs: [Int], labels: [Int]) {
        var input = ids
        var labels = [Int](repeating: -100, count: ids.count)
        for i in ids.indices {
            let k = 4 * (firstToken + i)
            let masked = CounterRandom.uniform(seed: seed, index: k) < probability && ids[i] != specials.pad && ids[i] != specials.cls
            let replace = CounterRandom.uniform(seed: seed, index: k + 1) < 0.8
            let random = CounterRandom.uniform(seed: seed, index: k + 2) < 0.5
            let word = Int(CounterRandom.mix(seed &+ UInt64(k + 3)) % UInt64(vocabularySize))
            guard masked else { continue }
            labels[i] = ids[i]
            if replace { input[i] = specials.mask } else if random { input[i] = word }
        }
        return (input, labels)
    }

    /// Masked inputs given by the caller (a recorded step), checked against the batch.
    public static func checkGiven(inputs: [Int], labels: [Int], count: Int) throws -> (inputs: [Int], labels: [Int]) {
        guard inputs.count == count, labels.count == count else {
            throw TensorError.shapeMismatch(op: "given MLM inputs", lhs: [count], rhs: [inputs.count, labels.count])
        }
        return (inputs, labels)
    }

    /// Flat rows of a [B * L] batch (b * length + t, ascending, e.g. `maskedRows`) as the
    /// positions of each entry: what a layer stack reading only those rows takes.
    public static func positionsPerEntry(rows: [Int], entries: Int, length: Int) -> [[Int]] {
        var out = [[Int]](repeating: [], count: entries)
        for r in rows { out[r / length].append(r % length) }
        return out
    }

    /// `scale` ((1 - alpha) CE(logits, labels) + alpha softCE(logits, teacher)) over the masked
    /// rows: `logits` and `teacherProbabilities` [M, vocab], `labels` [M].
    public static func distilledLoss(logits: Tensor, labels: [Int], teacherProbabilities: Tensor, alpha: Float,
                                     scale: Float = 1) throws -> Tensor {
        let hard = try logits.crossEntropy(labels: labels)
        let soft = try logits.softCrossEntropy(targets: teacherProbabilities)
        return try (hard.scaled(1 - alpha) + soft.scaled(alpha)).scaled(scale)
    }
}

/// Captioning loss of a causal decoder (BLIP's LM, SPEC-BLIP §5.3): position t predicts token
/// t + 1; targets of -100 (padding, the prompt) are ignored; cross-entropy with label smoothing,
/// averaged over every valid target of the batch.
public enum CausalLanguageModeling {
    /// The rows of a [B * L] sequence batch that predict a token (row b*L+t predicts
    /// targets[b*L+t+1] unless that is ignored) and their labels.
    public static func predictingRows(targets: [Int], batch: Int, length: Int, ignoreIndex: Int = -100) -> (rows: [Int], labels: [Int]) {
        var rows: [Int] = [], labels: [Int] = []
        for i in 0..<batch {
            for t in 0..<max(length - 1, 0) where targets[i * length + t + 1] != ignoreIndex {
                rows.append(i * length + t)
                labels.append(targets[i * length + t + 1])
            }
        }
        return (rows, labels)
    }

    /// `logits` [B, L, V]; `targets` [B * L] unshifted (targets[b, 0] is never predicted).
    public static func loss(logits: Tensor, targets: [Int], labelSmoothing: Float, ignoreIndex: Int = -100) throws -> Tensor {
        guard logits.rank == 3, targets.count == logits.shape[0] * logits.shape[1] else {
            throw TensorError.shapeMismatch(op: "causal LM loss (logits vs targets)", lhs: logits.shape, rhs: [targets.count])
        }
        return try loss(hidden: logits, targets: targets, labelSmoothing: labelSmoothing, ignoreIndex: ignoreIndex) { $0 }
    }

    /// The same loss from decoder states `hidden` [B, L, H], applying the vocabulary `head`
    /// ([N, H] -> [N, V]) only to the rows that predict a token. Equal to applying it to every row:
    /// padding and last positions add nothing to the loss or its gradient, but in a small model the
    /// vocabulary projection of every row is most of a training step.
    public static func loss(hidden: Tensor, targets: [Int], labelSmoothing: Float, ignoreIndex: Int = -100,
                            head: (Tensor) throws -> Tensor) throws -> Tensor {
        guard hidden.rank == 3, targets.count == hidden.shape[0] * hidden.shape[1] else {
            throw TensorError.shapeMismatch(op: "causal LM loss (decoder states vs targets)", lhs: hidden.shape, rhs: [targets.count])
        }
        let b = hidden.shape[0], l = hidden.shape[1], h = hidden.shape[2]
        let (rows, labels) = predictingRows(targets: targets, batch: b, length: l, ignoreIndex: ignoreIndex)
        guard !rows.isEmpty else { return Tensor(scalar: 0) }
        let predictions = try head(hidden.reshaped([b * l, h]).gatherRows(rows))
        return try predictions.crossEntropy(labels: labels, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
    }
}

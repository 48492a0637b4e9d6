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
    /// `logits` [B, L, V]; `targets` [B * L] unshifted (targets[b, 0] is never predicted).
    public static func loss(logits: Tensor, targets: [Int], labelSmoothing: Float, ignoreIndex: Int = -100) throws -> Tensor {
        guard logits.rank == 3, targets.count == logits.shape[0] * logits.shape[1] else {
            throw TensorError.shapeMismatch(op: "causal LM loss (logits vs targets)", lhs: logits.shape, rhs: [targets.count])
        }
        let b = logits.shape[0], l = logits.shape[1], v = logits.shape[2]
        var rows: [Int] = [], labels: [Int] = []
        for i in 0..<b {
            for t in 0..<(l - 1) where targets[i * l + t + 1] != ignoreIndex {
                rows.append(i * l + t)
                labels.append(targets[i * l + t + 1])
            }
        }
        guard !rows.isEmpty else { return Tensor(scalar: 0) }
        let predictions = try logits.reshaped([b * l, v]).gatherRows(rows)
        return try predictions.crossEntropy(labels: labels, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
    }
}

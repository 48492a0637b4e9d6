import ELIPTensor

/// What ELIP's pruning needs from a vision encoder: running one block, and the softmax attention
/// of query position 0 in a block. Any ViT-like encoder (timm's, CLIP's) conforms; the pruning
/// never sees its layer types.
public protocol PrunableVisionEncoder: AnyObject {
    /// Patches per side of the image grid (N0 = patchGrid²).
    var patchGrid: Int { get }
    /// Tokens entering the first block ([CLS] first) for normalised images [B, 3, H, W].
    func embed(_ images: Tensor) throws -> Tensor
    /// The normalisation applied to the tokens after the last block.
    func finalNorm(_ x: Tensor) throws -> Tensor
    /// Number of transformer blocks.
    var blockCount: Int { get }
    /// Block `index` on tokens x [B, T, D] (the residual stream).
    func runBlock(_ index: Int, _ x: Tensor) throws -> Tensor
    /// Attention probabilities [B, heads, 1, T] of query position 0 in block `index`'s
    /// self-attention on x (the block's own normalisation included).
    func firstQueryAttention(block index: Int, _ x: Tensor) throws -> Tensor
}

/// Tokens after the blocks, and what pruning did on the way.
public struct PrunedBlocksOutput {
    public let tokens: Tensor
    /// Per stage, per sample: kept positions among the stage's non-[CLS] input tokens, ascending.
    public let keptIndices: [[[Int]]]
    /// Sequence length entering each block ([CLS] and merged token included).
    public let sequenceLengths: [Int]
}

extension PrunableVisionEncoder {
    /// Runs every block on x, pruning at the start of each stage when `pruning` is given (SPEC
    /// §2); without it, the plain encoder.
    /// `from start`: x is the output of blocks 0..<start (which must come before the first
    /// pruning stage, see `textIndependentBlocks`); their lengths are x's.
    public func runBlocks(_ x: Tensor, from start: Int = 0, pruning: ELIPPruning?) throws -> PrunedBlocksOutput {
        let free = textIndependentBlocks(pruning?.schedule)
        guard start >= 0, start <= free else {
            throw TensorError.invalidArgument(op: "pruned ViT", reason: "cannot resume at block \(start): pruning starts at block \(free)")
        }
        var x = x
        var kept: [[[Int]]] = []
        var lengths = [Int](repeating: x.shape[1], count: start)
        var stages = [Int: Int]()
        if let pruning { for (j, l) in pruning.schedule.beginLayer.enumerated() { stages[l] = j } }
        for i in start..<blockCount {
            if let pruning, let j = stages[i] {
                let r = try pruning.pruneStage(j, tokens: x, encoder: self)
                x = r.tokens
                kept.append(r.keptIndices)
            }
            lengths.append(x.shape[1])
            x = try runBlock(i, x)
        }
        return PrunedBlocksOutput(tokens: x, keptIndices: kept, sequenceLengths: lengths)
    }

    /// Blocks before the first pruning stage: their output depends on the image only, so passes
    /// that see the same image under different captions can share them.
    public func textIndependentBlocks(_ schedule: PruneConfig?) -> Int {
        min(schedule?.beginLayer.min() ?? blockCount, blockCount)
    }

    /// Tokens after `embed` and blocks 0..<count, for `runBlocks(_:from: count, pruning:)`.
    public func runPrefix(_ images: Tensor, blocks count: Int) throws -> Tensor {
        var x = try embed(images)
        for i in 0..<min(count, blockCount) { x = try runBlock(i, x) }
        return x
    }

    /// Images to final-normed tokens, pruned when `pruning` is given.
    public func encode(_ images: Tensor, pruning: ELIPPruning? = nil) throws -> PrunedBlocksOutput {
        try encode(prefix: embed(images), from: 0, pruning: pruning)
    }

    /// The same from `prefix`, the output of `runPrefix(_:blocks: start)`.
    public func encode(prefix: Tensor, from start: Int, pruning: ELIPPruning?) throws -> PrunedBlocksOutput {
        let out = try runBlocks(prefix, from: start, pruning: pruning)
        return PrunedBlocksOutput(tokens: try finalNorm(out.tokens), keptIndices: out.keptIndices, sequenceLengths: out.sequenceLengths)
    }
}

/// ELIP's text-guided vision-token pruning (SPEC §2; guoyang9/ELIP ALBEF/models/vit.py).
///
/// At the input x of stage j's first layer, for every sample:
///  1. fused query (no gradient): a copy of x whose [CLS] is (1 - λ) text_cls + λ x[CLS];
///  2. look-ahead (no gradient): the copy runs through the stage's layers; the stage's last layer
///     gives its attention probabilities;
///  3. score of token k: attention of query position 0 to key k, averaged over heads;
///  4. keep the K_j best tokens in their original order, after [CLS];
///  5. merge the rest into one token, weighted by their scores / (sum + 1e-6) — the weights are
///     constants, the features carry gradients;
///  6. new sequence: [CLS, kept..., merged] of length K_j + 2.
///
/// With `merge: false` (an ablation) step 5 is skipped and the pruned tokens are dropped: the new
/// sequence is [CLS, kept...] of length K_j + 1, and a later stage's candidates are the kept
/// tokens only (its kept positions still index its non-[CLS] input tokens).
///
/// With `scoring: inline` (an ablation, not the paper's method) step 2 is skipped: the scores are
/// the fused query's attention in the stage's FIRST layer, on the stage's input tokens.
public struct ELIPPruning {
    public let schedule: PruneConfig
    public let keepCounts: [Int]
    /// Text [CLS] output states [B, D] of the paired captions (used as constants).
    public let textCLS: Tensor
    /// λ: weight of the image [CLS] in the fused query (the schedule's `lambda`).
    public var lambda: Float { schedule.lambda }

    public init(schedule: PruneConfig, patchCount: Int, textCLS: Tensor) {
        self.schedule = schedule
        self.keepCounts = schedule.keepCounts(patchCount: patchCount)
        self.textCLS = textCLS.detached()
    }

    public struct StageResult {
        public let tokens: Tensor
        /// Per sample: kept positions among the stage's non-[CLS] input tokens, ascending.
        public let keptIndices: [[Int]]
    }

    /// Which tokens a stage keeps and how the rest merge, per sample.
    public struct Selection {
        /// Kept positions among the non-[CLS] tokens, ascending, per sample.
        public let kept: [[Int]]
        /// Rows of the flattened [B * T, D] input that form [CLS, kept...] per sample.
        let gatherIndex: [Int]
        /// Merge weight of every input token ([B * T]; zero for [CLS] and kept tokens).
        public let mergeWeights: [Float]
    }

    /// Prunes `tokens` [B, T, D] at the start of stage `stage`.
    public func pruneStage(_ stage: Int, tokens x: Tensor, encoder: PrunableVisionEncoder) throws -> StageResult {
        let s = try scores(stage, tokens: x, encoder: encoder)
        let selection = select(scores: s, batch: x.shape[0], tokens: x.shape[1], keep: keepCounts[stage])
        return StageResult(tokens: try apply(selection, to: x), keptIndices: selection.kept)
    }

    /// Steps 1-3: per sample, the head-averaged attention of the fused query to every non-[CLS]
    /// token in the stage's last layer ([B * (T - 1)]), computed without gradient.
    public func scores(_ stage: Int, tokens x: Tensor, encoder: PrunableVisionEncoder) throws -> [Float] {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2]
        guard textCLS.shape == [b, d] else {
            throw TensorError.shapeMismatch(op: "ELIP pruning (text [CLS] vs image tokens)", lhs: textCLS.shape, rhs: x.shape)
        }
        guard keepCounts[stage] <= t - 1 else {
            throw TensorError.invalidArgument(op: "ELIP pruning", reason: "stage \(stage) keeps \(keepCounts[stage]) of \(t - 1) tokens")
        }
        let first = schedule.beginLayer[stage]
        let count = schedule.scoring == .inline ? 1 : schedule.numActLayers[stage]
        guard count >= 1, first + count <= encoder.blockCount else {
            throw TensorError.invalidArgument(op: "ELIP pruning", reason: "stage \(stage) needs blocks \(first)..<\(first + count) of \(encoder.blockCount)")
        }
        return try StepProfiler.section(schedule.scoring == .inline ? "inline-scoring" : "look-ahead") { try Autograd.noGrad {
            let query = x.copy()
            query.withUnsafeMutableBufferPointer { q in
                textCLS.withUnsafeBufferPointer { txt in
                    for i in 0..<b {
                        for k in 0..<d { q[i * t * d + k] = (1 - lambda) * txt[i * d + k] + lambda * q[i * t * d + k] }
                    }
                }
            }
            var h = query
            for i in first..<(first + count - 1) { h = try encoder.runBlock(i, h) }
            // Only query position 0's attention row is needed in the scoring layer.
            let probs = try encoder.firstQueryAttention(block: first + count - 1, h)  // [B, H, 1, T]
            let heads = probs.shape[1]
            var s = [Float](repeating: 0, count: b * (t - 1))
            probs.withUnsafeBufferPointer { p in
                for i in 0..<b {
                    for hh in 0..<heads {
                        let row = (i * heads + hh) * t
                        for k in 1..<t { s[i * (t - 1) + k - 1] += p[row + k] }
                    }
                    for k in 0..<(t - 1) { s[i * (t - 1) + k] /= Float(heads) }
                }
            }
            return s
        } }
    }

    /// Steps 4-5: the `keep` best tokens in original order, and merge weights for the rest.
    public func select(scores: [Float], batch b: Int, tokens t: Int, keep: Int) -> Selection {
        var gatherIndex: [Int] = []
        var mergeWeights = [Float](repeating: 0, count: b * t)
        var kept: [[Int]] = []
        for i in 0..<b {
            let row = Array(scores[(i * (t - 1))..<((i + 1) * (t - 1))])
            // Descending by score; ties broken by position so the choice is deterministic.
            let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
            let keepSet = order.prefix(keep).sorted()
            kept.append(keepSet)
            gatherIndex.append(i * t)  // [CLS]
            gatherIndex.append(contentsOf: keepSet.map { i * t + 1 + $0 })
            let pruned = order.dropFirst(keep)
            let total = pruned.reduce(Float(0)) { $0 + row[$1] } + 1e-6
            for k in pruned { mergeWeights[i * t + 1 + k] = row[k] / total }
        }
        return Selection(kept: kept, gatherIndex: gatherIndex, mergeWeights: mergeWeights)
    }

    /// Step 6: [CLS, kept..., merged] from the real tokens; gradients flow into the kept and the
    /// merged features, not into the selection. Without merging, [CLS, kept...].
    public func apply(_ selection: Selection, to x: Tensor) throws -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2], keep = selection.kept.first?.count ?? 0
        let keptTokens = try x.reshaped([b * t, d]).gatherRows(selection.gatherIndex).reshaped([b, keep + 1, d])
        guard schedule.merge else { return keptTokens }
        let merged = try x.mergeRows(weights: selection.mergeWeights)
        return try Tensor.concat([keptTokens, merged], axis: 1)
    }
}

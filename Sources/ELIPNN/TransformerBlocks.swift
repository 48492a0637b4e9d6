import ELIPTensor

/// Pre-LN transformer block (timm's ViT, CLIP): x += attn(norm1(x)); x += mlp(norm2(x)).
public final class PreNormBlock {
    public let norm1: LayerNorm, attention: MultiHeadAttention
    public let norm2: LayerNorm, mlp: MLP

    public init(norm1: LayerNorm, attention: MultiHeadAttention, norm2: LayerNorm, mlp: MLP) {
        self.norm1 = norm1
        self.attention = attention
        self.norm2 = norm2
        self.mlp = mlp
    }

    public func callAsFunction(_ x: Tensor, mask: AttentionMask = .none) throws -> Tensor {
        let h = try x + attention(norm1(x), mask: mask)
        return try h + mlp(norm2(h))
    }

    /// Self-attention probabilities [B, heads, T, T] of this block on x (the rest is not run).
    public func attentionProbabilities(_ x: Tensor) throws -> Tensor {
        try attention.probabilities(norm1(x))
    }

    /// Probabilities [B, heads, 1, T] of query position 0 in this block's self-attention on x.
    public func firstQueryAttention(_ x: Tensor) throws -> Tensor {
        try attention.firstQueryProbabilities(norm1(x))
    }
}

/// The cross-attention input of one post-LN layer call.
public enum CrossAttentionInput {
    /// Batch entry b attends to entry `rows[b]` of keys and values projected once (an image's
    /// tokens shared by several captions).
    case cached(MultiHeadAttention.KeyValues, rows: [Int])
    /// Batch entry b attends to `context[b]`, projected now, with an optional mask on its keys.
    case context(Tensor, mask: AttentionMask)
}

/// Post-LN transformer layer with optional cross-attention, named as HuggingFace's BERT
/// (`attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`, `crossattention.*`,
/// `intermediate.dense`, `output.dense`, `output.LayerNorm`), which ALBEF's and BLIP's text and
/// fusion encoders, RoBERTa and METER's co-attention layers all use:
///   h = LN(x + dropout(attn(x)));  h = LN(h + dropout(cross(h, context)));  out = LN(h + dropout(ffn(h))).
public final class PostNormTransformerLayer {
    /// Attention, its output projection and the LayerNorm after the residual.
    public final class Sublayer {
        public let attention: MultiHeadAttention
        public let layerNorm: LayerNorm

        public init(_ scope: Scope, hidden: Int, keyWidth: Int, heads: Int, eps: Float) throws {
            let s = scope["self"]
            attention = try MultiHeadAttention(
                projections: .separate(query: Linear(s["query"], in: hidden, out: hidden),
                                       key: Linear(s["key"], in: keyWidth, out: hidden),
                                       value: Linear(s["value"], in: keyWidth, out: hidden)),
                output: Linear(scope["output"]["dense"], in: hidden, out: hidden), heads: heads)
            layerNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: hidden, eps: eps)
        }

        /// A cross-attention whose key and value Linears are `other`'s (one parameter each, also
        /// named under this scope): ALBEF's NLVR2 `share_cross_attention`. Query, output dense
        /// and LayerNorm are its own.
        public init(_ scope: Scope, hidden: Int, heads: Int, eps: Float, sharingKeyValueOf other: Sublayer) throws {
            guard case let .separate(_, key, value) = other.attention.projections else {
                throw TensorError.invalidArgument(op: "shared cross-attention", reason: "needs separate key and value projections")
            }
            let s = scope["self"]
            let query = try Linear(s["query"], in: hidden, out: hidden)
            for (leaf, shared) in [("key", key), ("value", value)] {
                try s[leaf].tie("weight", to: shared.weight)
                if let bias = shared.bias { try s[leaf].tie("bias", to: bias) }
            }
            attention = try MultiHeadAttention(projections: .separate(query: query, key: key, value: value),
                                               output: Linear(scope["output"]["dense"], in: hidden, out: hidden), heads: heads)
            layerNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: hidden, eps: eps)
        }

        public var parameters: [Tensor] { attention.parameters + layerNorm.parameters }

        /// LN(x + dropout(h)).
        func residual(_ h: Tensor, _ x: Tensor, _ dropout: DropoutStream?) throws -> Tensor {
            let d = try dropout.map { try $0.hiddenDropout(h) } ?? h
            return try layerNorm(d + x)
        }
    }

    public let selfAttention: Sublayer
    public let crossAttention: Sublayer?
    public let feedForward: MLP
    public let outputNorm: LayerNorm

    /// `crossAttentionWidth`: width of the tokens the cross-attention reads (nil: no
    /// cross-attention in this layer).
    public init(_ scope: Scope, hidden: Int, heads: Int, intermediate: Int, eps: Float,
                crossAttentionWidth: Int? = nil, activation: Activation = .gelu) throws {
        selfAttention = try Sublayer(scope["attention"], hidden: hidden, keyWidth: hidden, heads: heads, eps: eps)
        crossAttention = try crossAttentionWidth.map {
            try Sublayer(scope["crossattention"], hidden: hidden, keyWidth: $0, heads: heads, eps: eps)
        }
        feedForward = try MLP(fc1: Linear(scope["intermediate"]["dense"], in: hidden, out: intermediate),
                              fc2: Linear(scope["output"]["dense"], in: intermediate, out: hidden), activation: activation)
        outputNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: hidden, eps: eps)
    }

    /// A layer from existing sub-layers, e.g. a decoder layer that has its own self-attention but
    /// shares its cross-attention and feed-forward with an encoder layer (BLIP).
    public init(selfAttention: Sublayer, crossAttention: Sublayer?, feedForward: MLP, outputNorm: LayerNorm) {
        self.selfAttention = selfAttention
        self.crossAttention = crossAttention
        self.feedForward = feedForward
        self.outputNorm = outputNorm
    }

    /// Every parameter of the layer, sub-layer by sub-layer.
    public var parameters: [Tensor] {
        selfAttention.parameters + (crossAttention?.parameters ?? []) + feedForward.parameters + outputNorm.parameters
    }

    /// One layer. `cross` nil skips the cross-attention (BLIP's text mode); giving it to a layer
    /// without cross-attention is an error.
    public func callAsFunction(_ x: Tensor, mask: AttentionMask, cross: CrossAttentionInput? = nil,
                               dropout: DropoutStream?) throws -> Tensor {
        let h = try selfAttention.residual(selfAttention.attention(x, mask: mask, dropout: dropout), x, dropout)
        return try crossAndFeedForward(h, cross: cross, dropout: dropout)
    }

    /// The cross-attention sub-layer (if `cross`), then the feed-forward one.
    private func crossAndFeedForward(_ x: Tensor, cross: CrossAttentionInput?, dropout: DropoutStream?) throws -> Tensor {
        var h = x
        if let cross {
            let crossAttention = try requireCrossAttention()
            let c: Tensor
            switch cross {
            case let .cached(kv, rows): c = try crossAttention.attention(h, attending: kv, rows: rows, dropout: dropout)
            case let .context(context, mask): c = try crossAttention.attention(h, context: context, mask: mask, dropout: dropout)
            }
            h = try crossAttention.residual(c, h, dropout)
        }
        return try feedForwardResidual(h, dropout)
    }

    /// LN(h + dropout(ffn(h))): every layer's last sub-layer.
    private func feedForwardResidual(_ h: Tensor, _ dropout: DropoutStream?) throws -> Tensor {
        let f = try feedForward(h)
        let d = try dropout.map { try $0.hiddenDropout(f) } ?? f
        return try outputNorm(d + h)
    }

    private func requireCrossAttention() throws -> Sublayer {
        guard let crossAttention else {
            throw TensorError.invalidArgument(op: "transformer layer", reason: "cross-attention input given to a layer without cross-attention")
        }
        return crossAttention
    }

    /// Position 0 of this layer's output, [B, 1, H] (what a pooler, an ITM head or a [CLS]
    /// feature on the last layer reads): `rows(x, positions: [[0], [0], ...])`.
    public func firstRow(_ x: Tensor, mask: AttentionMask, cross: CrossAttentionInput? = nil,
                         dropout: DropoutStream?) throws -> Tensor {
        try rows(x, positions: [[Int]](repeating: [0], count: x.shape.first ?? 0), mask: mask, cross: cross, dropout: dropout)
    }

    /// Positions `positions[b]` of entry b of this layer's output, [B, P, H] (P positions per
    /// entry, the same number for all): queries, cross-attention and feed-forward for those rows
    /// only, keys and values from every row of `x` — the rows a loss reads from the last layer at
    /// a fraction of the cost. Without dropout equal to gathering them from `self(x, ...)`; with
    /// dropout the masks are drawn for the smaller tensors.
    public func rows(_ x: Tensor, positions: [[Int]], mask: AttentionMask, cross: CrossAttentionInput? = nil,
                     dropout: DropoutStream?) throws -> Tensor {
        guard x.rank == 3, positions.count == x.shape[0], let p = positions.first?.count, p > 0,
              positions.allSatisfy({ $0.count == p && $0.allSatisfy { $0 >= 0 && $0 < x.shape[1] } }) else {
            throw TensorError.invalidArgument(op: "transformer layer rows",
                                              reason: "need the same number (> 0) of positions in [0, \(x.shape.count > 1 ? x.shape[1] : 0)) for each of \(x.shape.first ?? 0) entries")
        }
        let b = x.shape[0], l = x.shape[1], h = x.shape[2]
        // Every entry reading every row in order (an MLM teacher's input): the plain layer.
        if p == l, positions.allSatisfy({ $0.elementsEqual(0..<l) }) {
            return try self(x, mask: mask, cross: cross, dropout: dropout)
        }
        let flat = positions.enumerated().flatMap { entry, ps in ps.map { entry * l + $0 } }
        let q = try x.reshaped([b * l, h]).gatherRows(flat).reshaped([b, p, h])
        let attended = try selfAttention.residual(selfAttention.attention(q, context: x, mask: mask, dropout: dropout), q, dropout)
        return try crossAndFeedForward(attended, cross: cross, dropout: dropout)
    }

    /// Rows `reading[b]` of entry b's output (none skips the entry), as [total, H] in entry
    /// order: `rows(...)` on each group of entries reading as many rows, whose self-attention
    /// mask and cross-attention input `mask(entries)` and `cross(entries)` give; the rows then
    /// go back to entry order.
    public func readRows(_ x: Tensor, reading: [[Int]], dropout: DropoutStream?,
                         mask: ([Int]) throws -> AttentionMask, cross: ([Int]) throws -> CrossAttentionInput?) throws -> Tensor {
        guard x.rank == 3, reading.count == x.shape[0], reading.contains(where: { !$0.isEmpty }) else {
            throw TensorError.invalidArgument(op: "transformer layer rows",
                                              reason: "rows to read for \(reading.count) entries of \(x.shape) (some entry must read one)")
        }
        let b = x.shape[0]
        var pieces: [Tensor] = [], order: [Int] = []
        let firstOutputRow = reading.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        for count in Set(reading.map(\.count)).sorted() where count > 0 {
            let entries = reading.indices.filter { reading[$0].count == count }
            let group = entries.count == b ? x : try x.gatherRows(entries)
            let out = try rows(group, positions: entries.map { reading[$0] }, mask: mask(entries), cross: cross(entries), dropout: dropout)
            pieces.append(try out.reshaped([entries.count * count, x.shape[2]]))
            order += entries.flatMap { firstOutputRow[$0]..<(firstOutputRow[$0] + count) }
        }
        let stacked = pieces.count == 1 ? pieces[0] : try Tensor.concat(pieces, axis: 0)
        // order[i] is the output row the i-th computed row belongs at; gather by its inverse.
        var source = [Int](repeating: 0, count: order.count)
        for (i, o) in order.enumerated() { source[o] = i }
        return source == Array(source.indices) ? stacked : try stacked.gatherRows(source)
    }
}

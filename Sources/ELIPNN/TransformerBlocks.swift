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
        var h = try selfAttention.residual(selfAttention.attention(x, mask: mask, dropout: dropout), x, dropout)
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

    /// Position 0 of this layer's output, [B, 1, H]: the query, the cross-attention and the
    /// feed-forward of row 0 only, keys and values from every row of `x` (what a pooler on the
    /// last layer reads, at a fraction of the cost). Without dropout equal to
    /// `self(x, ...)[:, 0:1]`; with dropout the masks are drawn for the smaller tensors.
    public func firstRow(_ x: Tensor, mask: AttentionMask, cross: Tensor?, crossMask: AttentionMask = .none,
                         dropout: DropoutStream?) throws -> Tensor {
        let x0 = try x.slice(axis: 1, start: 0, length: 1)
        var h = try selfAttention.residual(selfAttention.attention(x0, context: x, mask: mask, dropout: dropout), x0, dropout)
        if let cross {
            let crossAttention = try requireCrossAttention()
            h = try crossAttention.residual(crossAttention.attention(h, context: cross, mask: crossMask, dropout: dropout), h, dropout)
        }
        return try feedForwardResidual(h, dropout)
    }
}

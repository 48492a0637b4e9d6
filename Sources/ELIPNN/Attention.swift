import ELIPTensor

/// Multi-head attention with its input and output projections, usable as self-attention or as
/// cross-attention, with packed ([q | k | v], timm / CLIP) or separate (BERT) projections and any
/// `AttentionMask` (padding, causal, full 2-D additive).
public final class MultiHeadAttention {
    public enum Projections {
        /// One Linear whose output rows are [q | k | v] (timm's `qkv`, CLIP's `in_proj`).
        case packed(Linear)
        /// Separate query, key and value Linears (BERT); key and value may read another width
        /// (cross-attention to image tokens).
        case separate(query: Linear, key: Linear, value: Linear)
    }

    /// Keys and values of a context projected once, e.g. an image's tokens shared by every
    /// caption that cross-attends to it: [N, Tk, D] each.
    public struct KeyValues {
        public let keys: Tensor
        public let values: Tensor
        public var count: Int { keys.shape[0] }
    }

    public let projections: Projections
    public let output: Linear
    public let heads: Int
    public var width: Int { output.inFeatures }

    /// Its parameters (projections, then the output projection).
    public var parameters: [Tensor] {
        switch projections {
        case let .packed(qkv): return qkv.parameters + output.parameters
        case let .separate(q, k, v): return q.parameters + k.parameters + v.parameters + output.parameters
        }
    }

    public init(projections: Projections, output: Linear, heads: Int) throws {
        let width: Int
        switch projections {
        case let .packed(qkv):
            guard qkv.outFeatures % 3 == 0 else {
                throw TensorError.invalidArgument(op: "MultiHeadAttention", reason: "a packed projection needs 3 x width outputs, has \(qkv.outFeatures)")
            }
            width = qkv.outFeatures / 3
        case let .separate(q, k, v):
            guard k.outFeatures == q.outFeatures, v.outFeatures == q.outFeatures else {
                throw TensorError.invalidArgument(op: "MultiHeadAttention", reason: "query, key and value widths differ")
            }
            width = q.outFeatures
        }
        guard heads > 0, width % heads == 0, output.inFeatures == width else {
            throw TensorError.invalidArgument(op: "MultiHeadAttention", reason: "width \(width) must be a multiple of \(heads) heads and the output projection's input")
        }
        self.projections = projections
        self.output = output
        self.heads = heads
    }

    /// Self-attention: output(softmax(q k^T / sqrt(d) + mask) v) with q, k, v projected from x.
    public func callAsFunction(_ x: Tensor, mask: AttentionMask = .none, dropout: DropoutStream? = nil) throws -> Tensor {
        try output(selfAttention(x, mask: mask, dropout: dropout, returnProbabilities: false).output)
    }

    /// Cross-attention of x's queries to `context`'s keys and values.
    public func callAsFunction(_ x: Tensor, context: Tensor, mask: AttentionMask = .none,
                               dropout: DropoutStream? = nil) throws -> Tensor {
        guard case let .separate(query, key, value) = projections else {
            throw TensorError.invalidArgument(op: "cross-attention", reason: "needs separate query/key/value projections")
        }
        return try output(Tensor.attention(query: query(x), key: key(context), value: value(context), heads: heads, mask: mask,
                                           dropout: dropout?.nextAttention()).output)
    }

    /// Cross-attention of x's batch entry b to entry `rows[b]` of cached keys and values.
    public func callAsFunction(_ x: Tensor, attending kv: KeyValues, rows: [Int], mask: AttentionMask = .none,
                               dropout: DropoutStream? = nil) throws -> Tensor {
        guard case let .separate(query, _, _) = projections else {
            throw TensorError.invalidArgument(op: "cross-attention", reason: "needs separate query/key/value projections")
        }
        return try output(Tensor.attention(query: query(x), key: kv.keys, value: kv.values, keyRows: rows, heads: heads,
                                           mask: mask, dropout: dropout?.nextAttention()).output)
    }

    /// Keys and values of `context` [N, Tk, width_in] for cross-attention.
    public func keyValues(_ context: Tensor) throws -> KeyValues {
        guard case let .separate(_, key, value) = projections else {
            throw TensorError.invalidArgument(op: "cross-attention", reason: "needs separate query/key/value projections")
        }
        guard context.rank == 3 else {
            throw TensorError.invalidShape(op: "cross-attention context", shape: context.shape, reason: "needs [N, tokens, width]")
        }
        return KeyValues(keys: try key(context), values: try value(context))
    }

    /// Softmax probabilities [B, heads, T, T] of self-attention on x (no output projection).
    public func probabilities(_ x: Tensor, mask: AttentionMask = .none) throws -> Tensor {
        try selfAttention(x, mask: mask, dropout: nil, returnProbabilities: true).probabilities!
    }

    /// Probabilities [B, heads, 1, T] of query position 0 only: keys for every token, the query
    /// for one — what ELIP's pruning scores need, at about a third of the projection cost and
    /// none of the T x T attention.
    public func firstQueryProbabilities(_ x: Tensor, mask: AttentionMask = .none) throws -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = width
        let first = try x.slice(axis: 1, start: 0, length: 1).reshaped([b, x.shape[2]])
        let q: Tensor, k: Tensor
        switch projections {
        case let .packed(qkv):
            let (wq, bq) = try qkv.outputRows(0, d), (wk, bk) = try qkv.outputRows(d, d)
            q = try first.linear(wq, bq)
            k = try x.linear(wk, bk)
        case let .separate(query, key, _):
            q = try query(first)
            k = try key(x)
        }
        let queries = try q.reshaped([b, 1, d]), keys = try k.reshaped([b, t, d])
        let rowMask: AttentionMask
        switch mask {
        case .none, .keyPadding: rowMask = mask
        case .causal, .additive:
            throw TensorError.invalidArgument(op: "first-query attention", reason: "only padding masks are supported")
        }
        return try Tensor.attention(query: queries, key: keys, value: keys, heads: heads, mask: rowMask,
                                    returnProbabilities: true).probabilities!
    }

    private func selfAttention(_ x: Tensor, mask: AttentionMask, dropout: DropoutStream?,
                               returnProbabilities: Bool) throws -> AttentionResult {
        switch projections {
        case let .packed(qkv):
            return try qkv(x).packedSelfAttention(heads: heads, mask: mask, dropout: dropout?.nextAttention(),
                                                  returnProbabilities: returnProbabilities)
        case let .separate(query, key, value):
            return try Tensor.attention(query: query(x), key: key(x), value: value(x), heads: heads, mask: mask,
                                        dropout: dropout?.nextAttention(), returnProbabilities: returnProbabilities)
        }
    }
}

import CKernels

/// Where one of Q, K, V lives: columns `offset ..< offset + width` of a tensor whose rows are
/// `rowStride` floats apart ([B, T, rowStride]). Lets packed QKV projections feed attention
/// without copies.
struct AttentionOperand {
    let tensor: Tensor
    let offset: Int
    let rowStride: Int
    /// Which batch entry of `tensor` query batch b reads (nil: b itself). Lets several queries
    /// attend to the same cached keys/values.
    var batchIndex: [Int]? = nil

    @inline(__always) func batch(_ b: Int) -> Int { batchIndex?[b] ?? b }
}

/// Output of multi-head attention; `probabilities` [B, H, Tq, Tk] (before dropout) when asked for.
public struct AttentionResult {
    public let output: Tensor
    public let probabilities: Tensor?
}

/// An additive mask on the scaled attention scores, applied before the softmax. The masks are
/// constants: no gradient flows into them.
public enum AttentionMask {
    /// Every key visible.
    case none
    /// One additive value per (query batch entry, key): [B * Tk] values, e.g. BERT's
    /// `(1 - attention_mask) * -10000`.
    case keyPadding([Float])
    /// Query i sees keys j <= i (a decoder). A hidden entry gets `maskValue` once, also where
    /// the key is padding too; otherwise the key's `keyPadding` value (if any) is added. This is
    /// HuggingFace/BLIP's `(1 - causal * padding) * -10000`. Needs Tq == Tk.
    case causal(keyPadding: [Float]?, maskValue: Float = -10000)
    /// Any additive mask: [B, Tq, Tk], or [1, Tq, Tk] shared by every batch entry.
    case additive(Tensor)
}

extension Tensor {
    /// Scaled-dot-product multi-head attention. query [B, Tq, D], key and value [B, Tk, D],
    /// D = heads * headDim, scale headDim^-0.5, `mask` added to the scores. Dropout on the
    /// probabilities when `dropout.p > 0`. The returned probabilities are constants (no gradient
    /// flows through them).
    public static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                 mask: AttentionMask = .none, dropout: (p: Float, seed: UInt64)? = nil,
                                 returnProbabilities: Bool = false) throws -> AttentionResult {
        guard query.rank == 3, key.rank == 3, value.rank == 3, key.shape == value.shape,
              query.shape[0] == key.shape[0], query.shape[2] == key.shape[2] else {
            throw TensorError.shapeMismatch(op: "attention (query vs key/value)", lhs: query.shape, rhs: key.shape)
        }
        let d = query.shape[2]
        return try attentionCore(q: AttentionOperand(tensor: query, offset: 0, rowStride: d),
                                 k: AttentionOperand(tensor: key, offset: 0, rowStride: d),
                                 v: AttentionOperand(tensor: value, offset: 0, rowStride: d),
                                 batch: query.shape[0], tq: query.shape[1], tk: key.shape[1], dim: d,
                                 heads: heads, mask: mask, dropout: dropout, returnProbabilities: returnProbabilities)
    }

    /// Attention of query batch b [B, Tq, D] to keys/values batch `keyRows[b]` of [N, Tk, D]
    /// (e.g. cross-attention to cached image keys/values shared by several captions). A
    /// `keyPadding` or `additive` mask is indexed by the query batch entry.
    public static func attention(query: Tensor, key: Tensor, value: Tensor, keyRows: [Int], heads: Int,
                                 mask: AttentionMask = .none,
                                 dropout: (p: Float, seed: UInt64)? = nil) throws -> AttentionResult {
        guard query.rank == 3, key.rank == 3, value.rank == 3, key.shape == value.shape,
              query.shape[2] == key.shape[2], keyRows.count == query.shape[0] else {
            throw TensorError.shapeMismatch(op: "attention (query vs shared key/value)", lhs: query.shape, rhs: key.shape)
        }
        guard keyRows.allSatisfy({ $0 >= 0 && $0 < key.shape[0] }) else {
            throw TensorError.invalidArgument(op: "attention", reason: "key rows must lie in [0, \(key.shape[0]))")
        }
        let d = query.shape[2]
        return try attentionCore(q: AttentionOperand(tensor: query, offset: 0, rowStride: d),
                                 k: AttentionOperand(tensor: key, offset: 0, rowStride: d, batchIndex: keyRows),
                                 v: AttentionOperand(tensor: value, offset: 0, rowStride: d, batchIndex: keyRows),
                                 batch: query.shape[0], tq: query.shape[1], tk: key.shape[1], dim: d,
                                 heads: heads, mask: mask, dropout: dropout, returnProbabilities: false)
    }

    /// Self-attention on a packed projection [B, T, 3D] laid out as [q | k | v] (timm's qkv).
    public func packedSelfAttention(heads: Int, mask: AttentionMask = .none, dropout: (p: Float, seed: UInt64)? = nil,
                                    returnProbabilities: Bool = false) throws -> AttentionResult {
        guard rank == 3, shape[2] % 3 == 0 else {
            throw TensorError.invalidShape(op: "packedSelfAttention", shape: shape, reason: "needs [B, T, 3D]")
        }
        let d = shape[2] / 3
        return try Tensor.attentionCore(q: AttentionOperand(tensor: self, offset: 0, rowStride: 3 * d),
                                        k: AttentionOperand(tensor: self, offset: d, rowStride: 3 * d),
                                        v: AttentionOperand(tensor: self, offset: 2 * d, rowStride: 3 * d),
                                        batch: shape[0], tq: shape[1], tk: shape[1], dim: d, heads: heads,
                                        mask: mask, dropout: dropout, returnProbabilities: returnProbabilities)
    }

    static func attentionCore(q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
                              batch: Int, tq: Int, tk: Int, dim: Int, heads: Int,
                              mask: AttentionMask, dropout: (p: Float, seed: UInt64)?,
                              returnProbabilities: Bool) throws -> AttentionResult {
        guard heads > 0, dim % heads == 0 else {
            throw TensorError.invalidArgument(op: "attention", reason: "width \(dim) is not divisible by \(heads) heads")
        }
        let scoreMask = try ScoreMask(mask, batch: batch, tq: tq, tk: tk)
        let p = dropout?.p ?? 0, seed = dropout?.seed ?? 0
        guard p >= 0, p < 1 else { throw TensorError.invalidArgument(op: "attention", reason: "dropout \(p) outside [0, 1)") }
        let hd = dim / heads, scale = 1 / Float(hd).squareRoot()
        let block = tq * tk
        let probs = Tensor.empty([batch, heads, tq, tk])
        // With dropout the output uses the dropped probabilities; backward needs both.
        let dropped: Tensor? = p > 0 ? Tensor.empty(probs.shape) : nil
        let out = Tensor.empty([batch, tq, dim])
        let keep = 1 / (1 - p)

        @inline(__always) func ptr(_ o: AttentionOperand, _ b: Int, _ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
            o.tensor.data + (o.batch(b) * t) * o.rowStride + o.offset + h * hd
        }
        // Heads run in parallel (each worker: single-threaded BLAS), batch entries in order within
        // a head: every element of probs, out, dQ, dK and dV is written by one worker, even when
        // several query batches share keys/values (batchIndex).
        parallelGEMMRegion(heads) { hr, _, tally in
            for h in hr {
                for b in 0..<batch {
                    let base = (b * heads + h) * block
                    let s = probs.data + base
                    sgemm(&tally, transB: true, m: tq, n: tk, k: hd, alpha: scale, a: ptr(q, b, h, tq), lda: q.rowStride,
                          b: ptr(k, b, h, tk), ldb: k.rowStride, c: s, ldc: tk)
                    scoreMask.apply(to: s, batch: b)
                    elip_softmax_rows(s, s, Int64(tq), Int64(tk))
                    if let dropped {
                        let d = dropped.data + base
                        for i in 0..<block { d[i] = CounterRandom.uniform(seed: seed, index: base + i) < p ? 0 : s[i] * keep }
                    }
                    let used = dropped?.data ?? probs.data
                    sgemm(&tally, m: tq, n: hd, k: tk, a: used + base, b: ptr(v, b, h, tk), ldb: v.rowStride,
                          c: out.data + b * tq * dim + h * hd, ldc: dim)
                }
            }
        }
        let inputs = [q.tensor, k.tensor, v.tensor]
        let result = Autograd.record(out, inputs: inputs) { dOut in
            let dq = q.tensor.requiresGrad ? q.tensor.gradPointer() : nil
            let dk = k.tensor.requiresGrad ? k.tensor.gradPointer() : nil
            let dv = v.tensor.requiresGrad ? v.tensor.gradPointer() : nil
            @inline(__always) func gptr(_ g: UnsafeMutablePointer<Float>, _ o: AttentionOperand, _ b: Int, _ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
                g + (o.batch(b) * t) * o.rowStride + o.offset + h * hd
            }
            let workers = Threads.chunkCount(heads, grain: 1)
            let scratch = Tensor.empty([workers, block])  // dP, then dS, of one (b, h)
            parallelGEMMRegion(heads) { hr, worker, tally in
                let dS = scratch.data + worker * block
                for h in hr {
                    for b in 0..<batch {
                        let base = (b * heads + h) * block
                        let pu = (dropped ?? probs).data + base
                        let dO = dOut + b * tq * dim + h * hd
                        // dP = dO V^T
                        sgemm(&tally, transB: true, m: tq, n: tk, k: hd, a: dO, lda: dim, b: ptr(v, b, h, tk), ldb: v.rowStride, c: dS, ldc: tk)
                        // dV += P_used^T dO
                        if let dv {
                            sgemm(&tally, transA: true, m: tk, n: hd, k: tq, a: pu, lda: tk, b: dO, ldb: dim, beta: 1,
                                  c: gptr(dv, v, b, h, tk), ldc: v.rowStride)
                        }
                        // Through dropout and softmax: dS = P * (dP' - sum(dP' * P)) * scale.
                        if dropped != nil {
                            for i in 0..<block { dS[i] = CounterRandom.uniform(seed: seed, index: base + i) < p ? 0 : dS[i] * keep }
                        }
                        elip_softmax_backward_scaled_rows(probs.data + base, dS, Int64(tq), Int64(tk), scale)
                        if let dq {  // dQ += dS K
                            sgemm(&tally, m: tq, n: hd, k: tk, a: dS, lda: tk, b: ptr(k, b, h, tk), ldb: k.rowStride, beta: 1,
                                  c: gptr(dq, q, b, h, tq), ldc: q.rowStride)
                        }
                        if let dk {  // dK += dS^T Q
                            sgemm(&tally, transA: true, m: tk, n: hd, k: tq, a: dS, lda: tk, b: ptr(q, b, h, tq), ldb: q.rowStride, beta: 1,
                                  c: gptr(dk, k, b, h, tk), ldc: k.rowStride)
                        }
                    }
                }
            }
        }
        return AttentionResult(output: result, probabilities: returnProbabilities ? probs.detached() : nil)
    }
}

/// An `AttentionMask` checked against the attention's shape, with its values in tensors the
/// worker threads read.
private struct ScoreMask {
    enum Kind { case none, keyPadding, causal, additive }
    let kind: Kind
    let values: Tensor?
    let tq: Int, tk: Int
    /// Causal: the value of a hidden entry; additive: 0 when the mask is shared by the batch.
    let maskValue: Float
    let batchStride: Int

    init(_ mask: AttentionMask, batch: Int, tq: Int, tk: Int) throws {
        self.tq = tq
        self.tk = tk
        switch mask {
        case .none:
            (kind, values, maskValue, batchStride) = (.none, nil, 0, 0)
        case let .keyPadding(v):
            guard v.count == batch * tk else {
                throw TensorError.shapeMismatch(op: "attention key mask", lhs: [batch, tk], rhs: [v.count])
            }
            (kind, values, maskValue, batchStride) = (.keyPadding, try Tensor(v, shape: [v.count]), 0, tk)
        case let .causal(padding, value):
            guard tq == tk else {
                throw TensorError.invalidArgument(op: "causal attention", reason: "needs as many queries as keys, got \(tq) and \(tk)")
            }
            if let padding, padding.count != batch * tk {
                throw TensorError.shapeMismatch(op: "causal attention key mask", lhs: [batch, tk], rhs: [padding.count])
            }
            (kind, values, maskValue, batchStride) = (.causal, try padding.map { try Tensor($0, shape: [$0.count]) }, value, tk)
        case let .additive(t):
            guard t.rank == 3, t.shape[1] == tq, t.shape[2] == tk, t.shape[0] == batch || t.shape[0] == 1 else {
                throw TensorError.shapeMismatch(op: "attention additive mask (expects [B or 1, Tq, Tk])", lhs: [batch, tq, tk], rhs: t.shape)
            }
            (kind, values, maskValue, batchStride) = (.additive, t.detached(), 0, t.shape[0] == 1 ? 0 : tq * tk)
        }
    }

    /// Adds the mask to the [Tq, Tk] scores of query batch entry `b`.
    @inline(__always) func apply(to s: UnsafeMutablePointer<Float>, batch b: Int) {
        switch kind {
        case .none:
            return
        case .keyPadding:
            let mb = values!.data + b * batchStride
            for r in 0..<tq { let rp = s + r * tk; for j in 0..<tk { rp[j] += mb[j] } }
        case .causal:
            let mb = values.map { $0.data + b * batchStride }
            for r in 0..<tq {
                let rp = s + r * tk
                for j in 0..<tk { rp[j] += j > r ? maskValue : (mb?[j] ?? 0) }
            }
        case .additive:
            let mb = values!.data + b * batchStride
            for i in 0..<(tq * tk) { s[i] += mb[i] }
        }
    }
}

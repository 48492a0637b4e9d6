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

extension Tensor {
    /// Scaled-dot-product multi-head attention. query [B, Tq, D], key and value [B, Tk, D],
    /// D = heads * headDim, scale headDim^-0.5. `keyMask` is additive, one value per (b, key)
    /// ([B * Tk]; BERT uses (1 - mask) * -10000). Dropout on the probabilities when `dropout.p > 0`.
    /// The returned probabilities are constants (no gradient flows through them).
    public static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                 keyMask: [Float]? = nil, dropout: (p: Float, seed: UInt64)? = nil,
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
                                 heads: heads, keyMask: keyMask, dropout: dropout, returnProbabilities: returnProbabilities)
    }

    /// Attention of query batch b [B, Tq, D] to keys/values batch `keyRows[b]` of [N, Tk, D]
    /// (e.g. cross-attention to cached image keys/values shared by several captions). No mask.
    public static func attention(query: Tensor, key: Tensor, value: Tensor, keyRows: [Int], heads: Int,
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
                                 heads: heads, keyMask: nil, dropout: dropout, returnProbabilities: false)
    }

    /// Self-attention on a packed projection [B, T, 3D] laid out as [q | k | v] (timm's qkv).
    public func packedSelfAttention(heads: Int, keyMask: [Float]? = nil, dropout: (p: Float, seed: UInt64)? = nil,
                                    returnProbabilities: Bool = false) throws -> AttentionResult {
        guard rank == 3, shape[2] % 3 == 0 else {
            throw TensorError.invalidShape(op: "packedSelfAttention", shape: shape, reason: "needs [B, T, 3D]")
        }
        let d = shape[2] / 3
        return try Tensor.attentionCore(q: AttentionOperand(tensor: self, offset: 0, rowStride: 3 * d),
                                        k: AttentionOperand(tensor: self, offset: d, rowStride: 3 * d),
                                        v: AttentionOperand(tensor: self, offset: 2 * d, rowStride: 3 * d),
                                        batch: shape[0], tq: shape[1], tk: shape[1], dim: d, heads: heads,
                                        keyMask: keyMask, dropout: dropout, returnProbabilities: returnProbabilities)
    }

    static func attentionCore(q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
                              batch: Int, tq: Int, tk: Int, dim: Int, heads: Int,
                              keyMask: [Float]?, dropout: (p: Float, seed: UInt64)?,
                              returnProbabilities: Bool) throws -> AttentionResult {
        guard heads > 0, dim % heads == 0 else {
            throw TensorError.invalidArgument(op: "attention", reason: "width \(dim) is not divisible by \(heads) heads")
        }
        if let keyMask, keyMask.count != batch * tk {
            throw TensorError.shapeMismatch(op: "attention key mask", lhs: [batch, tk], rhs: [keyMask.count])
        }
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
        let maskBuffer = try keyMask.map { try Tensor($0, shape: [$0.count]) }
        parallelGEMMRegion(heads) { hr, _, tally in
            for h in hr {
                for b in 0..<batch {
                    let base = (b * heads + h) * block
                    let s = probs.data + base
                    sgemm(&tally, transB: true, m: tq, n: tk, k: hd, alpha: scale, a: ptr(q, b, h, tq), lda: q.rowStride,
                          b: ptr(k, b, h, tk), ldb: k.rowStride, c: s, ldc: tk)
                    if let maskBuffer {
                        let mb = maskBuffer.data + b * tk
                        for r in 0..<tq { let rp = s + r * tk; for j in 0..<tk { rp[j] += mb[j] } }
                    }
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
                        for r in 0..<tq {
                            let pr = probs.data + base + r * tk, dr = dS + r * tk
                            let dot = elip_dot(pr, dr, Int64(tk))
                            for j in 0..<tk { dr[j] = pr[j] * (dr[j] - dot) * scale }
                        }
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

import CKernels

extension Tensor {
    /// y = x W^T + b over the last dimension: x [..., in], weight [out, in] (PyTorch layout),
    /// bias [out]. One sgemm for the whole batch of rows.
    public func linear(_ weight: Tensor, _ bias: Tensor? = nil) throws -> Tensor {
        guard weight.rank == 2, let inDim = shape.last, weight.shape[1] == inDim else {
            throw TensorError.shapeMismatch(op: "linear", lhs: shape, rhs: weight.shape)
        }
        let outDim = weight.shape[0]
        if let bias, bias.shape != [outDim] {
            throw TensorError.shapeMismatch(op: "linear bias", lhs: weight.shape, rhs: bias.shape)
        }
        let m = rows
        let y = Tensor.empty(Array(shape.dropLast()) + [outDim])
        // With a bias, C starts as the bias rows and the GEMM accumulates onto it (beta 1): BLAS
        // would otherwise zero C first, and a bias pass would follow.
        if let bias { Kernels.broadcastRows(y.data, bias.data, rows: m, cols: outDim) }
        sgemm(transB: true, m: m, n: outDim, k: inDim, a: data, b: weight.data, beta: bias == nil ? 0 : 1, c: y.data)
        let x = self
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return Autograd.record(y, inputs: inputs) { dy in
            if x.requiresGrad {
                sgemm(m: m, n: inDim, k: outDim, a: dy, b: weight.data, beta: 1, c: x.gradPointer())
            }
            if weight.requiresGrad {
                sgemm(transA: true, m: outDim, n: inDim, k: m, a: dy, b: x.data, beta: 1, c: weight.gradPointer())
            }
            if let bias, bias.requiresGrad {
                Kernels.sumRowsInto(dy, bias.gradPointer(), rows: m, cols: outDim)
            }
        }
    }

    /// Matrix product of 2-D tensors, op(self) op(other), with optional transposes.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        guard rank == 2, other.rank == 2 else {
            throw TensorError.shapeMismatch(op: "matmul (2-D operands)", lhs: shape, rhs: other.shape)
        }
        let m = transposeSelf ? shape[1] : shape[0], k = transposeSelf ? shape[0] : shape[1]
        let k2 = transposeOther ? other.shape[1] : other.shape[0], n = transposeOther ? other.shape[0] : other.shape[1]
        guard k == k2 else { throw TensorError.shapeMismatch(op: "matmul", lhs: shape, rhs: other.shape) }
        let y = Tensor.empty([m, n])
        let a = self, b = other
        sgemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k, a: a.data, b: b.data, c: y.data)
        return Autograd.record(y, inputs: [a, b]) { dy in
            // C = op(A) op(B): dop(A) = dC op(B)^T, dop(B) = op(A)^T dC.
            if a.requiresGrad {
                if transposeSelf {  // dA = op(B) dC^T  [k, m]
                    sgemm(transA: transposeOther, transB: true, m: k, n: m, k: n, a: b.data, b: dy, beta: 1, c: a.gradPointer())
                } else {            // dA = dC op(B)^T  [m, k]
                    sgemm(transA: false, transB: !transposeOther, m: m, n: k, k: n, a: dy, b: b.data, beta: 1, c: a.gradPointer())
                }
            }
            if b.requiresGrad {
                if transposeOther { // dB = dC^T op(A)  [n, k]
                    sgemm(transA: true, transB: transposeSelf, m: n, n: k, k: m, a: dy, b: a.data, beta: 1, c: b.gradPointer())
                } else {            // dB = op(A)^T dC  [k, n]
                    sgemm(transA: !transposeSelf, transB: false, m: k, n: n, k: m, a: a.data, b: dy, beta: 1, c: b.gradPointer())
                }
            }
        }
    }

    /// Batched matrix product over the leading dimension: self [B, m, k] x other [B, k, n].
    public func batchedMatmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        guard rank == 3, other.rank == 3, shape[0] == other.shape[0] else {
            throw TensorError.shapeMismatch(op: "batchedMatmul (3-D operands, equal batch)", lhs: shape, rhs: other.shape)
        }
        let batch = shape[0]
        let m = transposeSelf ? shape[2] : shape[1], k = transposeSelf ? shape[1] : shape[2]
        let k2 = transposeOther ? other.shape[2] : other.shape[1], n = transposeOther ? other.shape[1] : other.shape[2]
        guard k == k2 else { throw TensorError.shapeMismatch(op: "batchedMatmul", lhs: shape, rhs: other.shape) }
        let y = Tensor.empty([batch, m, n])
        let a = self, b = other
        let sa = m * k, sb = k * n, sc = m * n
        for i in 0..<batch {
            sgemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k,
                  a: a.data + i * sa, b: b.data + i * sb, c: y.data + i * sc)
        }
        return Autograd.record(y, inputs: [a, b]) { dy in
            for i in 0..<batch {
                let dyi = dy + i * sc, ai = a.data + i * sa, bi = b.data + i * sb
                if a.requiresGrad {
                    let ga = a.gradPointer() + i * sa
                    if transposeSelf {
                        sgemm(transA: transposeOther, transB: true, m: k, n: m, k: n, a: bi, b: dyi, beta: 1, c: ga)
                    } else {
                        sgemm(transB: !transposeOther, m: m, n: k, k: n, a: dyi, b: bi, beta: 1, c: ga)
                    }
                }
                if b.requiresGrad {
                    let gb = b.gradPointer() + i * sb
                    if transposeOther {
                        sgemm(transA: true, transB: transposeSelf, m: n, n: k, k: m, a: dyi, b: ai, beta: 1, c: gb)
                    } else {
                        sgemm(transA: !transposeSelf, m: k, n: n, k: m, a: ai, b: dyi, beta: 1, c: gb)
                    }
                }
            }
        }
    }
}

import CKernels
import Foundation

extension Tensor {
    /// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as BERT and timm's ViT use.
    public func gelu() -> Tensor {
        let x = self, y = Tensor.empty(shape)
        Kernels.map(count) { s, n in elip_gelu_forward(x.data + s, y.data + s, Int64(n)) }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in elip_gelu_backward(x.data + s, dy + s, dx + s, Int64(n)) }
        }
    }

    /// QuickGELU, x sigmoid(1.702 x), as OpenAI's CLIP uses.
    public func quickGELU() -> Tensor {
        let x = self, y = Tensor.empty(shape)
        Kernels.map(count) { s, n in elip_quick_gelu_forward(x.data + s, y.data + s, Int64(n)) }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in elip_quick_gelu_backward(x.data + s, dy + s, dx + s, Int64(n)) }
        }
    }

    /// Hyperbolic tangent (the tanh of BERT-style poolers, METER's cross-modal poolers).
    public func tanh() -> Tensor {
        let x = self, y = Tensor.empty(shape)
        Kernels.map(count) { s, n in
            let px = x.data + s, py = y.data + s
            for i in 0..<n { py[i] = tanhf(px[i]) }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in
                // Recomputed from x: the output may have been reused by the time backward runs.
                let px = x.data + s, pg = dy + s, pd = dx + s
                for i in 0..<n { let t = tanhf(px[i]); pd[i] += pg[i] * (1 - t * t) }
            }
        }
    }

    /// ReLU, max(x, 0) (the ALBEF task heads' nn.ReLU; gradient 0 at 0, as PyTorch's).
    public func relu() -> Tensor {
        let x = self, y = Tensor.empty(shape)
        Kernels.map(count) { s, n in
            let px = x.data + s, py = y.data + s
            for i in 0..<n { py[i] = px[i] > 0 ? px[i] : 0 }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in
                let px = x.data + s, pg = dy + s, pd = dx + s
                for i in 0..<n where px[i] > 0 { pd[i] += pg[i] }
            }
        }
    }

    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        let x = self, y = Tensor.empty(shape), cols = lastDim
        Kernels.mapRows(rows, cols: cols) { r, n in
            elip_softmax_rows(x.data + r * cols, y.data + r * cols, Int64(n), Int64(cols))
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.mapRows(x.rows, cols: cols) { r, n in
                elip_softmax_backward_rows(y.data + r * cols, dy + r * cols, dx + r * cols, Int64(n), Int64(cols))
            }
        }
    }

    /// Log-softmax over the last dimension (log-sum-exp with the row maximum subtracted).
    public func logSoftmax() -> Tensor {
        let x = self, y = Tensor.empty(shape), cols = lastDim
        Kernels.mapRows(rows, cols: cols) { r, n in
            elip_log_softmax_rows(x.data + r * cols, y.data + r * cols, Int64(n), Int64(cols))
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.mapRows(x.rows, cols: cols) { r, n in
                elip_log_softmax_backward_rows(y.data + r * cols, dy + r * cols, dx + r * cols, Int64(n), Int64(cols))
            }
        }
    }

    /// LayerNorm over the last dimension with affine weight and bias.
    public func layerNorm(weight: Tensor, bias: Tensor, eps: Float) throws -> Tensor {
        let cols = lastDim
        guard weight.shape == [cols], bias.shape == [cols] else {
            throw TensorError.shapeMismatch(op: "layerNorm", lhs: shape, rhs: weight.shape)
        }
        let x = self, y = Tensor.empty(shape), rows = self.rows
        let stats = Storage(count: 2 * rows, zeroed: false)
        let mean = stats.pointer, rstd = stats.pointer + rows
        Kernels.mapRows(rows, cols: cols) { r, n in
            elip_layernorm_forward(x.data + r * cols, weight.data, bias.data, y.data + r * cols,
                                   mean + r, rstd + r, Int64(n), Int64(cols), eps)
        }
        return Autograd.record(y, inputs: [x, weight, bias]) { dy in
            _ = stats  // keep the saved statistics alive until backward
            let dx = x.requiresGrad ? x.gradPointer() : nil
            let wantParams = weight.requiresGrad || bias.requiresGrad
            // One pass per chunk of rows: the input gradient row by row, the parameter gradients
            // as per-chunk partials summed afterwards in chunk order (deterministic).
            let chunks = Threads.chunkCount(rows, grain: Kernels.rowGrain(cols))
            let partial = wantParams ? Storage(count: chunks * 2 * cols, zeroed: true) : nil
            Threads.parallelFor(chunks) { cr in
                for c in cr {
                    let r = Threads.chunkRange(c, of: chunks, n: rows), o = r.lowerBound
                    let pg = partial.map { $0.pointer + c * 2 * cols }
                    elip_layernorm_backward(x.data + o * cols, weight.data, mean + o, rstd + o, dy + o * cols,
                                            dx.map { $0 + o * cols }, pg, pg.map { $0 + cols },
                                            Int64(r.count), Int64(cols))
                }
            }
            if let partial {
                let gw = weight.requiresGrad ? weight.gradPointer() : nil
                let gb = bias.requiresGrad ? bias.gradPointer() : nil
                for c in 0..<chunks {
                    let pg = partial.pointer + c * 2 * cols
                    if let gw { elip_axpy(1, pg, gw, Int64(cols)) }
                    if let gb { elip_axpy(1, pg + cols, gb, Int64(cols)) }
                }
            }
        }
    }
}

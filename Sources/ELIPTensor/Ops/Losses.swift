import CKernels
import Foundation

extension Tensor {
    /// Mean cross-entropy of logits [N, C] against class labels; labels equal to `ignoreIndex`
    /// (-100, as PyTorch) are left out of the mean. Returns a scalar; 0 when every label is ignored.
    /// With `labelSmoothing` ε > 0 (PyTorch's `label_smoothing`), each valid row's loss is
    /// (1 - ε) (-log p[label]) + ε mean_c(-log p[c]).
    public func crossEntropy(labels: [Int], ignoreIndex: Int = -100, labelSmoothing: Float = 0) throws -> Tensor {
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw TensorError.invalidArgument(op: "crossEntropy", reason: "label smoothing \(labelSmoothing) outside [0, 1]")
        }
        if labelSmoothing > 0 { return try smoothedCrossEntropy(labels: labels, ignoreIndex: ignoreIndex, smoothing: labelSmoothing) }
        guard rank == 2, labels.count == shape[0] else {
            throw TensorError.shapeMismatch(op: "crossEntropy (logits vs labels)", lhs: shape, rhs: [labels.count])
        }
        let c = shape[1]
        if let bad = labels.first(where: { $0 != ignoreIndex && ($0 < 0 || $0 >= c) }) {
            throw TensorError.invalidArgument(op: "crossEntropy", reason: "label \(bad) outside [0, \(c))")
        }
        let logp = logSoftmax()
        let valid = labels.filter { $0 != ignoreIndex }.count
        let n = shape[0]
        let y = Tensor.empty([])
        var total = 0.0
        for i in 0..<n where labels[i] != ignoreIndex { total -= Double(logp.data[i * c + labels[i]]) }
        y.data[0] = valid == 0 ? 0 : Float(total / Double(valid))
        return Autograd.record(y, inputs: [logp]) { dy in
            guard valid > 0 else { return }
            let g = logp.gradPointer(), w = dy[0] / Float(valid)
            for i in 0..<n where labels[i] != ignoreIndex { g[i * c + labels[i]] -= w }
        }
    }

    private func smoothedCrossEntropy(labels: [Int], ignoreIndex: Int, smoothing eps: Float) throws -> Tensor {
        guard rank == 2, labels.count == shape[0] else {
            throw TensorError.shapeMismatch(op: "crossEntropy (logits vs labels)", lhs: shape, rhs: [labels.count])
        }
        let n = shape[0], c = shape[1]
        if let bad = labels.first(where: { $0 != ignoreIndex && ($0 < 0 || $0 >= c) }) {
            throw TensorError.invalidArgument(op: "crossEntropy", reason: "label \(bad) outside [0, \(c))")
        }
        let logp = logSoftmax()
        let rows = (0..<n).filter { labels[$0] != ignoreIndex }
        var nll = 0.0, smooth = 0.0
        for i in rows {
            let row = logp.data + i * c
            nll -= Double(row[labels[i]])
            var s = 0.0
            for j in 0..<c { s += Double(row[j]) }
            smooth -= s / Double(c)
        }
        let y = Tensor.empty([])
        let valid = Double(rows.count)
        y.data[0] = rows.isEmpty ? 0 : Float((Double(1 - eps) * nll + Double(eps) * smooth) / valid)
        return Autograd.record(y, inputs: [logp]) { dy in
            guard !rows.isEmpty else { return }
            let g = logp.gradPointer(), w = dy[0] / Float(valid)
            let hard = (1 - eps) * w, spread = eps * w / Float(c)
            for i in rows {
                let row = g + i * c
                for j in 0..<c { row[j] -= spread }
                row[labels[i]] -= hard
            }
        }
    }

    /// Cross-entropy against soft targets: -mean_i sum_j log_softmax(self)_ij * targets_ij.
    /// `targets` [N, C] are constants (distillation targets, smoothed labels).
    public func softCrossEntropy(targets: Tensor) throws -> Tensor {
        guard rank == 2, targets.shape == shape else {
            throw TensorError.shapeMismatch(op: "softCrossEntropy (logits vs targets)", lhs: shape, rhs: targets.shape)
        }
        let logp = logSoftmax()
        let n = shape[0], cnum = count
        let y = Tensor.empty([])
        y.data[0] = n == 0 ? 0 : -elip_dot(logp.data, targets.data, Int64(cnum)) / Float(n)
        let t = targets.detached()
        return Autograd.record(y, inputs: [logp]) { dy in
            guard n > 0 else { return }
            let g = logp.gradPointer()
            elip_axpy(-dy[0] / Float(n), t.data, g, Int64(cnum))
        }
    }

    /// L2 normalisation over the last dimension: x / max(||x||, eps) (PyTorch F.normalize).
    public func l2Normalized(eps: Float = 1e-12) -> Tensor {
        let x = self, cols = lastDim, y = Tensor.empty(shape)
        let norms = Storage(count: max(rows, 1), zeroed: false)
        Kernels.mapRows(rows, cols: cols) { r0, n in
            for r in r0..<(r0 + n) {
                let xr = x.data + r * cols
                let norm = max(elip_dot(xr, xr, Int64(cols)).squareRoot(), eps)
                norms.pointer[r] = norm
                for j in 0..<cols { y.data[r * cols + j] = xr[j] / norm }
            }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.mapRows(x.rows, cols: cols) { r0, n in
                for r in r0..<(r0 + n) {
                    let norm = norms.pointer[r], yr = y.data + r * cols, dyr = dy + r * cols
                    if norm <= eps {  // below eps the op is x / eps: linear
                        for j in 0..<cols { dx[r * cols + j] += dyr[j] / eps }
                    } else {
                        let dot = elip_dot(yr, dyr, Int64(cols))
                        for j in 0..<cols { dx[r * cols + j] += (dyr[j] - yr[j] * dot) / norm }
                    }
                }
            }
        }
    }
}

import CKernels

extension Tensor {
    /// Rows of an embedding table: self is [V, D]; returns [ids.count, D]. Backward scatter-adds
    /// into the table, parallel over column blocks so repeated ids sum in a fixed order.
    public func embeddingLookup(_ ids: [Int]) throws -> Tensor {
        guard rank == 2 else { throw TensorError.invalidShape(op: "embeddingLookup", shape: shape, reason: "table must be [V, D]") }
        let vocab = shape[0], dim = shape[1]
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
            throw TensorError.invalidArgument(op: "embeddingLookup", reason: "id \(bad) outside [0, \(vocab))")
        }
        return try gatherRowsUnchecked(ids, rowSize: dim, outShape: [ids.count, dim])
    }

    /// Selects rows along the first dimension: self [N, ...] -> [indices.count, ...].
    /// Indices may repeat (their gradients add up).
    public func gatherRows(_ indices: [Int]) throws -> Tensor {
        guard rank >= 1 else { throw TensorError.invalidShape(op: "gatherRows", shape: shape, reason: "needs at least one dimension") }
        let n = shape[0]
        if let bad = indices.first(where: { $0 < 0 || $0 >= n }) {
            throw TensorError.invalidArgument(op: "gatherRows", reason: "index \(bad) outside [0, \(n)) for shape \(shape)")
        }
        let rowSize = n == 0 ? 0 : count / n
        return try gatherRowsUnchecked(indices, rowSize: rowSize, outShape: [indices.count] + shape.dropFirst())
    }

    private func gatherRowsUnchecked(_ idx: [Int], rowSize: Int, outShape: [Int]) throws -> Tensor {
        let x = self, y = Tensor.empty(outShape)
        Kernels.mapRows(idx.count, cols: rowSize) { r, n in
            for i in r..<(r + n) { (y.data + i * rowSize).update(from: x.data + idx[i] * rowSize, count: rowSize) }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            // Split columns across threads: every thread sees the indices in order.
            Threads.parallelFor(rowSize, grain: 64) { cols in
                for i in 0..<idx.count {
                    let src = dy + i * rowSize + cols.lowerBound, dst = dx + idx[i] * rowSize + cols.lowerBound
                    elip_axpy(1, src, dst, Int64(cols.count))
                }
            }
        }
    }

    /// Concatenates tensors along `axis`; all other dimensions must match.
    public static func concat(_ parts: [Tensor], axis: Int) throws -> Tensor {
        guard let first = parts.first else { throw TensorError.invalidArgument(op: "concat", reason: "no tensors") }
        let r = first.rank
        let ax = axis < 0 ? axis + r : axis
        guard ax >= 0, ax < r else { throw TensorError.invalidShape(op: "concat axis \(axis)", shape: first.shape, reason: "axis out of range") }
        for p in parts where p.rank != r || zip(p.shape, first.shape).enumerated().contains(where: { $0.offset != ax && $0.element.0 != $0.element.1 }) {
            throw TensorError.shapeMismatch(op: "concat along axis \(ax)", lhs: first.shape, rhs: p.shape)
        }
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let total = parts.reduce(0) { $0 + $1.shape[ax] }
        var outShape = first.shape
        outShape[ax] = total
        let y = Tensor.empty(outShape)
        let rowOut = total * inner
        var offsets: [Int] = []
        var off = 0
        for p in parts { offsets.append(off); off += p.shape[ax] * inner }
        for (p, o) in zip(parts, offsets) {
            let w = p.shape[ax] * inner
            Kernels.mapRows(outer, cols: w) { s, n in
                for i in s..<(s + n) { (y.data + i * rowOut + o).update(from: p.data + i * w, count: w) }
            }
        }
        return Autograd.record(y, inputs: parts) { dy in
            for (p, o) in zip(parts, offsets) where p.requiresGrad {
                let w = p.shape[ax] * inner, dp = p.gradPointer()
                Kernels.mapRows(outer, cols: w) { s, n in
                    for i in s..<(s + n) { elip_axpy(1, dy + i * rowOut + o, dp + i * w, Int64(w)) }
                }
            }
        }
    }

    /// The sub-range `start ..< start + length` along `axis`.
    public func slice(axis: Int, start: Int, length: Int) throws -> Tensor {
        let ax = axis < 0 ? axis + rank : axis
        guard ax >= 0, ax < rank else { throw TensorError.invalidShape(op: "slice axis \(axis)", shape: shape, reason: "axis out of range") }
        guard start >= 0, length >= 0, start + length <= shape[ax] else {
            throw TensorError.invalidShape(op: "slice \(start)..<\(start + length) on axis \(ax)", shape: shape, reason: "range out of bounds")
        }
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        let rowIn = shape[ax] * inner, w = length * inner, o = start * inner
        var outShape = shape
        outShape[ax] = length
        let x = self, y = Tensor.empty(outShape)
        Kernels.mapRows(outer, cols: w) { s, n in
            for i in s..<(s + n) { (y.data + i * w).update(from: x.data + i * rowIn + o, count: w) }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.mapRows(outer, cols: w) { s, n in
                for i in s..<(s + n) { elip_axpy(1, dy + i * w, dx + i * rowIn + o, Int64(w)) }
            }
        }
    }

    /// Attention-weighted merge of rows: self [B, T, D], `weights` [B * T] constants;
    /// returns [B, 1, D] with out[b] = sum_t weights[b, t] * self[b, t]. Gradients flow into self
    /// only (ELIP's merged token: the weights are detached scores).
    public func mergeRows(weights: [Float]) throws -> Tensor {
        guard rank == 3, weights.count == shape[0] * shape[1] else {
            throw TensorError.shapeMismatch(op: "mergeRows", lhs: shape, rhs: [weights.count])
        }
        let b = shape[0], t = shape[1], d = shape[2]
        let x = self, y = Tensor.zeros([b, 1, d])
        Threads.parallelFor(b) { r in
            for i in r { for j in 0..<t { elip_axpy(weights[i * t + j], x.data + (i * t + j) * d, y.data + i * d, Int64(d)) } }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Threads.parallelFor(b) { r in
                for i in r { for j in 0..<t { elip_axpy(weights[i * t + j], dy + i * d, dx + (i * t + j) * d, Int64(d)) } }
            }
        }
    }

    /// Transpose of a 2-D tensor.
    public func transposed() throws -> Tensor {
        guard rank == 2 else { throw TensorError.invalidShape(op: "transposed", shape: shape, reason: "needs 2-D") }
        let m = shape[0], n = shape[1]
        let x = self, y = Tensor.empty([n, m])
        for i in 0..<m { for j in 0..<n { y.data[j * m + i] = x.data[i * n + j] } }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            for i in 0..<m { for j in 0..<n { dx[i * n + j] += dy[j * m + i] } }
        }
    }
}

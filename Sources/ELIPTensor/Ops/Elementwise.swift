import CKernels

/// How an operand maps onto the output of a broadcasting op.
private enum Broadcast {
    /// Same shape as the output.
    case same
    /// The operand's values repeat over leading output dimensions (a bias [D] on [B, T, D]).
    case tiled(inner: Int)
    /// General numpy broadcasting: operand index of every output element.
    case indexed([Int])

    func index(_ i: Int) -> Int {
        switch self {
        case .same: return i
        case let .tiled(inner): return i % inner
        case let .indexed(map): return map[i]
        }
    }
}

/// numpy broadcasting of two shapes; nil when incompatible.
func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let n = max(a.count, b.count)
    let pa = Array(repeating: 1, count: n - a.count) + a
    let pb = Array(repeating: 1, count: n - b.count) + b
    var out: [Int] = []
    for (x, y) in zip(pa, pb) {
        if x == y || y == 1 { out.append(x) } else if x == 1 { out.append(y) } else { return nil }
    }
    return out
}

private func broadcastMap(_ operand: [Int], to out: [Int]) -> Broadcast {
    if operand == out { return .same }
    let count = operand.reduce(1, *)
    // Drop leading 1s: [1, 1, D] on [B, T, D] is a tile.
    let trimmed = Array(operand.drop(while: { $0 == 1 }))
    if trimmed.isEmpty || out.suffix(trimmed.count).elementsEqual(trimmed) { return .tiled(inner: max(count, 1)) }
    // General case: walk the output with the operand's strides (0 on broadcast dimensions).
    let n = out.count
    let padded = Array(repeating: 1, count: n - operand.count) + operand
    var strides = Array(repeating: 0, count: n)
    var s = 1
    for d in stride(from: n - 1, through: 0, by: -1) {
        strides[d] = padded[d] == 1 ? 0 : s
        s *= padded[d]
    }
    let total = out.reduce(1, *)
    var map = [Int](repeating: 0, count: total)
    var idx = Array(repeating: 0, count: n)
    var off = 0
    for i in 0..<total {
        map[i] = off
        var d = n - 1
        while d >= 0 {
            idx[d] += 1
            off += strides[d]
            if idx[d] < out[d] { break }
            off -= strides[d] * idx[d]
            idx[d] = 0
            d -= 1
        }
    }
    return .indexed(map)
}

/// Accumulates `value(i)` for every output element i into `grad[map.index(i)]`.
/// Deterministic: a tile reduces rows in fixed chunks; a general map reduces sequentially.
private func reduceInto(_ grad: UnsafeMutablePointer<Float>, map: Broadcast, outCount: Int,
                        scratch: (UnsafeMutablePointer<Float>) -> Void) {
    switch map {
    case .same:
        let tmp = Storage(count: outCount, zeroed: false)
        scratch(tmp.pointer)
        Kernels.map(outCount) { s, n in elip_axpy(1, tmp.pointer + s, grad + s, Int64(n)) }
    case let .tiled(inner):
        let tmp = Storage(count: outCount, zeroed: false)
        scratch(tmp.pointer)
        Kernels.sumRowsInto(tmp.pointer, grad, rows: outCount / inner, cols: inner)
    case let .indexed(m):
        let tmp = Storage(count: outCount, zeroed: false)
        scratch(tmp.pointer)
        for i in 0..<outCount { grad[m[i]] += tmp.pointer[i] }
    }
}

extension Tensor {
    private enum BinaryKind: String { case add, sub, mul, div }

    private func binary(_ other: Tensor, _ kind: BinaryKind) throws -> Tensor {
        guard let outShape = broadcastShape(shape, other.shape) else {
            throw TensorError.shapeMismatch(op: kind.rawValue, lhs: shape, rhs: other.shape)
        }
        if shape == other.shape && (kind == .add || kind == .sub) { return sameShapeAddSub(other, subtract: kind == .sub) }
        let a = self, b = other
        let ma = broadcastMap(a.shape, to: outShape), mb = broadcastMap(b.shape, to: outShape)
        let y = Tensor.empty(outShape)
        let pa = a.data, pb = b.data, py = y.data
        Kernels.map(y.count) { s, n in
            for i in s..<(s + n) {
                let u = pa[ma.index(i)], v = pb[mb.index(i)]
                switch kind {
                case .add: py[i] = u + v
                case .sub: py[i] = u - v
                case .mul: py[i] = u * v
                case .div: py[i] = u / v
                }
            }
        }
        let n = y.count
        return Autograd.record(y, inputs: [a, b]) { dy in
            if a.requiresGrad {
                reduceInto(a.gradPointer(), map: ma, outCount: n) { t in
                    Kernels.map(n) { s, c in
                        for i in s..<(s + c) {
                            switch kind {
                            case .add, .sub: t[i] = dy[i]
                            case .mul: t[i] = dy[i] * pb[mb.index(i)]
                            case .div: t[i] = dy[i] / pb[mb.index(i)]
                            }
                        }
                    }
                }
            }
            if b.requiresGrad {
                reduceInto(b.gradPointer(), map: mb, outCount: n) { t in
                    Kernels.map(n) { s, c in
                        for i in s..<(s + c) {
                            switch kind {
                            case .add: t[i] = dy[i]
                            case .sub: t[i] = -dy[i]
                            case .mul: t[i] = dy[i] * pa[ma.index(i)]
                            case .div:
                                let v = pb[mb.index(i)]
                                t[i] = -dy[i] * pa[ma.index(i)] / (v * v)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Residual connections: a + b or a - b on equal shapes, with plain vector loops.
    private func sameShapeAddSub(_ other: Tensor, subtract: Bool) -> Tensor {
        let a = self, b = other, y = Tensor.empty(shape)
        let sign: Float = subtract ? -1 : 1
        Kernels.map(count) { s, n in
            let pa = a.data + s, pb = b.data + s, py = y.data + s
            for i in 0..<n { py[i] = pa[i] + sign * pb[i] }
        }
        return Autograd.record(y, inputs: [a, b]) { dy in
            if a.requiresGrad {
                let da = a.gradPointer()
                Kernels.map(a.count) { s, n in elip_axpy(1, dy + s, da + s, Int64(n)) }
            }
            if b.requiresGrad {
                let db = b.gradPointer()
                Kernels.map(b.count) { s, n in elip_axpy(sign, dy + s, db + s, Int64(n)) }
            }
        }
    }

    /// Element-wise sum with numpy broadcasting.
    public func adding(_ other: Tensor) throws -> Tensor { try binary(other, .add) }
    /// Element-wise difference with numpy broadcasting.
    public func subtracting(_ other: Tensor) throws -> Tensor { try binary(other, .sub) }
    /// Element-wise product with numpy broadcasting.
    public func multiplying(_ other: Tensor) throws -> Tensor { try binary(other, .mul) }
    /// Element-wise quotient with numpy broadcasting.
    public func dividing(_ other: Tensor) throws -> Tensor { try binary(other, .div) }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.adding(b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.subtracting(b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.multiplying(b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.dividing(b) }

    /// y = alpha * x + beta.
    public func scaled(_ alpha: Float, plus beta: Float = 0) -> Tensor {
        let x = self, y = Tensor.empty(shape)
        Kernels.map(count) { s, n in for i in s..<(s + n) { y.data[i] = alpha * x.data[i] + beta } }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in elip_axpy(alpha, dy + s, dx + s, Int64(n)) }
        }
    }

    /// Sum of all elements (shape []), accumulated in double precision in a fixed order.
    public func sum() -> Tensor {
        let x = self, y = Tensor.empty([])
        let chunks = Threads.chunkCount(count, grain: Kernels.grainElements)
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { p in
            Threads.parallelFor(chunks) { cr in
                for c in cr {
                    var s = 0.0
                    for i in Threads.chunkRange(c, of: chunks, n: x.count) { s += Double(x.data[i]) }
                    p[c] = s
                }
            }
        }
        y.data[0] = Float(partial.reduce(0, +))
        return Autograd.record(y, inputs: [x]) { dy in
            let g = dy[0], dx = x.gradPointer()
            Kernels.map(x.count) { s, n in for i in s..<(s + n) { dx[i] += g } }
        }
    }

    /// Mean of all elements (shape []).
    public func mean() -> Tensor {
        sum().scaled(count == 0 ? 0 : 1 / Float(count))
    }

    /// Sum over the last dimension: [..., D] -> [...].
    public func sumLastDim() -> Tensor {
        let x = self, cols = lastDim
        let y = Tensor.empty(Array(shape.dropLast()))
        Kernels.mapRows(rows, cols: cols) { r, n in
            for row in r..<(r + n) {
                var s: Float = 0
                for j in 0..<cols { s += x.data[row * cols + j] }
                y.data[row] = s
            }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.mapRows(x.rows, cols: cols) { r, n in
                for row in r..<(r + n) { for j in 0..<cols { dx[row * cols + j] += dy[row] } }
            }
        }
    }

    /// Mean over the last dimension: [..., D] -> [...].
    public func meanLastDim() -> Tensor {
        sumLastDim().scaled(lastDim == 0 ? 0 : 1 / Float(lastDim))
    }

    /// Same values, new shape (element counts must match; -1 infers one dimension).
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var dims = newShape
        if let inferred = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            guard known > 0, count % known == 0 else {
                throw TensorError.shapeMismatch(op: "reshape", lhs: shape, rhs: newShape)
            }
            dims[inferred] = count / known
        }
        guard dims.allSatisfy({ $0 >= 0 }), dims.reduce(1, *) == count else {
            throw TensorError.shapeMismatch(op: "reshape", lhs: shape, rhs: newShape)
        }
        let x = self
        // Shares memory with x; the gradient is copied back (views of gradients would need
        // aliasing rules the tape does not have).
        let y = Tensor(shape: dims, storage: storage)
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in elip_axpy(1, dy + s, dx + s, Int64(n)) }
        }
    }
}

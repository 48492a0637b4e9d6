/// A float32, row-major, contiguous n-dimensional array that takes part in reverse-mode autodiff.
///
/// Tensors are reference types: an op's backward closure holds on to the tensors it needs, and a
/// tensor's memory returns to the caching allocator when the last reference goes. A tensor with
/// `requiresGrad` accumulates its gradient in `grad` during `backward`. Parameters live in a
/// `ParameterArena`, so their values and gradients are contiguous across the whole model.
public final class Tensor {
    public let shape: [Int]
    public let count: Int
    let storage: Storage
    /// True when gradients flow into this tensor (a parameter, or the result of an op on one).
    public internal(set) var requiresGrad: Bool
    /// Gradient memory: allocated on first use, or preset to the arena for parameters.
    var gradStorage: Storage?
    /// Optional label (parameter name, op name) for diagnostics.
    public var name: String?
    /// Position of this parameter in its arena (nil for other tensors).
    public internal(set) var parameterIndex: Int?
    /// True for tensors owned by a parameter arena.
    public var isParameter: Bool { parameterIndex != nil }

    @usableFromInline var data: UnsafeMutablePointer<Float> { storage.pointer }

    init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Uninitialised tensor from the caching allocator (kernels overwrite it).
    static func empty(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: Storage(count: shape.reduce(1, *), zeroed: false))
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: Storage(count: shape.reduce(1, *), zeroed: true))
    }

    /// A tensor filled with `value`.
    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = empty(shape)
        t.data.update(repeating: value, count: t.count)
        return t
    }

    /// A tensor holding `values` (count must equal the product of `shape`).
    public convenience init(_ values: [Float], shape: [Int]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.invalidShape(op: "Tensor(values:shape:)", shape: shape, reason: "negative dimension")
        }
        let n = shape.reduce(1, *)
        guard values.count == n else {
            throw TensorError.invalidShape(op: "Tensor(values:shape:)", shape: shape,
                                           reason: "\(values.count) values for \(n) elements")
        }
        self.init(shape: shape, storage: Storage(count: n, zeroed: false))
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { data.update(from: base, count: n) }
        }
    }

    /// A scalar (shape []).
    public convenience init(scalar: Float) {
        self.init(shape: [], storage: Storage(count: 1, zeroed: false))
        data[0] = scalar
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// Size of the last dimension (1 for a scalar).
    public var lastDim: Int { shape.last ?? 1 }

    /// Number of rows when viewed as a [rows, lastDim] matrix.
    public var rows: Int { lastDim == 0 ? 0 : count / lastDim }

    /// Copies the values out.
    public func toArray() -> [Float] {
        Array(UnsafeBufferPointer(start: data, count: count))
    }

    /// The single value of a one-element tensor.
    public var scalar: Float {
        precondition(count == 1, "scalar of a tensor with shape \(shape)")
        return data[0]
    }

    /// Element at a flat (row-major) index.
    public subscript(flat index: Int) -> Float {
        get { precondition(index >= 0 && index < count); return data[index] }
        set { precondition(index >= 0 && index < count); data[index] = newValue }
    }

    /// Read-only access to the values without copying.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: data, count: count))
    }

    /// Mutable access to the values (e.g. to load weights or update parameters in place).
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: data, count: count))
    }

    /// Overwrites the values from an array of the same count.
    public func assign(_ values: [Float]) throws {
        guard values.count == count else {
            throw TensorError.shapeMismatch(op: "assign", lhs: shape, rhs: [values.count])
        }
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// Overwrites the values from another tensor with the same number of elements.
    public func assign(_ other: Tensor) throws {
        guard other.count == count else { throw TensorError.shapeMismatch(op: "assign", lhs: shape, rhs: other.shape) }
        data.update(from: other.data, count: count)
    }

    // MARK: gradients

    /// The accumulated gradient, or nil when none has flowed here.
    public var grad: Tensor? {
        guard let g = gradStorage else { return nil }
        return Tensor(shape: shape, storage: g)
    }

    /// Gradient memory, allocated zeroed on first use.
    @usableFromInline
    func gradPointer() -> UnsafeMutablePointer<Float> {
        if let g = gradStorage { return g.pointer }
        let g = Storage(count: count, zeroed: true)
        gradStorage = g
        return g.pointer
    }

    /// Sets the accumulated gradient to zero (parameters keep their arena slot).
    public func zeroGradient() {
        gradStorage?.pointer.update(repeating: 0, count: count)
    }

    /// Gradient memory if any gradient has been accumulated.
    var existingGrad: UnsafeMutablePointer<Float>? { gradStorage?.pointer }

    /// A tensor sharing this one's memory that is cut off from autodiff.
    public func detached() -> Tensor {
        Tensor(shape: shape, storage: storage)
    }

    /// A deep copy cut off from autodiff.
    public func copy() -> Tensor {
        let t = Tensor.empty(shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Marks a leaf tensor as a gradient target (inputs in gradient checks, for instance).
    public func requiringGrad() -> Tensor {
        requiresGrad = true
        return self
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = (0..<min(count, 6)).map { String(data[$0]) }.joined(separator: ", ")
        return "Tensor\(shape)[\(preview)\(count > 6 ? ", ..." : "")]"
    }
}

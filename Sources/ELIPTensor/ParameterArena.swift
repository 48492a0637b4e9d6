import Foundation

/// All parameters of a model in one contiguous block of values and one of gradients.
///
/// With everything contiguous, gradient all-reduce, the optimizer, gradient clipping and
/// checkpointing each become a single loop over one buffer (as in llm.c). The arena reserves a
/// large virtual range up front (pages are committed only when touched), so parameters can be
/// added one by one while their addresses stay fixed.
public final class ParameterArena {
    /// One named parameter: its place in the arena and its shape.
    public struct Entry {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    public private(set) var tensors: [Tensor] = []
    private var byName: [String: Int] = [:]
    private let valueBase: UnsafeMutablePointer<Float>
    private let gradBase: UnsafeMutablePointer<Float>?
    private let reservedFloats: Int
    /// Floats in use (parameters plus alignment padding).
    public private(set) var used = 0

    /// Reserves room for `capacity` floats of values (and as many of gradients when
    /// `withGradients`; a momentum model needs none).
    public init(capacity: Int = 1 << 30, withGradients: Bool = true) {
        reservedFloats = capacity
        valueBase = ParameterArena.reserve(capacity)
        gradBase = withGradients ? ParameterArena.reserve(capacity) : nil
    }

    deinit {
        munmap(valueBase, reservedFloats * 4)
        if let gradBase { munmap(gradBase, reservedFloats * 4) }
    }

    private static func reserve(_ floats: Int) -> UnsafeMutablePointer<Float> {
        let p = mmap(nil, floats * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("cannot reserve \(floats * 4) bytes of address space") }
        return p.bindMemory(to: Float.self, capacity: floats)
    }

    /// Adds a zero-initialised parameter. Names must be unique.
    public func add(_ name: String, shape: [Int]) throws -> Tensor {
        guard byName[name] == nil else {
            throw TensorError.invalidArgument(op: "ParameterArena.add", reason: "duplicate parameter name \(name)")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.invalidShape(op: "ParameterArena.add(\(name))", shape: shape, reason: "negative dimension")
        }
        let n = shape.reduce(1, *)
        let offset = used
        // 16-float (64-byte) alignment keeps every parameter's vector loads aligned.
        let padded = (n + 15) / 16 * 16
        guard offset + padded <= reservedFloats else {
            throw TensorError.invalidArgument(op: "ParameterArena.add", reason: "arena capacity \(reservedFloats) floats exceeded")
        }
        used += padded
        let t = Tensor(shape: shape, storage: Storage(borrowing: valueBase + offset, count: n, owner: self),
                       requiresGrad: gradBase != nil)
        if let gradBase { t.gradStorage = Storage(borrowing: gradBase + offset, count: n, owner: self) }
        t.name = name
        t.parameterIndex = entries.count
        byName[name] = entries.count
        entries.append(Entry(name: name, shape: shape, offset: offset))
        tensors.append(t)
        return t
    }

    /// The parameter called `name`.
    public func tensor(_ name: String) -> Tensor? { byName[name].map { tensors[$0] } }

    /// True when the arena holds gradients.
    public var hasGradients: Bool { gradBase != nil }

    /// All values (including alignment padding, which stays zero).
    public var values: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: valueBase, count: used) }

    /// All gradients (same layout as `values`); empty for an arena without gradients.
    public var gradients: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: gradBase, count: gradBase == nil ? 0 : used)
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        if let gradBase { gradBase.update(repeating: 0, count: used) }
    }

    /// Number of parameters (excluding padding).
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.count } }
}

import Foundation

/// How a parameter starts when it is not loaded from a file. The layer that creates a parameter
/// says (a Linear's weight, a LayerNorm's scale), so initialisation never guesses from names.
public enum ParameterInit: Equatable, Sendable {
    case zeros
    case ones
    /// N(0, 1) truncated to [-2, 2] by rejection, times `std` (timm's trunc_normal_ at 2 sigma).
    case truncatedNormal(std: Float)
    /// Left alone: the model sets it (a temperature from the config, say).
    case setByModel
}

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
        public let initializer: ParameterInit
        public var count: Int { shape.reduce(1, *) }
        /// Floats the parameter occupies, alignment padding included.
        public var paddedCount: Int { ParameterArena.padded(count) }
    }

    /// A second name of a stored parameter (weight tying): one storage and one gradient, which
    /// sums the gradients of every use; a state dict lists the tensor under every name.
    public struct Alias: Equatable, Sendable {
        public let name: String
        /// The stored parameter's name.
        public let target: String
    }

    public private(set) var entries: [Entry] = []
    public private(set) var tensors: [Tensor] = []
    /// Tied names, in the order they were declared.
    public private(set) var aliases: [Alias] = []
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

    /// 16-float (64-byte) alignment keeps every parameter's vector loads aligned.
    static func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }

    /// Adds a parameter (zero until initialised or loaded). Names must be unique.
    public func add(_ name: String, shape: [Int], init initializer: ParameterInit = .zeros) throws -> Tensor {
        guard byName[name] == nil else {
            throw TensorError.invalidArgument(op: "ParameterArena.add", reason: "duplicate parameter name \(name)")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.invalidShape(op: "ParameterArena.add(\(name))", shape: shape, reason: "negative dimension")
        }
        var n = 1
        for d in shape {
            let (product, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw TensorError.invalidShape(op: "ParameterArena.add(\(name))", shape: shape, reason: "too many elements")
            }
            n = product
        }
        let offset = used
        let padded = Self.padded(n)
        guard padded <= reservedFloats - offset else {
            throw TensorError.invalidArgument(op: "ParameterArena.add", reason: "arena capacity \(reservedFloats) floats exceeded")
        }
        used += padded
        let t = Tensor(shape: shape, storage: Storage(borrowing: valueBase + offset, count: n, owner: self),
                       requiresGrad: gradBase != nil)
        if let gradBase { t.gradStorage = Storage(borrowing: gradBase + offset, count: n, owner: self) }
        t.name = name
        t.parameterIndex = entries.count
        byName[name] = entries.count
        entries.append(Entry(name: name, shape: shape, offset: offset, initializer: initializer))
        tensors.append(t)
        return t
    }

    /// Declares `alias` as another name of `parameter` (which must belong to this arena).
    public func tie(_ alias: String, to parameter: Tensor) throws {
        guard let i = parameter.parameterIndex, i < tensors.count, tensors[i] === parameter else {
            throw TensorError.invalidArgument(op: "ParameterArena.tie(\(alias))", reason: "the tied tensor is not a parameter of this arena")
        }
        guard byName[alias] == nil, !aliases.contains(where: { $0.name == alias }) else {
            throw TensorError.invalidArgument(op: "ParameterArena.tie", reason: "duplicate parameter name \(alias)")
        }
        aliases.append(Alias(name: alias, target: entries[i].name))
    }

    /// The parameter called `name` (a stored name or an alias).
    public func tensor(_ name: String) -> Tensor? {
        if let i = byName[name] { return tensors[i] }
        return aliases.first { $0.name == name }.flatMap { a in byName[a.target].map { tensors[$0] } }
    }

    /// Every name of the parameter stored as `name`: itself, then its aliases.
    public func names(of name: String) -> [String] { [name] + aliases.filter { $0.target == name }.map(\.name) }

    /// Sets every parameter (or those in `only`) by its `ParameterInit`, drawing the random ones in
    /// arena order from one seeded stream.
    public func initialise(seed: UInt64, only names: Set<String>? = nil) {
        var g = SeededGenerator(seed: seed)
        for (entry, t) in zip(entries, tensors) where names?.contains(entry.name) ?? true {
            switch entry.initializer {
            case .zeros: t.data.update(repeating: 0, count: t.count)
            case .ones: t.data.update(repeating: 1, count: t.count)
            case .setByModel: continue
            case let .truncatedNormal(std):
                for i in 0..<t.count {
                    var v = g.nextNormal()
                    while abs(v) > 2 { v = g.nextNormal() }
                    t.data[i] = v * std
                }
            }
        }
    }

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

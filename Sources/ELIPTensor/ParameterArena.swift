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
    /// U(-bound, bound): PyTorch's default nn.Linear initialisation, bound = 1/sqrt(fan_in)
    /// (new task heads such as ALBEF's cls_head keep it when fine-tuning starts).
    case uniform(bound: Float)
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
    private let valueBase: UnsafeMutablePointer<Float>?
    private let gradBase: UnsafeMutablePointer<Float>?
    private let withGradients: Bool
    private let reservedFloats: Int
    /// Why the reservation failed (then every `add` throws it).
    private let reservationError: TensorError?
    /// Measuring arenas (`measuring`) back every parameter with shared scratch instead.
    private let isMeasuring: Bool
    private var scratch: [(pointer: UnsafeMutablePointer<Float>, floats: Int)] = []
    /// Floats in use (parameters plus alignment padding).
    public private(set) var used = 0

    /// Reserves room for `capacity` floats of values (and as many of gradients when
    /// `withGradients`; a momentum model needs none). Reserve what the model needs (see
    /// `measuring`): the reservation counts against the address-space limit (`ulimit -v`). When it
    /// cannot be made, the arena is empty and `add` throws an error saying so.
    public init(capacity: Int = 1 << 30, withGradients: Bool = true) {
        reservedFloats = max(0, capacity)
        self.withGradients = withGradients
        isMeasuring = false
        var error: TensorError?
        let values = ParameterArena.reserve(reservedFloats, error: &error)
        let grads = withGradients && values != nil ? ParameterArena.reserve(reservedFloats, error: &error) : nil
        if error != nil, let values {  // half a reservation is no use
            munmap(values, reservedFloats * 4)
        }
        valueBase = error == nil ? values : nil
        gradBase = error == nil ? grads : nil
        reservationError = error
    }

    /// An arena that only counts: parameters get names, shapes and offsets as usual, but their
    /// storage is scratch shared by all of them. Building a model once against measuring arenas
    /// gives `used`, the exact capacity to reserve for the real build.
    public static func measuring(withGradients: Bool = true) -> ParameterArena {
        ParameterArena(measuringWithGradients: withGradients)
    }

    private init(measuringWithGradients: Bool) {
        reservedFloats = Int.max
        withGradients = measuringWithGradients
        isMeasuring = true
        valueBase = nil
        gradBase = nil
        reservationError = nil
    }

    deinit {
        if let valueBase { munmap(valueBase, reservedFloats * 4) }
        if let gradBase { munmap(gradBase, reservedFloats * 4) }
        for s in scratch { munmap(s.pointer, s.floats * 4) }
    }

    private static func reserve(_ floats: Int, error: inout TensorError?) -> UnsafeMutablePointer<Float>? {
        guard floats > 0 else { return nil }
        let (bytes, overflow) = floats.multipliedReportingOverflow(by: 4)
        let p = overflow ? MAP_FAILED : mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else {
            let reason = overflow ? "size overflows" : String(cString: strerror(errno))
            error = TensorError.invalidArgument(
                op: "ParameterArena",
                reason: "cannot reserve \(bytes / 1_048_576) MiB of address space for \(floats) parameter floats (\(reason)); the process's address-space limit (ulimit -v) or memory is too small for this model")
            return nil
        }
        return p.bindMemory(to: Float.self, capacity: floats)
    }

    /// Scratch of at least `floats` floats for a measuring arena.
    private func scratchPointer(_ floats: Int) throws -> UnsafeMutablePointer<Float> {
        if let last = scratch.last, last.floats >= floats { return last.pointer }
        var error: TensorError?
        let n = max(floats, 1 << 16)
        guard let p = ParameterArena.reserve(n, error: &error) else { throw error! }
        scratch.append((p, n))
        return p
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
        if let reservationError { throw reservationError }
        let offset = used
        let padded = Self.padded(n)
        guard padded <= reservedFloats - offset else {
            throw TensorError.invalidArgument(op: "ParameterArena.add(\(name))", reason: "arena capacity \(reservedFloats) floats exceeded")
        }
        let values: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>?
        if isMeasuring {
            values = try scratchPointer(n)
            grads = withGradients ? values : nil
        } else {
            guard let valueBase else {
                throw TensorError.invalidArgument(op: "ParameterArena.add(\(name))", reason: "the arena has no capacity")
            }
            values = valueBase + offset
            grads = gradBase.map { $0 + offset }
        }
        used += padded
        let t = Tensor(shape: shape, storage: Storage(borrowing: values, count: n, owner: self), requiresGrad: withGradients)
        if let grads { t.gradStorage = Storage(borrowing: grads, count: n, owner: self) }
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
            case let .uniform(bound):
                for i in 0..<t.count { t.data[i] = (2 * g.nextUniform() - 1) * bound }
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
    public var hasGradients: Bool { withGradients }

    /// All values (including alignment padding, which stays zero); empty for a measuring arena.
    public var values: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: valueBase, count: valueBase == nil ? 0 : used)
    }

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

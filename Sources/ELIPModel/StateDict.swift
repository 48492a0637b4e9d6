import ELIPTensor
import Foundation
import Safetensors

/// What a model's state dict holds, in the official names: parameter arenas (each entry and each
/// tied alias), float buffers (queues), integer counters (queue pointers) and constant int64
/// buffers (position ids). Checkpoints, broadcasting and reference replay work from this alone.
public struct StateDictLayout {
    public enum Role { case trainable, momentum }

    public struct Arena {
        public let arena: ParameterArena
        public let role: Role
        /// Called when a loaded file has none of this arena's tensors (e.g. a fresh initial
        /// checkpoint without momentum weights); nil: that is an error.
        public let whenAbsent: (() -> Void)?
        public init(_ arena: ParameterArena, role: Role, whenAbsent: (() -> Void)? = nil) {
            self.arena = arena
            self.role = role
            self.whenAbsent = whenAbsent
        }
    }

    /// An integer state value in [0, limit), stored as int64 [1].
    public struct Counter {
        public let name: String
        public let limit: Int
        public let get: () -> Int
        public let set: (Int) -> Void
        public init(name: String, limit: Int, get: @escaping () -> Int, set: @escaping (Int) -> Void) {
            self.name = name
            self.limit = limit
            self.get = get
            self.set = set
        }
    }

    /// An integer state tensor (int64 in the file; e.g. retrieval's `idx_queue`); a value in a
    /// file that `isValid` rejects is an error, described by `valid`.
    public struct IntegerBuffer {
        public let name: String
        public let shape: [Int]
        public let isValid: (Int64) -> Bool
        public let valid: String
        public let get: () -> [Int64]
        public let set: ([Int64]) -> Void
        public init(name: String, shape: [Int], isValid: @escaping (Int64) -> Bool, valid: String,
                    get: @escaping () -> [Int64], set: @escaping ([Int64]) -> Void) {
            self.name = name
            self.shape = shape
            self.isValid = isValid
            self.valid = valid
            self.get = get
            self.set = set
        }

        /// Sets the values of `source` in `file`, checking shape (unit axes aside) and range.
        func load(from file: SafetensorsFile, source: String) throws {
            let e = try file.entry(source), count = shape.reduce(1, *)
            guard e.elementCount == count, e.shape.filter({ $0 != 1 }) == shape.filter({ $0 != 1 }) else {
                throw CheckpointError(file: file.path, message: "\(source): shape \(e.shape), expected \(shape) for \(name)")
            }
            let values = try file.int64s(source)
            if let bad = values.first(where: { !isValid($0) }) {
                throw CheckpointError(file: file.path, message: "\(source): value \(bad) for \(name), which must be \(valid)")
            }
            set(values)
        }
    }

    public var arenas: [Arena] = []
    /// Float state tensors; a file without one leaves it as it is.
    public var buffers: [(name: String, tensor: Tensor)] = []
    public var counters: [Counter] = []
    public var integerBuffers: [IntegerBuffer] = []
    /// Written for PyTorch's sake, ignored when loading.
    public var constants: [(name: String, values: [Int64], shape: [Int])] = []

    public init() {}

    /// The trainable arena's entries and every arena, for broadcasts.
    public var allArenas: [ParameterArena] { arenas.map(\.arena) }
}

/// Loading and saving by PyTorch state_dict names.
public enum StateDict {
    /// Copies every parameter of `arena` that `file` holds (under its name or an alias; names
    /// given by `rename`, default identity), checking shapes. Returns the names the file lacks.
    @discardableResult
    public static func load(_ arena: ParameterArena, from file: SafetensorsFile,
                            rename: (String) -> [String] = { [$0] }) throws -> [String] {
        var missing: [String] = []
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            let candidates = arena.names(of: entry.name).flatMap(rename)
            guard let source = candidates.first(where: { file.contains($0) }), let e = file[source] else {
                missing.append(entry.name)
                continue
            }
            guard e.elementCount == entry.count, e.shape.filter({ $0 != 1 }) == entry.shape.filter({ $0 != 1 }) else {
                throw CheckpointError(file: file.path, message: "\(source): shape \(e.shape) in the file, \(entry.shape) expected")
            }
            try tensor.withUnsafeMutableBufferPointer { buf in
                try file.copyFloats(source, into: buf.baseAddress!, count: entry.count)
            }
        }
        return missing
    }

    /// Loads a whole state dict: every arena (an arena missing entirely calls its `whenAbsent`,
    /// partly missing is an error), buffers and counters present in the file.
    public static func load(_ layout: StateDictLayout, from file: SafetensorsFile) throws {
        for a in layout.arenas {
            let missing = try load(a.arena, from: file)
            if missing.isEmpty { continue }
            if missing.count == a.arena.entries.count, let fill = a.whenAbsent {
                fill()
                continue
            }
            let what = a.role == .momentum ? "momentum weights incomplete" : "\(missing.count) parameters missing"
            throw CheckpointError(file: file.path, message: "\(what), e.g. \(missing.prefix(6).joined(separator: ", "))")
        }
        for (name, tensor) in layout.buffers where file.contains(name) {
            let e = try file.entry(name)
            guard e.shape == tensor.shape else {
                throw CheckpointError(file: file.path, message: "\(name): shape \(e.shape), expected \(tensor.shape)")
            }
            try tensor.withUnsafeMutableBufferPointer { try file.copyFloats(name, into: $0.baseAddress!, count: tensor.count) }
        }
        for c in layout.counters where file.contains(c.name) {
            guard let v = try file.int64s(c.name).first, v >= 0, v < Int64(c.limit) else {
                throw CheckpointError(file: file.path, message: "\(c.name) outside [0, \(c.limit))")
            }
            c.set(Int(v))
        }
        for b in layout.integerBuffers where file.contains(b.name) { try b.load(from: file, source: b.name) }
        try requireFinite(layout, source: file.path)
    }

    /// The file's tensors that no entry of `layout` takes (PyTorch's `unexpected_keys`): not a
    /// parameter of any arena (name or tied alias), buffer, counter or constant.
    public static func unexpectedNames(_ layout: StateDictLayout, in file: SafetensorsFile) -> [String] {
        var known = Set<String>()
        for a in layout.arenas { for e in a.arena.entries { known.formUnion(a.arena.names(of: e.name)) } }
        known.formUnion(layout.buffers.map(\.name))
        known.formUnion(layout.counters.map(\.name))
        known.formUnion(layout.integerBuffers.map(\.name))
        known.formUnion(layout.constants.map(\.name))
        return file.names.filter { !known.contains($0) }
    }

    /// Throws naming the first tensor (parameter or buffer) that holds NaN or an infinity:
    /// weights like that make every output NaN or meaningless, so evaluating, visualising,
    /// resuming or starting from them is an error rather than a result.
    public static func requireFinite(_ layout: StateDictLayout, source: String) throws {
        func check(_ name: String, _ tensor: Tensor) throws {
            let (bad, first) = tensor.withUnsafeBufferPointer { p -> (Int, Float?) in
                var bad = 0, first: Float?
                for x in p where !x.isFinite {
                    bad += 1
                    if first == nil { first = x }
                }
                return (bad, first)
            }
            if bad > 0 {
                throw CheckpointError(file: source, message: "\(name): \(bad) of \(tensor.count) values are not finite (e.g. \(first!)); the weights are damaged or diverged")
            }
        }
        for a in layout.arenas {
            for (entry, tensor) in zip(a.arena.entries, a.arena.tensors) { try check(entry.name, tensor) }
        }
        for (name, tensor) in layout.buffers { try check(name, tensor) }
    }

    /// Adds every tensor of the layout to `writer`: each arena's parameters, then their tied
    /// names, buffers, counters and constants.
    public static func add(_ layout: StateDictLayout, to writer: inout SafetensorsWriter) throws {
        for a in layout.arenas { try add(a.arena, to: &writer) }
        for (name, tensor) in layout.buffers { try addStreamed(tensor, as: name, to: &writer) }
        for c in layout.counters { try writer.add(c.name, int64s: [Int64(c.get())], shape: [1]) }
        for b in layout.integerBuffers { try writer.add(b.name, int64s: b.get(), shape: b.shape) }
        for k in layout.constants { try writer.add(k.name, int64s: k.values, shape: k.shape) }
    }

    /// Adds every parameter of `arena` under its name, then under each alias.
    public static func add(_ arena: ParameterArena, to writer: inout SafetensorsWriter) throws {
        for (entry, tensor) in zip(arena.entries, arena.tensors) { try addStreamed(tensor, as: entry.name, to: &writer) }
        for alias in arena.aliases {
            guard let t = arena.tensor(alias.target) else { continue }
            try addStreamed(t, as: alias.name, to: &writer)
        }
    }

    /// The tensor's values are read while the file is written, not copied when added: a copy of
    /// a whole model (and its momentum twin) would double the memory a checkpoint needs.
    static func addStreamed(_ tensor: Tensor, as name: String, to writer: inout SafetensorsWriter) throws {
        #if !_endian(little)
        #error("safetensors stores little-endian floats; this copy-free path assumes the host's order is the same")
        #endif
        try writer.add(name, dtype: .f32, shape: tensor.shape) { emit in
            try tensor.withUnsafeBufferPointer { try emit(UnsafeRawBufferPointer($0)) }
        }
    }

    /// Adds every gradient of `arena` to `writer` as `prefix + name` (stored names only).
    public static func addGradients(_ arena: ParameterArena, to writer: inout SafetensorsWriter, prefix: String = "grad.") throws {
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            let g = tensor.grad?.toArray() ?? [Float](repeating: 0, count: entry.count)
            try writer.add(prefix + entry.name, floats: g, shape: entry.shape)
        }
    }
}

/// A checkpoint or weights file that cannot be used, naming the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "\(file): \(message)" }
}

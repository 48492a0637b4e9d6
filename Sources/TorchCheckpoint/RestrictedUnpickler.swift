import Foundation

/// A pickle reader for what torch.save writes (protocol 2, and the protocol 4/5 framing opcodes
/// in case a checkpoint was saved with a newer protocol), and nothing more. It builds values; it
/// never looks anything up or calls anything: GLOBAL/STACK_GLOBAL resolve only the names in
/// `AllowedGlobal` (anything else, e.g. os.system or builtins.eval, is refused with its name),
/// REDUCE only "calls" those by building the corresponding value, and unknown opcodes are
/// refused. Every length and index is checked against the bytes, so damaged input is an error.
struct RestrictedUnpickler {
    let bytes: UnsafeRawBufferPointer
    /// File and record, for messages.
    let label: String
    /// Resolves a BINPERSID id (torch's storage tuples).
    let persistentLoad: (PickleValue) throws -> PickleValue

    private var position: Int
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(bytes: UnsafeRawBufferPointer, start: Int = 0, label: String, persistentLoad: @escaping (PickleValue) throws -> PickleValue) {
        self.bytes = bytes
        self.label = label
        self.persistentLoad = persistentLoad
        position = start
    }

    /// Reads one pickle (up to its STOP) starting at the current position; returns the value and
    /// the position just after STOP, where a following pickle would start.
    mutating func load() throws -> (PickleValue, end: Int) {
        stack = []; marks = []; memo = [:]
        while true {
            let opcodeAt = position
            guard position < bytes.count else {
                throw TorchCheckpointError(label, "pickle ends at byte \(position) without STOP (truncated?)")
            }
            let opcode = bytes[position]
            position += 1
            do {
                if let value = try step(opcode) { return (value, position) }
            } catch let problem as PickleProblem {
                throw TorchCheckpointError(label, "pickle byte \(opcodeAt), opcode \(Self.describe(opcode)): \(problem.message)")
            }
        }
    }

    // MARK: reading primitives

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - position else {
            throw PickleProblem("needs \(n) bytes but only \(bytes.count - position) remain (truncated or damaged)")
        }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    private mutating func unsignedLE(_ n: Int) throws -> UInt64 {
        let b = try take(n)
        var v: UInt64 = 0
        for i in (0..<n).reversed() { v = v << 8 | UInt64(b[i]) }
        return v
    }

    private mutating func length(_ n: Int) throws -> Int {
        let v = try unsignedLE(n)
        guard v <= UInt64(bytes.count - position) else {
            throw PickleProblem("length \(v) runs past the end of the data (\(bytes.count - position) bytes remain)")
        }
        return Int(v)
    }

    private mutating func utf8(_ n: Int) throws -> String {
        let b = try take(n)
        guard let s = String(bytes: b, encoding: .utf8) else { throw PickleProblem("string of \(n) bytes is not valid UTF-8") }
        return s
    }

    private mutating func line() throws -> String {
        let limit = min(bytes.count, position + 256)
        var end = position
        while end < limit && bytes[end] != 0x0A { end += 1 }
        guard end < limit else { throw PickleProblem("GLOBAL name not terminated by a newline within 256 bytes") }
        let s = try utf8(end - position)
        position += 1
        return s
    }

    /// LONG1/LONG4 payload: little-endian two's complement.
    private static func integer(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count > 8 { return .bigInt(Array(b)) }
        var v: UInt64 = 0
        for i in (0..<b.count).reversed() { v = v << 8 | UInt64(b[i]) }
        let shift = UInt64(64 - 8 * b.count)
        return .int(Int64(bitPattern: v << shift) >> Int64(shift))  // sign-extend
    }

    // MARK: stack

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw PickleProblem("stack underflow") }
        if let m = marks.last, stack.count < m { throw PickleProblem("pops past a MARK") }
        return v
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw PickleProblem("no MARK to pop to") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func top() throws -> PickleValue {
        guard let v = stack.last else { throw PickleProblem("stack underflow") }
        return v
    }

    private func dictBelow(_ items: Int) throws -> PickleDict {
        guard let t = stack.last else { throw PickleProblem("no dict on the stack") }
        guard case .dict(let d) = t else { throw PickleProblem("sets items on a \(t.typeName), not a dict") }
        return d
    }

    // MARK: opcodes

    /// Executes one opcode; returns the result at STOP.
    private mutating func step(_ opcode: UInt8) throws -> PickleValue? {
        switch opcode {
        case 0x80:  // PROTO
            let version = try take(1)[0]
            guard version <= 5 else { throw PickleProblem("pickle protocol \(version) is newer than 5") }
        case 0x95:  // FRAME: an 8-byte length of the frame that follows; the data is read inline
            _ = try unsignedLE(8)
        case 0x2E:  // STOP
            let v = try pop()
            guard stack.isEmpty else { throw PickleProblem("\(stack.count) values left on the stack at STOP") }
            return v
        case 0x28: marks.append(stack.count)  // MARK
        case 0x7D: stack.append(.dict(PickleDict(ordered: false)))  // EMPTY_DICT
        case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
        case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
        case 0x4E: stack.append(.none)  // NONE
        case 0x88: stack.append(.bool(true))  // NEWTRUE
        case 0x89: stack.append(.bool(false))  // NEWFALSE
        case 0x4B: stack.append(.int(Int64(try unsignedLE(1))))  // BININT1
        case 0x4D: stack.append(.int(Int64(try unsignedLE(2))))  // BININT2
        case 0x4A: stack.append(.int(Int64(Int32(bitPattern: UInt32(try unsignedLE(4))))))  // BININT
        case 0x8A: let n = try length(1); stack.append(Self.integer(try take(n)))  // LONG1
        case 0x8B:  // LONG4
            let n = try length(4)
            guard n <= 4096 else { throw PickleProblem("integer of \(n) bytes") }
            stack.append(Self.integer(try take(n)))
        case 0x47:  // BINFLOAT: big-endian IEEE double
            let b = try take(8)
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(b[i]) }
            stack.append(.float(Double(bitPattern: v)))
        case 0x58: let n = try length(4); stack.append(.string(try utf8(n)))  // BINUNICODE
        case 0x8C: let n = try length(1); stack.append(.string(try utf8(n)))  // SHORT_BINUNICODE
        case 0x8D: let n = try length(8); stack.append(.string(try utf8(n)))  // BINUNICODE8
        // Python 2 str (legacy checkpoints); torch.load decodes them as UTF-8 by default.
        case 0x54: let n = try length(4); stack.append(.string(try utf8(n)))  // BINSTRING
        case 0x55: let n = try length(1); stack.append(.string(try utf8(n)))  // SHORT_BINSTRING
        case 0x85: let a = try pop(); stack.append(.tuple([a]))  // TUPLE1
        case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))  // TUPLE2
        case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
        case 0x74: stack.append(.tuple(try popToMark()))  // TUPLE
        case 0x6C: stack.append(.list(PickleList(try popToMark())))  // LIST
        case 0x64:  // DICT
            let items = try popToMark()
            let d = PickleDict(ordered: false)
            try setItems(d, items)
            stack.append(.dict(d))
        case 0x73:  // SETITEM
            let value = try pop(), key = try pop()
            try dictBelow(0).set(key, value)
        case 0x75:  // SETITEMS
            let items = try popToMark()
            try setItems(try dictBelow(items.count), items)
        case 0x61:  // APPEND
            let value = try pop()
            guard case .list(let l) = try top() else { throw PickleProblem("appends to a \(try top().typeName), not a list") }
            l.items.append(value)
        case 0x65:  // APPENDS
            let items = try popToMark()
            guard case .list(let l) = try top() else { throw PickleProblem("appends to a \(try top().typeName), not a list") }
            l.items += items
        case 0x71: memo[Int(try unsignedLE(1))] = try top()  // BINPUT
        case 0x72: memo[Int(try unsignedLE(4))] = try top()  // LONG_BINPUT
        case 0x94: memo[memo.count] = try top()  // MEMOIZE
        case 0x68, 0x6A:  // BINGET, LONG_BINGET
            let index = Int(try unsignedLE(opcode == 0x68 ? 1 : 4))
            guard let v = memo[index] else { throw PickleProblem("memo entry \(index) was never stored") }
            stack.append(v)
        case 0x63:  // GLOBAL "module\nname\n"
            let module = try line(), name = try line()
            stack.append(.global(try allowed(module, name)))
        case 0x93:  // STACK_GLOBAL
            let name = try pop(), module = try pop()
            guard case .string(let m) = module, case .string(let n) = name else {
                throw PickleProblem("STACK_GLOBAL needs two strings, got \(module.typeName) and \(name.typeName)")
            }
            stack.append(.global(try allowed(m, n)))
        case 0x52:  // REDUCE
            let args = try pop(), callable = try pop()
            stack.append(try reduce(callable, args))
        case 0x51:  // BINPERSID
            let pid = try pop()
            stack.append(try persistentLoad(pid))
        case 0x62:  // BUILD
            let state = try pop()
            let object = try top()
            // OrderedDict state (e.g. a state_dict's `_metadata` attribute with module versions) is
            // an attribute dict; the tensors are already in the items, so it is dropped.
            guard case .dict = object, case .dict = state else {
                throw PickleProblem("BUILD of a \(object.typeName) with a \(state.typeName) state is not something torch.save writes for a state dict")
            }
        default:
            throw PickleProblem("not supported: a checkpoint of tensors, dicts, lists and scalars does not use it")
        }
        return nil
    }

    private func setItems(_ d: PickleDict, _ items: [PickleValue]) throws {
        guard items.count % 2 == 0 else { throw PickleProblem("odd number of items (\(items.count)) for key/value pairs") }
        for i in stride(from: 0, to: items.count, by: 2) { try d.set(items[i], items[i + 1]) }
    }

    private func allowed(_ module: String, _ name: String) throws -> AllowedGlobal {
        if module == "torch", name.hasSuffix("Storage"), AllowedGlobal(module: module, name: name) == nil {
            throw PickleProblem("storage type torch.\(name) is not supported (float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8 and bool tensors are)")
        }
        guard let g = AllowedGlobal(module: module, name: name) else {
            throw PickleProblem("refused global \(module).\(name): a checkpoint may only name collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage types; nothing was executed")
        }
        return g
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let g) = callable else { throw PickleProblem("REDUCE of a \(callable.typeName), which is not callable here") }
        guard case .tuple(let a) = args else { throw PickleProblem("REDUCE arguments are a \(args.typeName), not a tuple") }
        switch g {
        case .orderedDict:
            let d = PickleDict(ordered: true)
            if a.count == 1, case .list(let pairs) = a[0] {
                for p in pairs.items {
                    guard case .tuple(let kv) = p, kv.count == 2 else { throw PickleProblem("OrderedDict item is not a (key, value) pair") }
                    try d.set(kv[0], kv[1])
                }
            } else if !a.isEmpty {
                throw PickleProblem("OrderedDict with \(a.count) arguments")
            }
            return .dict(d)
        case .rebuildTensorV2, .rebuildTensor:
            // v2: (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            let expected = g == .rebuildTensorV2 ? [6, 7] : [4]
            guard expected.contains(a.count) else {
                throw PickleProblem("\(g.qualifiedName) with \(a.count) arguments, expected \(expected.map(String.init).joined(separator: " or "))")
            }
            guard case .storage(let storage) = a[0] else { throw PickleProblem("\(g.qualifiedName): first argument is a \(a[0].typeName), not a storage") }
            let offset = try Self.nonNegative(a[1], "storage_offset")
            let shape = try Self.ints(a[2], "size"), strides = try Self.ints(a[3], "stride")
            guard shape.count == strides.count else { throw PickleProblem("size has \(shape.count) dimensions but stride has \(strides.count)") }
            return .tensor(TorchTensorRef(storage: storage, storageOffset: offset, shape: shape, strides: strides))
        case .rebuildParameter:
            guard a.count == 3, case .tensor = a[0] else { throw PickleProblem("_rebuild_parameter expects (tensor, requires_grad, hooks)") }
            return a[0]
        case .storageType:
            throw PickleProblem("REDUCE of \(g.qualifiedName): storages come only through persistent ids")
        }
    }

    private static func nonNegative(_ v: PickleValue, _ what: String) throws -> Int {
        guard case .int(let i) = v, i >= 0, i <= Int64(Int32.max) * Int64(Int32.max) else {
            throw PickleProblem("\(what) is \(v.typeName == "int" ? "out of range" : "a \(v.typeName)")")
        }
        return Int(i)
    }

    private static func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        let items: [PickleValue]
        switch v {
        case .tuple(let t): items = t
        case .list(let l): items = l.items
        default: throw PickleProblem("\(what) is a \(v.typeName), not a tuple of ints")
        }
        guard items.count <= 64 else { throw PickleProblem("\(what) has \(items.count) dimensions") }
        return try items.map { try nonNegative($0, what) }
    }

    static let opcodeNames: [UInt8: String] = [
        0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x28: "MARK", 0x7D: "EMPTY_DICT", 0x5D: "EMPTY_LIST", 0x29: "EMPTY_TUPLE",
        0x4E: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x4B: "BININT1", 0x4D: "BININT2", 0x4A: "BININT", 0x8A: "LONG1",
        0x8B: "LONG4", 0x47: "BINFLOAT", 0x58: "BINUNICODE", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x54: "BINSTRING",
        0x55: "SHORT_BINSTRING", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x74: "TUPLE", 0x6C: "LIST", 0x64: "DICT",
        0x73: "SETITEM", 0x75: "SETITEMS", 0x61: "APPEND", 0x65: "APPENDS", 0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x94: "MEMOIZE",
        0x68: "BINGET", 0x6A: "LONG_BINGET", 0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x51: "BINPERSID", 0x62: "BUILD",
        0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x69: "INST", 0x6F: "OBJ", 0x50: "PERSID", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
        0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS",
        0x91: "FROZENSET", 0x49: "INT", 0x4C: "LONG", 0x46: "FLOAT", 0x53: "STRING", 0x56: "UNICODE", 0x67: "GET", 0x70: "PUT",
        0x30: "POP", 0x31: "DUP", 0x32: "POP_MARK", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
    ]

    static func describe(_ opcode: UInt8) -> String {
        let hex = "0x" + String(opcode, radix: 16)
        return opcodeNames[opcode].map { "\($0) (\(hex))" } ?? hex
    }
}

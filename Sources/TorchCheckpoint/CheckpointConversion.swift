import ELIPJSON
import Safetensors

/// One tensor of a checkpoint, materialised contiguous (row-major) in the type safetensors gets:
/// floating types widen to float32 (exact for float16/bfloat16; float64 rounds), integers and
/// bool keep their type.
public struct ConvertedTensor {
    public let name: String
    public let sourceDType: TorchDType
    public let shape: [Int]
    public enum Values { case floats([Float]), integers([Int64], SafetensorsDType) }
    public let values: Values
}

/// The state dict of a checkpoint plus everything else it holds.
public struct ConvertedCheckpoint {
    public var tensors: [ConvertedTensor] = []
    /// Non-tensor values as JSON text, by dotted path (epoch, config, ...).
    public var metadata: [String: String] = [:]
    /// Entries outside the state dict that hold tensors (optimizer state, EMA copies): not written.
    public var skipped: [String] = []
    /// The key the state dict was taken from (nil: the top level).
    public var stateDictKey: String?

    /// A writer holding the tensors and metadata (`extraMetadata` added where keys are free).
    public func writer(extraMetadata: [String: String] = [:]) throws -> SafetensorsWriter {
        var m = metadata
        for (k, v) in extraMetadata where m[k] == nil { m[k] = v }
        var writer = SafetensorsWriter(metadata: m)
        for t in tensors {
            switch t.values {
            case .floats(let f): try writer.add(t.name, floats: f, shape: t.shape)
            case .integers(let i, let dtype): try writer.add(t.name, int64s: i, shape: t.shape, as: dtype)
            }
        }
        return writer
    }
}

extension TorchCheckpoint {
    /// Top-level keys of the checkpoint (when it is a dict).
    public var topLevelKeys: [String] {
        guard case .dict(let d) = root else { return [] }
        return d.keys.compactMap(\.keyString)
    }

    /// Takes the state dict from `key` (a top-level key, or a dotted path into nested dicts), or by
    /// default from `model`, then `state_dict`, then the top level, as the official repositories
    /// save them. Tensors nested in dicts get dotted names; non-tensor values become metadata.
    public func convert(key: String? = nil) throws -> ConvertedCheckpoint {
        guard case .dict(let top) = root else {
            throw TorchCheckpointError(path, "holds a \(root.typeName), not a dict of tensors")
        }
        var out = ConvertedCheckpoint()
        var selected = top
        if let key {
            guard let (value, pathKeys) = lookup(top, key) else {
                throw TorchCheckpointError(path, "--key \(key): no such entry; top-level keys: \(topLevelKeys.joined(separator: ", "))")
            }
            guard case .dict(let d) = value else { throw TorchCheckpointError(path, "--key \(key) is a \(value.typeName), not a dict of tensors") }
            selected = d
            out.stateDictKey = pathKeys.joined(separator: ".")
        } else {
            for candidate in ["model", "state_dict"] {
                if case .dict(let d)? = top[candidate] { selected = d; out.stateDictKey = candidate; break }
            }
        }
        var names = Set<String>()
        try flatten(selected, prefix: "", into: &out, names: &names)
        if let chosen = out.stateDictKey {
            // The rest of the top level: metadata if tensor-free (epoch, config), else listed as skipped.
            let first = chosen.split(separator: ".", maxSplits: 1).first.map(String.init) ?? chosen
            for (k, v) in zip(top.keys, top.values) {
                guard let name = k.keyString, name != first else { continue }
                if Self.containsTensor(v) { out.skipped.append(name) } else { out.metadata[name] = try json(v, at: name) }
            }
        }
        guard !out.tensors.isEmpty else {
            throw TorchCheckpointError(path, "no tensors in the \(out.stateDictKey.map { "'\($0)' entry" } ?? "top level"); top-level keys: \(topLevelKeys.joined(separator: ", ")) (choose one with --key)")
        }
        return out
    }

    private func lookup(_ top: PickleDict, _ key: String) -> (PickleValue, [String])? {
        if let v = top[key] { return (v, [key]) }
        var current = PickleValue.dict(top)
        for part in key.split(separator: ".") {
            guard case .dict(let d) = current, let v = d[String(part)] else { return nil }
            current = v
        }
        return (current, [key])
    }

    private static func containsTensor(_ v: PickleValue) -> Bool {
        switch v {
        case .tensor, .storage: return true
        case .tuple(let t): return t.contains(where: containsTensor)
        case .list(let l): return l.items.contains(where: containsTensor)
        case .dict(let d): return d.values.contains(where: containsTensor)
        default: return false
        }
    }

    private func flatten(_ d: PickleDict, prefix: String, into out: inout ConvertedCheckpoint, names: inout Set<String>) throws {
        for (k, v) in zip(d.keys, d.values) {
            guard let key = k.keyString else { continue }  // PickleDict admits only keys with a string form
            let name = prefix + key
            switch v {
            case .tensor(let t):
                guard names.insert(name).inserted else { throw TorchCheckpointError(path, "two tensors flatten to the name \(name)") }
                out.tensors.append(try materialize(t, name: name))
            case .dict(let inner) where Self.containsTensor(v):
                try flatten(inner, prefix: name + ".", into: &out, names: &names)
            default:
                if Self.containsTensor(v) {
                    out.skipped.append(name)  // e.g. a list of tensors: no state-dict name for its items
                } else {
                    out.metadata[name] = try json(v, at: name)
                }
            }
        }
    }

    /// Gathers a strided view into a contiguous array, after checking that every element it
    /// addresses lies inside its storage.
    func materialize(_ t: TorchTensorRef, name: String) throws -> ConvertedTensor {
        let storage = t.storage
        guard let bytes = storageBytes[storage.key] else { throw TorchCheckpointError(path, "\(name): storage \(storage.key) has no data") }
        var count = 1, lastIndex = t.storageOffset
        for (size, stride) in zip(t.shape, t.strides) {
            let c = count.multipliedReportingOverflow(by: size)
            guard !c.overflow else { throw TorchCheckpointError(path, "\(name): shape \(t.shape) has too many elements") }
            count = c.partialValue
            if size > 0 {
                let reach = (size - 1).multipliedReportingOverflow(by: stride)
                let sum = lastIndex.addingReportingOverflow(reach.partialValue)
                guard !reach.overflow, !sum.overflow else { throw TorchCheckpointError(path, "\(name): strides \(t.strides) overflow") }
                lastIndex = sum.partialValue
            }
        }
        if count > 0 {
            guard lastIndex < storage.elementCount, lastIndex < bytes.count / storage.dtype.byteSize else {
                throw TorchCheckpointError(path, "\(name): shape \(t.shape), stride \(t.strides) at offset \(t.storageOffset) reaches element \(lastIndex) of storage \(storage.key), which has only \(storage.elementCount) elements (damaged or truncated checkpoint)")
            }
        }
        // Visits the storage element index of each output element, row-major over the shape (an
        // odometer), converting as it goes.
        func gather<T>(_ convert: (Int) throws -> T) rethrows -> [T] {
            var out: [T] = []
            out.reserveCapacity(count)
            guard count > 0 else { return out }
            var position = [Int](repeating: 0, count: t.shape.count)
            var index = t.storageOffset
            for _ in 0..<count {
                out.append(try convert(index))
                var d = t.shape.count - 1
                while d >= 0 {
                    position[d] += 1
                    index += t.strides[d]
                    if position[d] < t.shape[d] { break }
                    index -= t.strides[d] * t.shape[d]  // cannot overflow: the extent was checked above
                    position[d] = 0
                    d -= 1
                }
            }
            return out
        }
        // Contiguous float32 (most tensors): one bulk copy instead of a per-element walk.
        var contiguous = true, expected = 1
        for (size, stride) in zip(t.shape, t.strides).reversed() where size != 1 {
            if stride != expected { contiguous = false }
            expected *= size
        }
        if contiguous && storage.dtype == .float32 && count > 0 {
            let start = t.storageOffset * 4
            let floats = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + 4 * count)]))
                initialized = count
            }
            #if _endian(big)
            let values = floats.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            #else
            let values = floats
            #endif
            return ConvertedTensor(name: name, sourceDType: storage.dtype, shape: t.shape, values: .floats(values))
        }
        func load<T>(_ i: Int, _ type: T.Type) -> T { bytes.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self) }
        let values: ConvertedTensor.Values
        switch storage.dtype {
        case .float32: values = .floats(gather { Float(bitPattern: UInt32(littleEndian: load($0, UInt32.self))) })
        case .float64: values = .floats(gather { Float(Double(bitPattern: UInt64(littleEndian: load($0, UInt64.self)))) })
        case .float16: values = .floats(gather { FloatConversion.float(fromF16: UInt16(littleEndian: load($0, UInt16.self))) })
        case .bfloat16: values = .floats(gather { FloatConversion.float(fromBF16: UInt16(littleEndian: load($0, UInt16.self))) })
        case .int64: values = .integers(gather { Int64(littleEndian: load($0, Int64.self)) }, .i64)
        case .int32: values = .integers(gather { Int64(Int32(littleEndian: load($0, Int32.self))) }, .i32)
        case .int16: values = .integers(gather { Int64(Int16(littleEndian: load($0, Int16.self))) }, .i16)
        case .int8: values = .integers(gather { Int64(load($0, Int8.self)) }, .i8)
        case .uint8: values = .integers(gather { Int64(load($0, UInt8.self)) }, .u8)
        case .bool:
            values = .integers(try gather {
                let b = load($0, UInt8.self)
                guard b <= 1 else { throw TorchCheckpointError(path, "\(name): bool element holds byte \(b)") }
                return Int64(b)
            }, .bool)
        }
        return ConvertedTensor(name: name, sourceDType: storage.dtype, shape: t.shape, values: values)
    }

    /// JSON text of a non-tensor value. Non-finite floats are written NaN/Infinity/-Infinity as
    /// Python's json.dumps does; dict keys become strings as json.dumps makes them.
    func json(_ v: PickleValue, at name: String) throws -> String {
        var out = ""
        try Self.appendJSON(v, to: &out, depth: 0, name: name, path: path)
        return out
    }

    private static func appendJSON(_ v: PickleValue, to out: inout String, depth: Int, name: String, path: String) throws {
        guard depth < 64 else { throw TorchCheckpointError(path, "\(name): nested more than 64 levels") }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .bigInt(let b): out += "\"0x" + b.reversed().map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() + "\""
        case .float(let f):
            if f.isNaN { out += "NaN" } else if f.isInfinite { out += f < 0 ? "-Infinity" : "Infinity" } else { out += "\(f)" }
        case .string(let s): appendString(s, to: &out)
        case .tuple(let items): try appendArray(items, to: &out, depth: depth, name: name, path: path)
        case .list(let l): try appendArray(l.items, to: &out, depth: depth, name: name, path: path)
        case .dict(let d):
            out += "{"
            for (i, (k, value)) in zip(d.keys, d.values).enumerated() {
                if i > 0 { out += "," }
                appendString(k.keyString ?? "", to: &out)
                out += ":"
                try appendJSON(value, to: &out, depth: depth + 1, name: name, path: path)
            }
            out += "}"
        case .global(let g): appendString(g.qualifiedName, to: &out)
        case .storage, .tensor: throw TorchCheckpointError(path, "\(name): a tensor inside metadata")
        }
    }

    private static func appendArray(_ items: [PickleValue], to out: inout String, depth: Int, name: String, path: String) throws {
        out += "["
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            try appendJSON(item, to: &out, depth: depth + 1, name: name, path: path)
        }
        out += "]"
    }

    private static func appendString(_ s: String, to out: inout String) {
        out += JSONText.quote(s)
    }
}

/// What the restricted unpickler builds. Lists and dicts are classes because pickle mutates them
/// after creation (APPEND/SETITEMS) and refers to them again through the memo.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// A LONG1/LONG4 integer wider than 64 bits, little-endian two's complement bytes (the legacy
    /// format's magic number is one).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowlisted global, not yet called.
    case global(AllowedGlobal)
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let g): return g.qualifiedName
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    /// Dictionary keys as Python's json.dumps writes them (str, int, float, bool, None).
    var keyString: String? {
        switch self {
        case .string(let s): return s
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        default: return nil
        }
    }
}

final class PickleList {
    var items: [PickleValue] = []
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// dict or collections.OrderedDict, in insertion order. Keys must be str/int/float/bool/None (what
/// checkpoints use); assigning an existing key replaces its value in place, as Python does.
final class PickleDict {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var indexByKey: [String: Int] = [:]
    let ordered: Bool

    init(ordered: Bool) { self.ordered = ordered }

    var count: Int { keys.count }

    func set(_ key: PickleValue, _ value: PickleValue) throws -> Void {
        guard let k = key.keyString else { throw PickleProblem("a dict key of type \(key.typeName) (only str, int, float, bool, None keys are supported)") }
        let tagged = key.typeName + ":" + k
        if let i = indexByKey[tagged] { values[i] = value; return }
        indexByKey[tagged] = keys.count
        keys.append(key)
        values.append(value)
    }

    subscript(_ key: String) -> PickleValue? { indexByKey["str:" + key].map { values[$0] } }
}

/// The globals a checkpoint may name. Everything else is refused by name, never resolved.
enum AllowedGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensor
    case rebuildParameter
    case storageType(TorchDType)

    init?(module: String, name: String) {
        switch (module, name) {
        case ("collections", "OrderedDict"): self = .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): self = .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
        case ("torch", _):
            guard let dtype = TorchDType(storageTypeName: name) else { return nil }
            self = .storageType(dtype)
        default: return nil
        }
    }

    var qualifiedName: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .storageType(let d): return "torch." + d.storageTypeName
        }
    }
}

/// Element types of the storages torch.save writes that we convert.
public enum TorchDType: String, CaseIterable, Sendable {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    init?(storageTypeName: String) {
        guard let d = Self.allCases.first(where: { $0.storageTypeName == storageTypeName }) else { return nil }
        self = d
    }

    var storageTypeName: String {
        switch self {
        case .float32: return "FloatStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .float64: return "DoubleStorage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        }
    }

    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float16 || self == .bfloat16 || self == .float64 }
}

/// One storage named by a persistent id: ('storage', torch.<T>Storage, key, location, numel).
final class TorchStorageRef {
    let key: String
    let dtype: TorchDType
    let elementCount: Int
    let location: String
    init(key: String, dtype: TorchDType, elementCount: Int, location: String) {
        (self.key, self.dtype, self.elementCount, self.location) = (key, dtype, elementCount, location)
    }
}

/// A tensor as _rebuild_tensor_v2 describes it: a strided view of a storage (elements, not bytes).
final class TorchTensorRef {
    let storage: TorchStorageRef
    let storageOffset: Int
    let shape: [Int]
    let strides: [Int]
    init(storage: TorchStorageRef, storageOffset: Int, shape: [Int], strides: [Int]) {
        (self.storage, self.storageOffset, self.shape, self.strides) = (storage, storageOffset, shape, strides)
    }
}

/// A problem found while unpickling; the unpickler adds the file and byte offset.
struct PickleProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

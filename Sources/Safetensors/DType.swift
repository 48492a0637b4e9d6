/// Element type of a stored tensor, spelled as in the safetensors header.
public enum SafetensorsDType: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (IEEE-like: has inf and NaN).
    case f8e5m2 = "F8_E5M2"
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, "fn" variant (no inf; S.1111.111 is NaN).
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// True for the types `SafetensorsFile.floats` converts (F64, F32, F16, BF16, F8_*).
    public var isFloatingPoint: Bool {
        switch self {
        case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// True for the types `SafetensorsFile.int64s` converts (signed, unsigned and BOOL).
    public var isInteger: Bool { !isFloatingPoint }

    public var description: String { rawValue }

    /// Position in the official library's `Dtype` enum, which is declared in increasing alignment
    /// order; its writer sorts tensors by this rank (descending), then by name. We do the same so
    /// every tensor in a file we write is naturally aligned and the layout matches Python's.
    var officialRank: Int {
        switch self {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .f8e5m2: return 3
        case .f8e4m3: return 4
        case .i16: return 5
        case .u16: return 6
        case .f16: return 7
        case .bf16: return 8
        case .i32: return 9
        case .u32: return 10
        case .f32: return 11
        case .f64: return 12
        case .i64: return 13
        case .u64: return 14
        }
    }
}

/// One tensor as declared in a file's header.
public struct SafetensorsEntry: Sendable, Hashable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Dimensions, outermost first; empty for a scalar.
    public let shape: [Int]
    /// Byte range inside the data buffer (relative to its start, as in the header).
    public let dataOffsets: Range<Int>
    /// Product of `shape` (1 for a scalar, 0 if any dimension is 0).
    public let elementCount: Int

    /// Size of the tensor's data in bytes.
    public var byteCount: Int { dataOffsets.count }
}

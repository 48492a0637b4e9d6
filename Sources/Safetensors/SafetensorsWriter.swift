#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Collects tensors and writes them as one safetensors file.
///
/// Layout (deterministic, and the same as the official Python/Rust writer): tensors are stored
/// sorted by dtype alignment, widest first (in the official `Dtype` order: U64, I64, F64, F32,
/// U32, I32, BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL), then by name (byte-wise);
/// the header lists them in that same order after `__metadata__` (whose keys are sorted), and is
/// padded with spaces to a multiple of 8 bytes. So every tensor is naturally aligned in the file,
/// the data buffer has no gaps, and for the same tensors and at most one metadata key the bytes
/// equal those of `safetensors.*.save_file`.
///
/// Data is streamed to the file through a small buffer; `[Float]`/`[Int64]` sources are kept by
/// reference (copy-on-write, no copy), pointer sources are not copied at all.
public struct SafetensorsWriter {
    /// Written as `__metadata__` when non-empty.
    public var metadata: [String: String]

    private var tensors: [PendingTensor] = []
    private var names = Set<String>()

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Number of tensors added so far.
    public var count: Int { tensors.count }

    // MARK: adding tensors

    /// Adds Float data stored as `dtype` (F32, F64, F16 or BF16; narrowing rounds to nearest even).
    public mutating func add(_ name: String, floats: [Float], shape: [Int], as dtype: SafetensorsDType = .f32) throws {
        let n = try checkNew(name, dtype: dtype, shape: shape, count: floats.count)
        try checkFloatTarget(name, dtype)
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: n * dtype.byteSize,
                             source: .floatArray(floats)))
    }

    /// Adds Float data from caller memory without copying it. The memory must stay valid and
    /// unchanged until `write`/`serialized` returns. `dtype` as in the `[Float]` variant.
    public mutating func add(_ name: String, floats: UnsafeBufferPointer<Float>, shape: [Int],
                             as dtype: SafetensorsDType = .f32) throws {
        let n = try checkNew(name, dtype: dtype, shape: shape, count: floats.count)
        try checkFloatTarget(name, dtype)
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: n * dtype.byteSize,
                             source: .floatPointer(floats)))
    }

    /// Adds integer data stored as `dtype` (any integer dtype or BOOL). Every value must fit the
    /// target type (BOOL: 0 or 1); this is checked here, so `write` cannot fail half-way on it.
    public mutating func add(_ name: String, int64s: [Int64], shape: [Int], as dtype: SafetensorsDType = .i64) throws {
        let n = try int64s.withUnsafeBufferPointer { try checkNewIntegers(name, $0, dtype: dtype, shape: shape) }
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: n * dtype.byteSize,
                             source: .int64Array(int64s)))
    }

    /// Adds integer data from caller memory without copying it (values are range-checked now, as
    /// in the `[Int64]` variant). The memory must stay valid and unchanged until
    /// `write`/`serialized` returns.
    public mutating func add(_ name: String, int64s: UnsafeBufferPointer<Int64>, shape: [Int],
                             as dtype: SafetensorsDType = .i64) throws {
        let n = try checkNewIntegers(name, int64s, dtype: dtype, shape: shape)
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: n * dtype.byteSize,
                             source: .int64Pointer(int64s)))
    }

    /// Adds bytes already in the file's encoding of `dtype` (little-endian, row-major), without
    /// copying them. The memory must stay valid and unchanged until `write`/`serialized` returns.
    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], rawBytes: UnsafeRawBufferPointer) throws {
        let n = try checkNew(name, dtype: dtype, shape: shape, count: nil)
        guard rawBytes.count == n * dtype.byteSize else {
            throw SafetensorsError(.countMismatch, path: "<writer>", tensor: name,
                                   "\(rawBytes.count) bytes given but \(dtype) \(shape) needs \(n * dtype.byteSize)")
        }
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: rawBytes.count,
                             source: .raw(rawBytes)))
    }

    /// Adds a tensor whose bytes (file encoding of `dtype`) are produced while writing: `producer`
    /// is called once with an `emit` function and must pass it exactly `product(shape) * dtype size`
    /// bytes, in as many pieces as it likes. If it throws, or emits the wrong amount, `write` fails
    /// (and an atomic write leaves any existing file untouched).
    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int],
                             producer: @escaping (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let n = try checkNew(name, dtype: dtype, shape: shape, count: nil)
        append(PendingTensor(name: name, dtype: dtype, shape: shape, byteCount: n * dtype.byteSize,
                             source: .producer(producer)))
    }

    // MARK: output

    /// The JSON header exactly as written (without the 8-byte length), padded with spaces to a
    /// multiple of 8 bytes.
    public func headerBytes() -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        if !metadata.isEmpty {
            HeaderJSON.appendString("__metadata__", to: &out)
            out.append(contentsOf: Array(":{".utf8))
            for (i, key) in metadata.keys.sorted(by: Self.byteOrder).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                HeaderJSON.appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                HeaderJSON.appendString(metadata[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
            first = false
        }
        var offset = 0
        for t in orderedTensors() {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            HeaderJSON.appendString(t.name, to: &out)
            out.append(contentsOf: Array(":{\"dtype\":".utf8))
            HeaderJSON.appendString(t.dtype.rawValue, to: &out)
            out.append(contentsOf: Array(",\"shape\":[".utf8))
            for (i, d) in t.shape.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                HeaderJSON.appendInt(d, to: &out)
            }
            out.append(contentsOf: Array("],\"data_offsets\":[".utf8))
            HeaderJSON.appendInt(offset, to: &out)
            out.append(UInt8(ascii: ","))
            offset += t.byteCount
            HeaderJSON.appendInt(offset, to: &out)
            out.append(contentsOf: Array("]}".utf8))
        }
        out.append(UInt8(ascii: "}"))
        while out.count % 8 != 0 { out.append(UInt8(ascii: " ")) }
        return out
    }

    /// The whole file in memory (for small files and tests; use `write` for checkpoints).
    public func serialized() throws -> [UInt8] {
        var out: [UInt8] = []
        try emitFile(label: "<memory>") { chunk in out.append(contentsOf: chunk) }
        return out
    }

    /// Writes the file to `path`.
    ///
    /// With `atomic` (the default) the data goes to a temporary file in the same directory
    /// (`.NAME.tmp-PID-RANDOM`), which is fsynced and then renamed over `path`, and the directory is
    /// fsynced: readers see either the old file or the complete new one, never a partial file
    /// under `path`, even if the process dies mid-write (a crash can leave the temporary file
    /// behind; a thrown error removes it). Without `atomic` the target is truncated and written
    /// in place.
    public func write(to path: String, atomic: Bool = true) throws {
        guard !path.isEmpty, !path.hasSuffix("/") else {
            throw SafetensorsError(.io, path: path, "not a file path")
        }
        if !atomic {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 { throw SafetensorsError(.io, path: path, "cannot create: \(errnoString())") }
            do {
                try writeAll(to: fd, path: path)
            } catch {
                close(fd)
                throw error
            }
            if close(fd) != 0 { throw SafetensorsError(.io, path: path, "close failed: \(errnoString())") }
            return
        }

        try AtomicFile.write(to: path, fail: { SafetensorsError(.io, path: path, $0) }) { fd in
            try writeAll(to: fd, path: path)
        }
    }

    // MARK: internals

    private enum Source {
        case floatArray([Float])
        case floatPointer(UnsafeBufferPointer<Float>)
        case int64Array([Int64])
        case int64Pointer(UnsafeBufferPointer<Int64>)
        case raw(UnsafeRawBufferPointer)
        case producer((_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)
    }

    private struct PendingTensor {
        let name: String
        let dtype: SafetensorsDType
        let shape: [Int]
        let byteCount: Int
        let source: Source
    }

    private static func byteOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    private func orderedTensors() -> [PendingTensor] {
        tensors.sorted { a, b in
            if a.dtype.officialRank != b.dtype.officialRank { return a.dtype.officialRank > b.dtype.officialRank }
            return Self.byteOrder(a.name, b.name)
        }
    }

    /// Validates a new tensor's name and shape; returns its element count.
    private func checkNew(_ name: String, dtype: SafetensorsDType, shape: [Int], count: Int?) throws -> Int {
        func fail(_ kind: SafetensorsError.Kind, _ detail: String) -> SafetensorsError {
            SafetensorsError(kind, path: "<writer>", tensor: name, detail)
        }
        if name == "__metadata__" { throw fail(.invalidTensor, "the name __metadata__ is reserved for the metadata") }
        if names.contains(name) { throw fail(.duplicateName, "a tensor with this name was already added") }
        var n = 1
        for d in shape {
            if d < 0 { throw fail(.invalidShape, "shape \(shape) has a negative dimension") }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { throw fail(.invalidShape, "shape \(shape) has too many elements") }
            n = p
        }
        if n.multipliedReportingOverflow(by: dtype.byteSize).overflow {
            throw fail(.invalidShape, "shape \(shape) has too many bytes")
        }
        if let count, count != n {
            throw fail(.countMismatch, "\(count) values given but shape \(shape) has \(n) elements")
        }
        return n
    }

    /// Records a fully validated tensor (so a rejected `add` leaves no trace).
    private mutating func append(_ t: PendingTensor) {
        names.insert(t.name)
        tensors.append(t)
    }

    private func checkNewIntegers(_ name: String, _ values: UnsafeBufferPointer<Int64>,
                                           dtype: SafetensorsDType, shape: [Int]) throws -> Int {
        guard dtype.isInteger else {
            throw SafetensorsError(.wrongDType, path: "<writer>", tensor: name,
                                   "integer data cannot be stored as \(dtype)")
        }
        let range = Self.representableRange(dtype)
        if let i = values.firstIndex(where: { !range.contains($0) }) {
            throw SafetensorsError(.valueOutOfRange, path: "<writer>", tensor: name,
                                   "element \(i) = \(values[i]) does not fit in \(dtype)")
        }
        return try checkNew(name, dtype: dtype, shape: shape, count: values.count)
    }

    private func checkFloatTarget(_ name: String, _ dtype: SafetensorsDType) throws {
        switch dtype {
        case .f32, .f64, .f16, .bf16: return
        default:
            throw SafetensorsError(.wrongDType, path: "<writer>", tensor: name,
                                   "Float data can be stored as F32, F64, F16 or BF16, not \(dtype)")
        }
    }

    private static func representableRange(_ dtype: SafetensorsDType) -> ClosedRange<Int64> {
        switch dtype {
        case .bool: return 0...1
        case .u8: return 0...Int64(UInt8.max)
        case .i8: return Int64(Int8.min)...Int64(Int8.max)
        case .i16: return Int64(Int16.min)...Int64(Int16.max)
        case .u16: return 0...Int64(UInt16.max)
        case .i32: return Int64(Int32.min)...Int64(Int32.max)
        case .u32: return 0...Int64(UInt32.max)
        case .u64: return 0...Int64.max
        default: return Int64.min...Int64.max
        }
    }

    private func writeAll(to fd: Int32, path: String) throws {
        let sink = FileSink(fd: fd, path: path)
        try emitFile(label: path) { try sink.append($0) }
        try sink.flush()
    }

    /// Produces the file's bytes in order, in chunks, into `sink`.
    private func emitFile(label: String, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let header = headerBytes()
        if header.count > SafetensorsFile.maxHeaderLength {
            throw SafetensorsError(.headerTooLarge, path: label,
                                   "header would be \(header.count) bytes, above the \(SafetensorsFile.maxHeaderLength)-byte limit readers enforce")
        }
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try sink($0) }
        try header.withUnsafeBytes { try sink($0) }
        for t in orderedTensors() {
            try emitData(of: t, label: label, sink)
        }
    }

    private static let chunkElements = 1 << 16

    private func emitData(of t: PendingTensor, label: String, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch t.source {
        case .floatArray(let values):
            try values.withUnsafeBufferPointer { try Self.emitFloats($0, as: t.dtype, sink) }
        case .floatPointer(let values):
            try Self.emitFloats(values, as: t.dtype, sink)
        case .int64Array(let values):
            try values.withUnsafeBufferPointer { try Self.emitIntegers($0, as: t.dtype, sink) }
        case .int64Pointer(let values):
            try Self.emitIntegers(values, as: t.dtype, sink)
        case .raw(let bytes):
            if bytes.count > 0 { try sink(bytes) }
        case .producer(let produce):
            var emitted = 0
            do {
                try produce { chunk in
                    guard chunk.count <= t.byteCount - emitted else {
                        throw SafetensorsError(.countMismatch, path: label, tensor: t.name,
                                               "producer emitted more than the \(t.byteCount) bytes that \(t.dtype) \(t.shape) needs")
                    }
                    emitted += chunk.count
                    if chunk.count > 0 { try sink(chunk) }
                }
            } catch let e as SafetensorsError {
                throw e
            } catch {
                throw SafetensorsError(.invalidTensor, path: label, tensor: t.name, "data producer failed: \(error)")
            }
            guard emitted == t.byteCount else {
                throw SafetensorsError(.countMismatch, path: label, tensor: t.name,
                                       "producer emitted \(emitted) bytes but \(t.dtype) \(t.shape) needs \(t.byteCount)")
            }
        }
    }

    private static func emitFloats(_ values: UnsafeBufferPointer<Float>, as dtype: SafetensorsDType,
                                   _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        #if _endian(little)
        if dtype == .f32 {
            if values.count > 0 { try sink(UnsafeRawBufferPointer(values)) }
            return
        }
        #endif
        try emitConverted(count: values.count, elementSize: dtype.byteSize, sink) { i, dst in
            let v = values[i]
            switch dtype {
            case .f64: dst.storeBytes(of: Double(v).bitPattern.littleEndian, as: UInt64.self)
            case .f16: dst.storeBytes(of: FloatConversion.f16(from: v).littleEndian, as: UInt16.self)
            case .bf16: dst.storeBytes(of: FloatConversion.bf16(from: v).littleEndian, as: UInt16.self)
            default: dst.storeBytes(of: v.bitPattern.littleEndian, as: UInt32.self)
            }
        }
    }

    private static func emitIntegers(_ values: UnsafeBufferPointer<Int64>, as dtype: SafetensorsDType,
                                     _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        #if _endian(little)
        if dtype == .i64 || dtype == .u64 {  // values were checked non-negative for U64
            if values.count > 0 { try sink(UnsafeRawBufferPointer(values)) }
            return
        }
        #endif
        // Values were range-checked in `add`, so truncation is exact.
        try emitConverted(count: values.count, elementSize: dtype.byteSize, sink) { i, dst in
            let v = values[i]
            switch dtype.byteSize {
            case 1: dst.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
            case 2: dst.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
            case 4: dst.storeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian, as: UInt32.self)
            default: dst.storeBytes(of: UInt64(bitPattern: v).littleEndian, as: UInt64.self)
            }
        }
    }

    /// Converts `count` elements in chunks through a small scratch buffer, so narrowing a large
    /// tensor never allocates a second copy of it.
    private static func emitConverted(count: Int, elementSize: Int, _ sink: (UnsafeRawBufferPointer) throws -> Void,
                                      _ store: (Int, UnsafeMutableRawPointer) -> Void) throws {
        guard count > 0 else { return }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunkElements * elementSize, alignment: 16)
        defer { scratch.deallocate() }
        var start = 0
        while start < count {
            let n = min(chunkElements, count - start)
            for k in 0..<n { store(start + k, scratch + k * elementSize) }
            try sink(UnsafeRawBufferPointer(start: scratch, count: n * elementSize))
            start += n
        }
    }
}

/// Buffered writes to a file descriptor: small pieces are gathered, large ones go straight through.
private final class FileSink {
    private let fd: Int32
    private let path: String
    private let capacity = 1 << 20
    private let buffer: UnsafeMutableRawPointer
    private var used = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if used + bytes.count <= capacity {
            (buffer + used).copyMemory(from: base, byteCount: bytes.count)
            used += bytes.count
            return
        }
        try flush()
        if bytes.count >= capacity {
            try writeFully(base, bytes.count)
        } else {
            buffer.copyMemory(from: base, byteCount: bytes.count)
            used = bytes.count
        }
    }

    func flush() throws {
        if used > 0 { try writeFully(UnsafeRawPointer(buffer), used) }
        used = 0
    }

    private func writeFully(_ start: UnsafeRawPointer, _ count: Int) throws {
        try AtomicFile.writeAll(fd, UnsafeRawBufferPointer(start: start, count: count),
                                fail: { SafetensorsError(.io, path: path, $0) })
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file opened for reading.
///
/// The file is memory-mapped read-only (checkpoints are 1-2 GB; only the pages actually read are
/// loaded) and its header is fully validated by the initializer: afterwards every declared tensor
/// is known to lie inside the data buffer, to have exactly `product(shape) * dtype size` bytes and
/// to share no byte with another tensor. All accessors throw on a bad request; none can trap.
///
/// Immutable after `init`, so one instance may be read from several threads at once.
/// As with any memory map, truncating the file while it is open makes later reads fault (SIGBUS);
/// we only ever replace checkpoints by rename, which leaves open mappings intact.
public final class SafetensorsFile: @unchecked Sendable {
    /// Header lengths above this are rejected, as in the reference implementation.
    public static let maxHeaderLength = 100_000_000

    /// The path given to `init` (or the label of an in-memory buffer); used in error messages.
    public let path: String
    /// Every tensor, in the order the header declares them.
    public let entries: [SafetensorsEntry]
    /// The `__metadata__` dictionary (empty if the file has none).
    public let metadata: [String: String]
    /// Byte ranges of the data buffer that belong to no tensor (relative to the buffer start).
    /// The format's reference reader rejects such gaps; we accept them and list them here.
    public let holes: [Range<Int>]
    /// Length of the JSON header in bytes (the u64 at the start of the file).
    public let headerLength: Int
    /// Size of the data buffer in bytes (the rest of the file).
    public let dataLength: Int

    /// Absolute file offset of the data buffer: 8 + `headerLength`.
    public var dataStart: Int { 8 + headerLength }
    /// Tensor names in header order.
    public var names: [String] { entries.map(\.name) }

    private enum Storage {
        case mapped(UnsafeMutableRawPointer, Int)
        case heap(UnsafeMutableRawPointer)
    }

    private let storage: Storage
    /// Start of the data buffer.
    private let data: UnsafeRawPointer
    private let indexByName: [String: Int]

    /// Opens and validates `path`. Throws `SafetensorsError` if the file cannot be read or is not a
    /// well-formed safetensors file.
    public init(path: String) throws {
        // O_NONBLOCK: opening a FIFO returns at once (then refused below) instead of waiting for
        // a writer; it changes nothing for the regular file that is mapped.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw SafetensorsError(.io, path: path, "cannot open: \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw SafetensorsError(.io, path: path, "cannot stat: \(errnoString())") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw SafetensorsError(.io, path: path, "not a regular file") }
        let size = Int(st.st_size)
        if size < 8 {
            throw SafetensorsError(.fileTooSmall, path: path,
                                   "file is \(size) bytes, too small for the 8-byte header length")
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              base != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SafetensorsError(.io, path: path, "cannot mmap \(size) bytes: \(errnoString())")
        }
        // On any validation error the mapping must go: `deinit` does not run for a failed init.
        do {
            let parsed = try Self.parse(UnsafeRawBufferPointer(start: base, count: size), path: path)
            self.path = path
            self.storage = .mapped(base, size)
            (entries, metadata, holes, headerLength, dataLength, indexByName) =
                (parsed.entries, parsed.metadata, parsed.holes, parsed.headerLength, parsed.dataLength, parsed.index)
            data = UnsafeRawPointer(base) + 8 + parsed.headerLength
        } catch {
            munmap(base, size)
            throw error
        }
    }

    /// Parses and validates an in-memory copy of a file (`label` stands in for the path in
    /// messages). Useful for data that did not come from disk, and for tests.
    public init(bytes: [UInt8], label: String = "<memory>") throws {
        if bytes.count < 8 {
            throw SafetensorsError(.fileTooSmall, path: label,
                                   "file is \(bytes.count) bytes, too small for the 8-byte header length")
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        do {
            let parsed = try Self.parse(UnsafeRawBufferPointer(start: copy, count: bytes.count), path: label)
            self.path = label
            self.storage = .heap(copy)
            (entries, metadata, holes, headerLength, dataLength, indexByName) =
                (parsed.entries, parsed.metadata, parsed.holes, parsed.headerLength, parsed.dataLength, parsed.index)
            data = UnsafeRawPointer(copy) + 8 + parsed.headerLength
        } catch {
            copy.deallocate()
            throw error
        }
    }

    deinit {
        switch storage {
        case .mapped(let base, let size): munmap(base, size)
        case .heap(let p): p.deallocate()
        }
    }

    // MARK: lookup

    /// The entry named `name`, or nil.
    public subscript(name: String) -> SafetensorsEntry? {
        indexByName[name].map { entries[$0] }
    }

    public func contains(_ name: String) -> Bool { indexByName[name] != nil }

    /// The entry named `name`; throws `.tensorNotFound` naming the file if there is none.
    public func entry(_ name: String) throws -> SafetensorsEntry {
        guard let i = indexByName[name] else {
            throw SafetensorsError(.tensorNotFound, path: path, tensor: name,
                                   "no such tensor (the file has \(entries.count) tensors)")
        }
        return entries[i]
    }

    // MARK: data access

    /// Calls `body` with the tensor's bytes, straight from the mapping (no copy): row-major,
    /// little-endian, in the file's dtype. The buffer may be unaligned for the element type (the
    /// format does not require alignment), so read with `loadUnaligned` or copy with `memcpy`.
    /// The pointer is valid only during the call and must not be written through.
    public func withTensorBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let e = try entry(name)
        return try body(bytes(of: e))
    }

    /// The tensor's values as Float: F32 as is, F64 rounded to nearest, F16/BF16/F8 exactly.
    /// Throws `.wrongDType` for integer and BOOL tensors.
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        try requireFloatingPoint(e)
        let src = bytes(of: e)
        return [Float](unsafeUninitializedCapacity: e.elementCount) { buffer, initialized in
            if let dst = buffer.baseAddress { Self.convertFloats(src, dtype: e.dtype, into: dst, count: e.elementCount) }
            initialized = e.elementCount
        }
    }

    /// Converts the tensor to Float (as `floats`) directly into caller memory, e.g. a parameter
    /// arena. `count` must equal the tensor's element count; throws `.countMismatch` otherwise.
    public func copyFloats(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let e = try entry(name)
        try requireFloatingPoint(e)
        guard count == e.elementCount else {
            throw SafetensorsError(.countMismatch, path: path, tensor: name,
                                   "destination holds \(count) floats but the tensor \(e.dtype) \(e.shape) has \(e.elementCount) elements")
        }
        Self.convertFloats(bytes(of: e), dtype: e.dtype, into: destination, count: count)
    }

    /// The tensor's values as Int64, from any integer dtype or BOOL (as 0/1).
    /// Throws `.wrongDType` for float tensors and `.valueOutOfRange` for U64 values above Int64.max.
    public func int64s(_ name: String) throws -> [Int64] {
        let e = try entry(name)
        guard e.dtype.isInteger else {
            throw SafetensorsError(.wrongDType, path: path, tensor: name,
                                   "int64s needs an integer or BOOL tensor, but the dtype is \(e.dtype)")
        }
        let src = bytes(of: e)
        let n = e.elementCount
        var result = [Int64](repeating: 0, count: n)
        for i in 0..<n {
            switch e.dtype {
            case .bool: result[i] = src[i] != 0 ? 1 : 0
            case .u8: result[i] = Int64(src[i])
            case .i8: result[i] = Int64(Int8(bitPattern: src[i]))
            case .i16: result[i] = Int64(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            case .u16: result[i] = Int64(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case .i32: result[i] = Int64(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            case .u32: result[i] = Int64(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            case .i64: result[i] = Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            case .u64:
                let v = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                guard let s = Int64(exactly: v) else {
                    throw SafetensorsError(.valueOutOfRange, path: path, tensor: name,
                                           "element \(i) = \(v) does not fit in Int64")
                }
                result[i] = s
            case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64:
                break  // excluded by the guard above
            }
        }
        return result
    }

    // MARK: internals

    private func bytes(of e: SafetensorsEntry) -> UnsafeRawBufferPointer {
        return UnsafeRawBufferPointer(start: data + e.dataOffsets.lowerBound, count: e.byteCount)
    }

    private func requireFloatingPoint(_ e: SafetensorsEntry) throws {
        guard e.dtype.isFloatingPoint else {
            throw SafetensorsError(.wrongDType, path: path, tensor: e.name,
                                   "float conversion needs a floating-point tensor, but the dtype is \(e.dtype)")
        }
    }

    /// `src` holds exactly `count` elements of `dtype` (validated at open).
    private static func convertFloats(_ src: UnsafeRawBufferPointer, dtype: SafetensorsDType,
                                      into dst: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0, let s = src.baseAddress else { return }
        switch dtype {
        case .f32:
            #if _endian(little)
            UnsafeMutableRawPointer(dst).copyMemory(from: s, byteCount: 4 * count)
            #else
            for i in 0..<count {
                dst[i] = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            #endif
        case .f64:
            for i in 0..<count {
                dst[i] = Float(Double(bitPattern: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
        case .f16:
            for i in 0..<count {
                dst[i] = FloatConversion.float(fromF16: UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<count {
                dst[i] = FloatConversion.float(fromBF16: UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .f8e5m2:
            for i in 0..<count { dst[i] = FloatConversion.float(fromF8E5M2: src[i]) }
        case .f8e4m3:
            for i in 0..<count { dst[i] = FloatConversion.float(fromF8E4M3: src[i]) }
        case .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64:
            break  // callers check isFloatingPoint first
        }
    }
}

func errnoString(_ code: Int32 = errno) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}

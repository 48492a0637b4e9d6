// The only file that talks to the MPI C API. Handles are OpenMPI's opaque struct pointers, obtained
// through CMPIShim because the predefined ones are macros Swift cannot import.
import CMPI
import CMPIShim
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types the collectives accept.
public protocol MPIScalar {
    static var mpiKind: MPIScalarKind { get }
}

public enum MPIScalarKind: Sendable {
    case float, double, int32, int64, uint8
}

extension Float: MPIScalar { public static var mpiKind: MPIScalarKind { .float } }
extension Double: MPIScalar { public static var mpiKind: MPIScalarKind { .double } }
extension Int32: MPIScalar { public static var mpiKind: MPIScalarKind { .int32 } }
extension Int64: MPIScalar { public static var mpiKind: MPIScalarKind { .int64 } }
extension UInt8: MPIScalar { public static var mpiKind: MPIScalarKind { .uint8 } }

/// Reduction operators.
public enum ReduceOp: Sendable {
    case sum, max, min
}

/// MPI thread support levels, ordered.
public enum ThreadLevel: Int, Comparable, Sendable, CustomStringConvertible {
    case single = 0, funneled, serialized, multiple
    public static func < (a: ThreadLevel, b: ThreadLevel) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        switch self {
        case .single: return "MPI_THREAD_SINGLE"
        case .funneled: return "MPI_THREAD_FUNNELED"
        case .serialized: return "MPI_THREAD_SERIALIZED"
        case .multiple: return "MPI_THREAD_MULTIPLE"
        }
    }
}

/// A communicator handle (MPI_Comm). Sendable so the reducer's thread can hold it.
struct CommHandle: @unchecked Sendable {
    let raw: OpaquePointer
    static var world: CommHandle { CommHandle(raw: elip_mpi_comm_world()) }
}

/// Thin throwing wrappers. Counts are chunked so buffers beyond Int32.max elements work.
enum MPI {
    /// Elements per MPI call; keeps `count` inside Int32 with room to spare.
    static let maxChunk = 1 << 30

    static func check(_ rc: Int32, _ call: String) throws {
        if rc != elip_mpi_success() { throw DistributedError.mpi(call: call, code: rc, message: errorString(rc)) }
    }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(elip_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        guard MPI_Error_string(code, &buf, &len) == elip_mpi_success() else { return "unknown MPI error" }
        return String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func datatype(_ k: MPIScalarKind) -> OpaquePointer {
        switch k {
        case .float: return elip_mpi_float()
        case .double: return elip_mpi_double()
        case .int32: return elip_mpi_int32()
        case .int64: return elip_mpi_int64()
        case .uint8: return elip_mpi_uint8()
        }
    }

    static func op(_ o: ReduceOp) -> OpaquePointer {
        switch o {
        case .sum: return elip_mpi_sum()
        case .max: return elip_mpi_max()
        case .min: return elip_mpi_min()
        }
    }

    static func threadLevel(_ v: Int32) -> ThreadLevel {
        if v >= elip_mpi_thread_multiple() { return .multiple }
        if v >= elip_mpi_thread_serialized() { return .serialized }
        if v >= elip_mpi_thread_funneled() { return .funneled }
        return .single
    }

    static func rawLevel(_ l: ThreadLevel) -> Int32 {
        switch l {
        case .single: return elip_mpi_thread_single()
        case .funneled: return elip_mpi_thread_funneled()
        case .serialized: return elip_mpi_thread_serialized()
        case .multiple: return elip_mpi_thread_multiple()
        }
    }

    static var isInitialized: Bool { var f: Int32 = 0; MPI_Initialized(&f); return f != 0 }
    static var isFinalized: Bool { var f: Int32 = 0; MPI_Finalized(&f); return f != 0 }

    /// MPI_Init_thread; returns the provided level. Errors before init cannot use ERRORS_RETURN
    /// (the default handler aborts), but init failures are reported by return code in OpenMPI.
    static func initialize(requesting level: ThreadLevel) throws -> ThreadLevel {
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, rawLevel(level), &provided), "MPI_Init_thread")
        try check(MPI_Comm_set_errhandler(elip_mpi_comm_world(), elip_mpi_errors_return()), "MPI_Comm_set_errhandler")
        return threadLevel(provided)
    }

    static func finalize() throws { try check(MPI_Finalize(), "MPI_Finalize") }

    static func rank(_ c: CommHandle) throws -> Int {
        var r: Int32 = 0
        try check(MPI_Comm_rank(c.raw, &r), "MPI_Comm_rank")
        return Int(r)
    }

    static func size(_ c: CommHandle) throws -> Int {
        var s: Int32 = 0
        try check(MPI_Comm_size(c.raw, &s), "MPI_Comm_size")
        return Int(s)
    }

    static func processorName() -> String {
        var buf = [CChar](repeating: 0, count: 512)  // MPI_MAX_PROCESSOR_NAME is 256 in OpenMPI
        var len: Int32 = 0
        guard MPI_Get_processor_name(&buf, &len) == elip_mpi_success() else { return "?" }
        return String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// gethostname, without Foundation's hostName (which may wait on DNS).
    static func localHostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A private duplicate of `c` (with ERRORS_RETURN), so a second thread's collectives never
    /// interleave with the first thread's on the same communicator.
    static func dup(_ c: CommHandle) throws -> CommHandle {
        var out: OpaquePointer? = nil
        try check(MPI_Comm_dup(c.raw, &out), "MPI_Comm_dup")
        guard let out else { throw DistributedError.mpi(call: "MPI_Comm_dup", code: -1, message: "null communicator") }
        try check(MPI_Comm_set_errhandler(out, elip_mpi_errors_return()), "MPI_Comm_set_errhandler")
        return CommHandle(raw: out)
    }

    static func free(_ c: CommHandle) throws {
        var h: OpaquePointer? = c.raw
        try check(MPI_Comm_free(&h), "MPI_Comm_free")
    }

    static func barrier(_ c: CommHandle) throws { try check(MPI_Barrier(c.raw), "MPI_Barrier") }

    static func abort(_ c: CommHandle, code: Int32) { _ = MPI_Abort(c.raw, code) }

    static func wtime() -> Double { MPI_Wtime() }

    static func broadcast<T: MPIScalar>(_ b: UnsafeMutableBufferPointer<T>, root: Int, _ c: CommHandle) throws {
        guard let base = b.baseAddress else { return }
        var off = 0
        while off < b.count {
            let n = min(maxChunk, b.count - off)
            try check(MPI_Bcast(base + off, Int32(n), datatype(T.mpiKind), Int32(root), c.raw), "MPI_Bcast")
            off += n
        }
    }

    static func allReduce<T: MPIScalar>(_ b: UnsafeMutableBufferPointer<T>, _ o: ReduceOp, _ c: CommHandle) throws {
        guard let base = b.baseAddress else { return }
        var off = 0
        while off < b.count {
            let n = min(maxChunk, b.count - off)
            try check(MPI_Allreduce(elip_mpi_in_place(), base + off, Int32(n), datatype(T.mpiKind), op(o), c.raw),
                      "MPI_Allreduce")
            off += n
        }
    }

    /// Gathers `send` from every rank into `recv` (size * send.count), in rank order.
    static func allGather<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into recv: UnsafeMutableBufferPointer<T>,
                                        _ c: CommHandle) throws {
        guard send.count <= Int(Int32.max) else {
            throw DistributedError.invalidArgument("allGather of \(send.count) elements per rank exceeds Int32")
        }
        guard let r = recv.baseAddress else { return }
        let dt = datatype(T.mpiKind)
        try check(MPI_Allgather(send.baseAddress, Int32(send.count), dt, r, Int32(send.count), dt, c.raw), "MPI_Allgather")
    }

    /// x *= a, in C (fast even in debug builds).
    static func scale(_ b: UnsafeMutableBufferPointer<Float>, by a: Float) {
        guard let p = b.baseAddress else { return }
        elip_scale_float(p, Int64(b.count), a)
    }
}

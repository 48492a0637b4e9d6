import CBLAS
import Foundation

/// The process's address-space limit (`ulimit -v`, RLIMIT_AS) and what is mapped now.
///
/// Under a limit, an allocation that does not fit fails. Inside the Swift runtime that is an
/// abort, and inside OpenBLAS a spin that never ends (its buffer allocator retries forever), so
/// the commands check the room they need before they start, and name the limit when it is short.
public enum AddressSpace {
    /// The soft RLIMIT_AS in bytes, nil when unlimited.
    public static var limit: Int? {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_AS.rawValue), &r) == 0, r.rlim_cur != rlim_t.max else { return nil }
        return r.rlim_cur > UInt64(Int.max) ? nil : Int(r.rlim_cur)
    }

    /// Bytes of address space mapped now (VmSize, from /proc/self/statm).
    public static var mapped: Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = s.split(separator: " ").first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Room left under the limit (nil when unlimited).
    public static var headroom: Int? { limit.map { max(0, $0 - mapped) } }

    /// Throws when the limit leaves less than `bytes` for `purpose`, naming both numbers.
    public static func require(_ bytes: Int, for purpose: String) throws {
        guard let limit, let room = headroom, room < bytes else { return }
        throw TensorError.invalidArgument(
            op: "memory",
            reason: "the address-space limit (ulimit -v \(limit / 1024) KiB) leaves \(mib(room)) for \(purpose), which needs at least \(mib(bytes)); raise the limit or use a smaller model or batch")
    }

    /// Ends the process with an error naming the request, the limit and what is mapped: an
    /// allocation deep inside a step has no caller to return an error to, and the last
    /// checkpoint is complete on disk (checkpoints are written atomically).
    public static func outOfMemory(bytes: Int, for what: String) -> Never {
        let limitText = limit.map { "the address-space limit is \(mib($0)) (ulimit -v \($0 / 1024))" } ?? "no address-space limit is set"
        fputs("Error: out of memory: cannot allocate \(mib(bytes)) for \(what); \(mib(mapped)) mapped, \(limitText). Use a smaller batch or model, or more memory.\n", stderr)
        exit(1)
    }

    static func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    /// OpenBLAS (0.3.x) takes one work buffer per thread that calls it, 128 MiB of address space
    /// each (BUFFER_SIZE on x86-64; mostly never touched), on that thread's first GEMM.
    public static let blasBufferBytes = 128 << 20

    /// OpenBLAS starts its thread pool when it loads, and each pool thread takes its buffer at
    /// once; one that cannot spins forever, and `exit` then waits for it. So before anything
    /// else: when the limit leaves no room for the pool's and the main thread's buffers, say so
    /// and leave without running exit handlers. (Conservative by the buffers already taken.)
    public static func checkRoomForBLASPool() {
        guard let limit, let room = headroom else { return }
        let need = Int(max(1, openblas_get_num_threads())) * blasBufferBytes + (32 << 20)
        guard room < need else { return }
        fputs("Error: the address-space limit (ulimit -v \(limit / 1024) KiB) leaves \(mib(room)) after start-up; OpenBLAS's thread pool needs about \(mib(need)) (set OPENBLAS_NUM_THREADS=1 to need less). Raise the limit.\n", stderr)
        _exit(1)
    }

    /// Checks the room for the BLAS buffers of the engine's threads, then makes every thread
    /// that will call BLAS take its buffer now, while the process is small: the engine's parallel
    /// loops run single-threaded GEMMs on up to `Threads.count` threads. Afterwards buffers are
    /// reused, so a later shortage fails in our allocator with an error, not in OpenBLAS's
    /// retry loop.
    public static func prepareBLAS() throws {
        guard limit != nil else { return }
        let threads = Threads.count
        try require(threads * blasBufferBytes + (32 << 20), for: "OpenBLAS's work buffers (\(threads) thread(s))")
        let n = 512  // large enough for the buffered GEMM path on every kernel
        let a = [Float](repeating: 0, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: a, ldb: n, beta: 0, c: &c, ldc: n)
        Threads.withSingleThreadedBLAS {
            Threads.parallelFor(threads) { _ in
                let x = [Float](repeating: 0, count: 128 * 128)
                var y = [Float](repeating: 0, count: 128 * 128)
                sgemm(transA: false, transB: false, m: 128, n: 128, k: 128, alpha: 1, a: x, lda: 128, b: x, ldb: 128, beta: 0, c: &y, ldc: 128)
            }
        }
    }
}

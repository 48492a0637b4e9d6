import CBLAS
import Foundation

/// Optional accounting of time spent inside sgemm, for benchmarks that split a step into GEMM
/// and everything else. Off by default (one branch per call when off).
public enum GEMMProfiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var seconds = 0.0
    nonisolated(unsafe) public private(set) static var flops = 0.0
    /// With `recordShapes` on, also time per GEMM shape (calls made on the caller's thread; the
    /// per-worker GEMMs of a parallel region are counted under one "parallel regions" row).
    nonisolated(unsafe) public static var recordShapes = false
    nonisolated(unsafe) public private(set) static var byShape: [GEMMShape: GEMMShapeTime] = [:]
    public static func reset() { seconds = 0; flops = 0; byShape = [:] }
    static func add(_ s: Double, _ f: Double) { seconds += s; flops += f }
    static func add(_ shape: GEMMShape, _ s: Double, _ f: Double) {
        byShape[shape, default: GEMMShapeTime()].add(s, f)
    }
}

/// One GEMM shape as cblas saw it (row-major; m x k times k x n), or all parallel regions (m = 0).
public struct GEMMShape: Hashable, Sendable, CustomStringConvertible {
    public var transA: Bool, transB: Bool, m: Int, n: Int, k: Int
    public static let parallelRegions = GEMMShape(transA: false, transB: false, m: 0, n: 0, k: 0)
    public var description: String {
        m == 0 ? "parallel regions (batched)" : "\(transA ? "T" : "N")\(transB ? "T" : "N") m=\(m) n=\(n) k=\(k)"
    }
}

/// Calls, seconds and FLOPs of one GEMM shape.
public struct GEMMShapeTime: Sendable {
    public var calls = 0, seconds = 0.0, flops = 0.0
    public init() {}
    mutating func add(_ s: Double, _ f: Double) { calls += 1; seconds += s; flops += f }
    /// Another tally of the same shape (e.g. another step's).
    public mutating func add(_ other: GEMMShapeTime) { calls += other.calls; seconds += other.seconds; flops += other.flops }
}

@inline(__always) func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// cblas_sgemm for row-major operands: C = alpha * op(A) * op(B) + beta * C, op(A) m x k,
/// op(B) k x n, C m x n; leading dimensions default to contiguous rows. Returns the FLOPs done.
@inline(__always)
private func rowMajorSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                           a: UnsafePointer<Float>, lda: Int?, b: UnsafePointer<Float>, ldb: Int?,
                           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int?) -> Double {
    if m == 0 || n == 0 { return 0 }
    if k == 0 {
        // BLAS leaves C untouched when k == 0 only if beta == 1; make the semantics explicit.
        for i in 0..<m { let row = c + i * (ldc ?? n); for j in 0..<n { row[j] *= beta } }
        return 0
    }
    cblas_sgemm(CblasRowMajor,
                transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda ?? (transA ? m : k)),
                b, Int32(ldb ?? (transB ? k : n)),
                beta, c, Int32(ldc ?? n))
    return 2.0 * Double(m) * Double(n) * Double(k)
}

/// sgemm on the calling thread, counted by `GEMMProfiler` when it is on.
@inline(__always)
func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
           b: UnsafePointer<Float>, ldb: Int? = nil,
           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    let t0 = GEMMProfiler.enabled ? monotonicSeconds() : 0
    let flops = rowMajorSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    if GEMMProfiler.enabled {
        let dt = monotonicSeconds() - t0
        GEMMProfiler.add(dt, flops)
        if GEMMProfiler.recordShapes { GEMMProfiler.add(GEMMShape(transA: transA, transB: transB, m: m, n: n, k: k), dt, flops) }
    }
}

/// Public GEMM entry for benchmarks: C[m,n] = A[m,k] * op(B) on arrays the caller owns.
public enum GEMM {
    /// Runs `C = op(A) op(B)` on caller-owned tensors (used by `elip bench ops`).
    public static func run(_ a: Tensor, _ b: Tensor, into c: Tensor, transA: Bool = false, transB: Bool = false,
                           m: Int, n: Int, k: Int, accumulate: Bool = false) throws {
        guard a.count >= m * k, b.count >= k * n, c.count >= m * n else {
            throw TensorError.invalidArgument(op: "GEMM.run", reason: "operands too small for \(m)x\(n)x\(k)")
        }
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.data, b: b.data,
              beta: accumulate ? 1 : 0, c: c.data)
    }
}

/// GEMM time and FLOPs of one worker inside a parallel region (the global profiler is not
/// thread-safe; a region's workers tally privately and the region reports once).
struct GEMMTally {
    var gemmSeconds = 0.0
    var busySeconds = 0.0
    var flops = 0.0
}

/// Runs `body(range, chunk, tally)` over `0..<n` split across the engine's threads, each worker calling
/// single-threaded BLAS (many small GEMMs in parallel beat one multi-threaded small GEMM at a
/// time). Chunk boundaries depend only on `n` and the thread count, so results are deterministic.
/// With profiling on, the region's wall time is split into GEMM and other in the proportion the
/// workers measured.
func parallelGEMMRegion(_ n: Int, _ body: (Range<Int>, Int, inout GEMMTally) -> Void) {
    let chunks = Threads.chunkCount(n, grain: 1)
    let tallies = UnsafeMutableBufferPointer<GEMMTally>.allocate(capacity: chunks)
    tallies.initialize(repeating: GEMMTally())
    defer { tallies.deallocate() }
    let t0 = GEMMProfiler.enabled ? monotonicSeconds() : 0
    Threads.withSingleThreadedBLAS(chunks > 1) {
        Threads.parallelFor(n, grain: 1) { r in
            let c = Threads.chunkIndex(of: r.lowerBound, chunks: chunks, n: n)
            let s = GEMMProfiler.enabled ? monotonicSeconds() : 0
            body(r, c, &tallies[c])
            if GEMMProfiler.enabled { tallies[c].busySeconds += monotonicSeconds() - s }
        }
    }
    if GEMMProfiler.enabled {
        let wall = monotonicSeconds() - t0
        let gemm = tallies.reduce(0.0) { $0 + $1.gemmSeconds }, busy = tallies.reduce(0.0) { $0 + $1.busySeconds }
        let seconds = busy > 0 ? wall * gemm / busy : 0, flops = tallies.reduce(0.0) { $0 + $1.flops }
        GEMMProfiler.add(seconds, flops)
        if GEMMProfiler.recordShapes { GEMMProfiler.add(.parallelRegions, seconds, flops) }
    }
}

/// sgemm inside a `parallelGEMMRegion` worker: counts into the worker's tally.
@inline(__always)
func sgemm(_ tally: inout GEMMTally, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil, b: UnsafePointer<Float>, ldb: Int? = nil,
           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    let t0 = GEMMProfiler.enabled ? monotonicSeconds() : 0
    let flops = rowMajorSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    if GEMMProfiler.enabled {
        tally.gemmSeconds += monotonicSeconds() - t0
        tally.flops += flops
    }
}

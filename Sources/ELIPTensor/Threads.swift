import CBLAS
import Dispatch
import Foundation

/// One setting for all parallelism: OpenBLAS's thread pool and the engine's own parallel loops.
///
/// Results are bitwise identical run to run for a fixed thread count: work is split into chunks
/// whose boundaries depend only on the problem size and `Threads.count`, every output element is
/// written by exactly one chunk, and partial sums are combined in chunk order.
public enum Threads {
    /// Thread counts `configure` accepts.
    public static let validCounts = 1...4096

    nonisolated(unsafe) private static var _count: Int = {
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        guard let s = ProcessInfo.processInfo.environment["ELIP_THREADS"] else { return cores }
        if let n = Int(s.trimmingCharacters(in: .whitespaces)), validCounts.contains(n) { return n }
        // Not a reason to stop (nothing else is wrong), but never silent.
        fputs("warning: ELIP_THREADS=\(s) is not a thread count in [\(validCounts.lowerBound), \(validCounts.upperBound)]; using \(cores) (the cores)\n", stderr)
        return cores
    }()
    nonisolated(unsafe) private static var blasConfigured = false

    /// Number of threads used by BLAS and by the engine's parallel loops.
    public static var count: Int {
        if !blasConfigured { configure(_count) }
        return _count
    }

    /// Sets the thread count (from `--threads` or `ELIP_THREADS`). Call once at start-up.
    public static func configure(_ n: Int) {
        // Callers validate user input against validCounts; the clamp keeps Int32(n) from trapping.
        _count = min(max(validCounts.lowerBound, n), validCounts.upperBound)
        openblas_set_num_threads(Int32(_count))
        blasConfigured = true
    }

    /// Splits `0..<n` into at most `count` contiguous chunks of at least `grain` items and runs
    /// `body` on each, in parallel. Chunk boundaries depend only on `n`, `grain` and `count`.
    @inlinable
    public static func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let chunks = chunkCount(n, grain: grain)
        if chunks == 1 { body(0..<n); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            body(chunkRange(c, of: chunks, n: n))
        }
    }

    /// Runs `body` with OpenBLAS limited to one thread (when `enabled`), for regions where the
    /// engine's threads each run their own small GEMMs.
    public static func withSingleThreadedBLAS<R>(_ enabled: Bool = true, _ body: () throws -> R) rethrows -> R {
        let n = count
        guard enabled, n > 1 else { return try body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(n)) }
        return try body()
    }

    /// Which chunk of `parallelFor` starts at `start`.
    @inlinable
    public static func chunkIndex(of start: Int, chunks: Int, n: Int) -> Int {
        let base = n / chunks, extra = n % chunks
        // Chunks 0..<extra have base + 1 items.
        return start < extra * (base + 1) ? start / (base + 1) : extra + (start - extra * (base + 1)) / max(base, 1)
    }

    /// The number of chunks `parallelFor` uses for `n` items.
    @inlinable
    public static func chunkCount(_ n: Int, grain: Int) -> Int {
        max(1, min(count, n / max(1, grain)))
    }

    @inlinable
    public static func chunkRange(_ c: Int, of chunks: Int, n: Int) -> Range<Int> {
        let base = n / chunks, extra = n % chunks
        let start = c * base + min(c, extra)
        return start..<(start + base + (c < extra ? 1 : 0))
    }
}

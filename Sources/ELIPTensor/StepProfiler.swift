/// Where a training step spends its time, for `elip bench train-step`. Off by default: every
/// hook is one branch when off.
///
/// - Sections: named, nestable regions (`text`, `vision/look-ahead`, `backward`, ...) with
///   inclusive wall time.
/// - FLOPs: GEMM FLOPs per section path, exclusive of nested sections (`sectionFlops`); the
///   backward GEMMs of an op are charged to the section its forward ran in (`backwardFlops`),
///   so a module's forward+backward cost can be told apart.
/// - Ops: non-GEMM time per op kind. Backward closures are timed exactly. A forward op is charged
///   the time since the previous op (or section boundary) finished, so Swift glue between two ops
///   lands on the second. GEMM time is taken out of both and reported by `GEMMProfiler`.
public enum StepProfiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var sectionSeconds: [String: Double] = [:]
    nonisolated(unsafe) public private(set) static var opSeconds: [String: Double] = [:]
    /// GEMM FLOPs per section path ("" outside every section), nested sections excluded.
    nonisolated(unsafe) public private(set) static var sectionFlops: [String: Double] = [:]
    /// Backward GEMM FLOPs per section path of the forward op they differentiate.
    nonisolated(unsafe) public private(set) static var backwardFlops: [String: Double] = [:]
    nonisolated(unsafe) static var flopsAtBoundary = 0.0
    nonisolated(unsafe) static var stack: [String] = []
    nonisolated(unsafe) static var lastMark = 0.0
    nonisolated(unsafe) static var gemmAtMark = 0.0

    /// Starts GEMM accounting too (seconds and FLOPs) and clears everything.
    public static func start() {
        enabled = true
        GEMMProfiler.enabled = true
        reset()
    }

    public static func stop() {
        chargeFlops()
        enabled = false
        GEMMProfiler.enabled = false
    }

    public static func reset() {
        sectionSeconds.removeAll(keepingCapacity: true)
        opSeconds.removeAll(keepingCapacity: true)
        sectionFlops.removeAll(keepingCapacity: true)
        backwardFlops.removeAll(keepingCapacity: true)
        GEMMProfiler.reset()
        flopsAtBoundary = 0
        mark()
    }

    /// The innermost open section's path ("" outside every section); recorded with each tape entry.
    static var currentPath: String { stack.last ?? "" }

    /// Charges the GEMM FLOPs since the last section boundary to the section open until now.
    @inline(__always) static func chargeFlops() {
        let f = GEMMProfiler.flops
        if f != flopsAtBoundary { sectionFlops[currentPath, default: 0] += f - flopsAtBoundary }
        flopsAtBoundary = f
    }

    @inline(__always) static func mark() {
        lastMark = monotonicSeconds()
        gemmAtMark = GEMMProfiler.seconds
    }

    /// Runs `body` as section `name` (nested under the enclosing section: "outer/name").
    @inline(__always)
    public static func section<R>(_ name: String, _ body: () throws -> R) rethrows -> R {
        guard enabled else { return try body() }
        let path = stack.last.map { "\($0)/\(name)" } ?? name
        chargeFlops()
        stack.append(path)
        let t0 = monotonicSeconds()
        defer {
            sectionSeconds[path, default: 0] += monotonicSeconds() - t0
            chargeFlops()
            stack.removeLast()
            mark()
        }
        mark()
        return try body()
    }

    nonisolated(unsafe) static var openSections: [Double] = []

    /// Opens section `name` until the matching `end()` (for code where a closure is awkward).
    @inline(__always) public static func begin(_ name: String) {
        guard enabled else { return }
        chargeFlops()
        stack.append(stack.last.map { "\($0)/\(name)" } ?? name)
        openSections.append(monotonicSeconds())
        mark()
    }

    @inline(__always) public static func end() {
        guard enabled, let t0 = openSections.popLast() else { return }
        chargeFlops()
        guard let path = stack.popLast() else { return }
        sectionSeconds[path, default: 0] += monotonicSeconds() - t0
        mark()
    }

    /// A forward op just finished: charge it the non-GEMM time since the last mark.
    @inline(__always) static func forwardOpDone(_ op: StaticString) {
        guard enabled else { return }
        let now = monotonicSeconds()
        opSeconds[kind(op), default: 0] += (now - lastMark) - (GEMMProfiler.seconds - gemmAtMark)
        lastMark = now
        gemmAtMark = GEMMProfiler.seconds
    }

    /// Times one backward closure, GEMM time excluded; its GEMM FLOPs go to `section`, where its
    /// forward op ran.
    @inline(__always) static func timeBackward(_ op: StaticString, section: String?, _ body: () throws -> Void) rethrows {
        guard enabled else { return try body() }
        let t0 = monotonicSeconds(), g0 = GEMMProfiler.seconds, f0 = GEMMProfiler.flops
        try body()
        opSeconds[kind(op), default: 0] += (monotonicSeconds() - t0) - (GEMMProfiler.seconds - g0)
        if GEMMProfiler.flops != f0 { backwardFlops[section ?? "", default: 0] += GEMMProfiler.flops - f0 }
    }

    /// "layerNorm(weight:bias:eps:)" -> "layerNorm".
    static func kind(_ op: StaticString) -> String {
        let s = op.description
        return s.firstIndex(of: "(").map { String(s[..<$0]) } ?? s
    }
}

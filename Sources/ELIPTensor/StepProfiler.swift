/// Where a training step spends its time, for `elip bench train-step`. Off by default: every
/// hook is one branch when off.
///
/// - Sections: named, nestable regions (`text`, `vision/look-ahead`, `backward`, ...) with
///   inclusive wall time.
/// - Ops: non-GEMM time per op kind. Backward closures are timed exactly. A forward op is charged
///   the time since the previous op (or section boundary) finished, so Swift glue between two ops
///   lands on the second. GEMM time is taken out of both and reported by `GEMMProfiler`.
public enum StepProfiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var sectionSeconds: [String: Double] = [:]
    nonisolated(unsafe) public private(set) static var opSeconds: [String: Double] = [:]
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
        enabled = false
        GEMMProfiler.enabled = false
    }

    public static func reset() {
        sectionSeconds.removeAll(keepingCapacity: true)
        opSeconds.removeAll(keepingCapacity: true)
        GEMMProfiler.reset()
        mark()
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
        stack.append(path)
        let t0 = monotonicSeconds()
        defer {
            sectionSeconds[path, default: 0] += monotonicSeconds() - t0
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
        stack.append(stack.last.map { "\($0)/\(name)" } ?? name)
        openSections.append(monotonicSeconds())
        mark()
    }

    @inline(__always) public static func end() {
        guard enabled, let t0 = openSections.popLast(), let path = stack.popLast() else { return }
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

    /// Times one backward closure, GEMM time excluded.
    @inline(__always) static func timeBackward(_ op: StaticString, _ body: () throws -> Void) rethrows {
        guard enabled else { return try body() }
        let t0 = monotonicSeconds(), g0 = GEMMProfiler.seconds
        try body()
        opSeconds[kind(op), default: 0] += (monotonicSeconds() - t0) - (GEMMProfiler.seconds - g0)
    }

    /// "layerNorm(weight:bias:eps:)" -> "layerNorm".
    static func kind(_ op: StaticString) -> String {
        let s = op.description
        return s.firstIndex(of: "(").map { String(s[..<$0]) } ?? s
    }
}

import Foundation

/// Runs `produce(i)` for i in 0..<count on `workers` threads and hands the results to the calling
/// thread strictly in index order, with at most `window` results produced ahead of the consumer
/// (bounded memory). Producer threads are joined before `run` returns, also when the consumer
/// throws (the remaining work is cancelled).
final class OrderedPipeline<Output> {
    private let count: Int
    private let window: Int
    private let condition = NSCondition()
    private var nextClaim = 0
    private var consumed = 0
    private var results: [Int: Output] = [:]
    private var cancelled = false

    init(count: Int, window: Int) {
        self.count = count
        self.window = max(1, window)
    }

    /// `makeWorker(w)` is called once on each worker thread and returns that thread's producer
    /// (so per-thread state such as codecs lives on its thread).
    func run(workers: Int, makeWorker: @escaping (Int) -> (Int) -> Output,
             consume: (Int, Output) throws -> Void) throws {
        let n = max(1, workers)
        let done = DispatchSemaphore(value: 0)
        for w in 0..<n {
            let t = Thread { [self] in
                let produce = makeWorker(w)
                while let i = claim() {
                    let out = produce(i)
                    deliver(i, out)
                }
                done.signal()
            }
            t.stackSize = 8 << 20
            t.name = "elip-build-\(w)"
            t.start()
        }
        defer {
            cancel()
            for _ in 0..<n { done.wait() }
        }
        for i in 0..<count {
            let out = take(i)
            try consume(i, out)
        }
    }

    private func claim() -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while !cancelled && nextClaim < count && nextClaim - consumed >= window { condition.wait() }
        guard !cancelled, nextClaim < count else { return nil }
        let i = nextClaim
        nextClaim += 1
        return i
    }

    private func deliver(_ i: Int, _ out: Output) {
        condition.lock()
        results[i] = out
        condition.broadcast()
        condition.unlock()
    }

    private func take(_ i: Int) -> Output {
        condition.lock()
        defer { condition.unlock() }
        while results[i] == nil { condition.wait() }
        // Safe: the loop above guarantees presence.
        let out = results.removeValue(forKey: i)!
        consumed = i + 1
        condition.broadcast()
        return out
    }

    private func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}

/// A progress line: rewritten in place with '\r' on a terminal, a plain line every `plainInterval`
/// seconds otherwise (logs, mpirun). Thread-safe.
public final class ProgressMeter: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let unit: String
    private let isTerminal: Bool
    private let interval: Double
    private let start = Date()
    private var lastPrint = Date.distantPast
    private var lastLength = 0
    private let lock = NSLock()
    private let enabled: Bool

    public init(label: String, total: Int, unit: String = "images", enabled: Bool = true,
                plainInterval: Double = 10, fileDescriptor: Int32 = 2) {
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.isTerminal = isatty(fileDescriptor) != 0
        self.interval = isatty(fileDescriptor) != 0 ? 0.2 : plainInterval
    }

    public func update(_ done: Int, force: Bool = false) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard force || now.timeIntervalSince(lastPrint) >= interval else { return }
        lastPrint = now
        let line = Self.format(label: label, done: done, total: total, unit: unit, elapsed: now.timeIntervalSince(start))
        if isTerminal {
            let pad = max(0, lastLength - line.count)
            FileHandle.standardError.write(Data(("\r" + line + String(repeating: " ", count: pad)).utf8))
            lastLength = line.count
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    /// Prints the final state and ends the terminal line.
    public func finish(_ done: Int) {
        guard enabled else { return }
        update(done, force: true)
        lock.lock()
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
        lock.unlock()
    }

    static func format(label: String, done: Int, total: Int, unit: String, elapsed: Double) -> String {
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let pct = total > 0 ? 100 * Double(done) / Double(total) : 100
        var eta = "--:--"
        if rate > 0 && total >= done { eta = duration(Double(total - done) / rate) }
        return String(format: "%@: %d/%d %@ (%.1f%%), %.1f %@/s, elapsed %@, ETA %@",
                      label, done, total, unit, pct, rate, unit, duration(elapsed), eta)
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--:--" }
        let t = Int(s.rounded())
        if t >= 3600 { return String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) }
        return String(format: "%d:%02d", t / 60, t % 60)
    }
}

import Foundation

/// Fixed-order buckets over a contiguous buffer of `count` elements. Boundaries are cut from the
/// END of the buffer (bucket k covers [count - (k+1)B, count - kB), clipped at 0); the order in
/// which buckets are issued is the default k = 0, 1, ... (the end first) or a permutation learned
/// from the order backward finishes gradients. Every rank derives the same plan from the same
/// (count, bucketElements, order), which is DDP's rule: the k-th collective on each rank covers the
/// same elements. The boundaries never depend on the order, so the reduced values do not either.
public struct BucketPlan: Equatable, Sendable {
    public let count: Int
    public let bucketElements: Int
    /// Element ranges in issue order; together they cover 0..<count exactly once. All are
    /// `bucketElements` long except possibly the front of the buffer.
    public let buckets: [Range<Int>]
    /// `order[i]`: the boundary index k of the i-th bucket issued.
    public let order: [Int]

    public init(count: Int, bucketElements: Int, order: [Int]? = nil) throws {
        guard count >= 0, bucketElements > 0 else {
            throw DistributedError.invalidArgument("bucket plan for \(count) elements in buckets of \(bucketElements)")
        }
        self.count = count
        self.bucketElements = bucketElements
        let n = (count + bucketElements - 1) / bucketElements
        let order = order ?? Array(0..<n)
        guard order.count == n, Set(order) == Set(0..<n) else {
            throw DistributedError.invalidArgument("bucket order \(order.prefix(8))... is not a permutation of the \(n) buckets")
        }
        self.order = order
        buckets = order.map { k in max(0, count - (k + 1) * bucketElements)..<(count - k * bucketElements) }
    }

    /// Boundary index k of the bucket holding element `i`.
    @inline(__always) func boundaryIndex(of i: Int) -> Int { (count - 1 - i) / bucketElements }

    /// An issue order from when each element became final: buckets sorted by the time their last
    /// element did (ties by position, the end first). `finalTime(range)` gives the latest time of
    /// the elements in a range (nil: never final in the observed step, issued last).
    public static func orderByCompletion(count: Int, bucketElements: Int, finalTime: (Range<Int>) -> Int?) throws -> [Int] {
        let plan = try BucketPlan(count: count, bucketElements: bucketElements)
        let times = plan.buckets.map { finalTime($0) ?? Int.max }
        return plan.order.sorted { times[$0] != times[$1] ? times[$0] < times[$1] : $0 < $1 }
    }
}

/// What one reduction cost. `communicationSeconds` is the comm thread's time inside the
/// collectives (plus scaling); `waitSeconds` is how long the training thread blocked in finish().
public struct ReductionTiming: Sendable, Equatable {
    public var communicationSeconds: Double = 0
    public var waitSeconds: Double = 0
    public var buckets: Int = 0
    public var bytes: Int = 0
    /// Share of communication hidden behind backward: 1 - wait/comm (0 when nothing was sent).
    public var hiddenShare: Double {
        communicationSeconds > 0 ? min(1, max(0, 1 - waitSeconds / communicationSeconds)) : 0
    }
    /// Algorithmic bandwidth: buffer bytes per second of communication.
    public var bytesPerSecond: Double { communicationSeconds > 0 ? Double(bytes) / communicationSeconds : 0 }
    public init() {}
}

/// Averages a contiguous gradient buffer across ranks, overlapping communication with backward.
///
///     try reducer.begin(buffer: arena.gradients)
///     ... backward; after each layer: try reducer.markReady(from: firstOffsetOfThatLayer)
///     let timing = try reducer.finish()      // buffer now holds the mean over ranks
///
/// One communication thread owns every MPI call of the reduction, on a private duplicate of the
/// world communicator so it never interleaves with collectives the training thread issues
/// (allowed under MPI_THREAD_MULTIPLE). It runs blocking MPI_Allreduce (in place) bucket by bucket:
/// the thread already supplies the asynchrony, and OpenMPI's non-blocking collectives (libnbc)
/// progress only inside MPI calls and use slower algorithms than the tuned blocking ones, so
/// Iallreduce + Wait would buy nothing here.
///
/// Thread levels: MULTIPLE — full overlap, training-thread collectives allowed meanwhile;
/// SERIALIZED — same overlap, but Communicator collectives throw `busy` between begin and finish;
/// FUNNELED/SINGLE (or `overlap: false`) — no thread, finish() reduces everything itself.
///
/// Construction duplicates the communicator, a collective: create reducers in the same order on
/// every rank. Single-process mode (or one rank) does nothing and reports zero communication.
public final class GradientReducer {
    public static let defaultBucketBytes = 25 << 20

    public let communicator: Communicator
    public let bucketElements: Int
    public var bucketBytes: Int { bucketElements * MemoryLayout<Float>.stride }
    /// True when a communication thread overlaps reduction with the caller's work.
    public let isOverlapped: Bool

    private let state: ReducerState
    private let comm: CommHandle?
    private var plan: BucketPlan?
    /// Last (count, bucketElements) checked across ranks; a new layout is checked once.
    private var verifiedCount: Int?

    public init(communicator: Communicator, bucketBytes: Int = GradientReducer.defaultBucketBytes,
                overlap: Bool = true) throws {
        guard bucketBytes >= MemoryLayout<Float>.stride else {
            throw DistributedError.invalidArgument("bucketBytes \(bucketBytes) < 4")
        }
        self.communicator = communicator
        bucketElements = bucketBytes / MemoryLayout<Float>.stride
        let active = communicator.isDistributed && communicator.size > 1
        comm = active ? try communicator.duplicate() : nil
        state = ReducerState(comm: comm, size: communicator.size)
        isOverlapped = active && overlap && communicator.threadLevel >= .serialized
        if isOverlapped {
            let thread = Thread { [state] in state.run() }
            thread.name = "elip-allreduce"
            thread.start()
        }
    }

    deinit {
        let (idle, abandoned) = state.shutDown()
        if isOverlapped && abandoned { communicator.reductionEnded() }
        // Freeing the duplicate is erroneous after finalize or while the thread may still be
        // inside a collective (an abandoned reduction).
        if let comm, idle, !MPI.isFinalized { try? MPI.free(comm) }
    }

    /// The plan used for a buffer of `count` floats.
    public func plan(count: Int) throws -> BucketPlan {
        if let plan, plan.count == count { return plan }
        let p = try BucketPlan(count: count, bucketElements: bucketElements)
        plan = p
        return p
    }

    /// Issues buckets in `order` from now on (a permutation of the boundary indices of a buffer
    /// of `count` floats; see `BucketPlan.orderByCompletion`). Every rank must set the same order.
    public func setIssueOrder(_ order: [Int], count: Int) throws {
        guard !state.isActive else { throw DistributedError.invalidArgument("setIssueOrder while a reduction is in flight") }
        plan = try BucketPlan(count: count, bucketElements: bucketElements, order: order)
        verifiedCount = nil  // the order is part of the checked layout
    }

    /// Starts a reduction of `buffer` (nothing is final yet). The buffer must stay valid and its
    /// final elements untouched until finish() returns.
    public func begin(buffer: UnsafeMutableBufferPointer<Float>) throws {
        let p = try plan(count: buffer.count)
        let verify = comm != nil && verifiedCount != buffer.count
        try state.begin(buffer: buffer, plan: p, verifyLayout: verify)
        if verify { verifiedCount = buffer.count }
        if isOverlapped { communicator.reductionStarted() }
    }

    /// Declares elements `offset..<buffer.count` final (offsets only move towards 0); every bucket
    /// lying entirely in that range may now be reduced.
    public func markReady(from offset: Int) throws {
        try state.markReady(from: offset)
    }

    /// Declares the elements of `range` final (each element at most once per reduction); a bucket
    /// is reduced, in plan order, once all its elements are.
    public func markReady(_ range: Range<Int>) throws {
        try state.markReady(range)
    }

    /// Marks everything final, waits until every bucket is reduced and divided by the world size,
    /// and returns the timing. Throws the first error of the reduction (on every rank when it
    /// came from a collective).
    public func finish() throws -> ReductionTiming {
        let wasActive = state.isActive
        defer { if isOverlapped && wasActive { communicator.reductionEnded() } }
        do {
            return try communicator.waiting("gradient all-reduce") { try state.finish(overlapped: isOverlapped) }
        } catch {
            verifiedCount = nil  // check the layout again next time
            throw error
        }
    }

    /// Buckets of the current (or last) reduction already reduced; for tests and progress logs.
    public var completedBuckets: Int { state.completed }

    /// Non-overlapped path: the whole buffer at once (still in the same buckets).
    public func allReduceAverage(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> ReductionTiming {
        try begin(buffer: buffer)
        return try finish()
    }
}

/// Shared between the training thread and the communication thread; every field is guarded by
/// `cond`'s lock.
private final class ReducerState: @unchecked Sendable {
    let cond = NSCondition()
    let comm: CommHandle?
    let size: Int

    var active = false
    var shutdown = false
    var running = false        // comm thread inside a collective
    var threadExited = false
    var buffer = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    var plan: BucketPlan?
    var verifyLayout = false
    var readyFrom = 0          // elements readyFrom..<count were declared final by markReady(from:)
    var remaining: [Int] = []  // per bucket in issue order: elements not yet final
    var position: [Int] = []   // boundary index k -> position in issue order
    var done = 0               // buckets reduced
    var error: Error?
    var timing = ReductionTiming()

    init(comm: CommHandle?, size: Int) { self.comm = comm; self.size = size }

    var completed: Int { cond.lock(); defer { cond.unlock() }; return done }
    var isActive: Bool { cond.lock(); defer { cond.unlock() }; return active }

    func begin(buffer: UnsafeMutableBufferPointer<Float>, plan: BucketPlan, verifyLayout: Bool) throws {
        cond.lock(); defer { cond.unlock() }
        guard !active else { throw DistributedError.invalidArgument("GradientReducer.begin while a reduction is in flight") }
        guard !shutdown else { throw DistributedError.invalidArgument("GradientReducer was shut down") }
        self.buffer = buffer
        self.plan = plan
        self.verifyLayout = verifyLayout
        readyFrom = buffer.count
        remaining = plan.buckets.map(\.count)
        position = [Int](repeating: 0, count: plan.order.count)
        for (i, k) in plan.order.enumerated() { position[k] = i }
        done = 0
        error = nil
        timing = ReductionTiming()
        timing.bytes = comm == nil ? 0 : buffer.count * MemoryLayout<Float>.stride
        timing.buckets = comm == nil ? 0 : plan.buckets.count
        active = true
        cond.broadcast()
    }

    func markReady(from offset: Int) throws {
        cond.lock(); defer { cond.unlock() }
        guard active else { throw DistributedError.invalidArgument("GradientReducer.markReady without begin") }
        guard (0...buffer.count).contains(offset) else {
            throw DistributedError.invalidArgument("markReady(from: \(offset)) outside 0...\(buffer.count)")
        }
        if offset < readyFrom {
            addReady(offset..<readyFrom)
            readyFrom = offset
            cond.broadcast()
        }
    }

    func markReady(_ range: Range<Int>) throws {
        cond.lock(); defer { cond.unlock() }
        guard active else { throw DistributedError.invalidArgument("GradientReducer.markReady without begin") }
        guard range.lowerBound >= 0, range.upperBound <= buffer.count else {
            throw DistributedError.invalidArgument("markReady(\(range)) outside 0..<\(buffer.count)")
        }
        addReady(range)
        cond.broadcast()
    }

    /// Counts the elements of `range` as final in their buckets (lock held).
    private func addReady(_ range: Range<Int>) {
        guard let plan, !range.isEmpty else { return }
        var hi = range.upperBound
        while hi > range.lowerBound {
            let k = plan.boundaryIndex(of: hi - 1)
            let lo = max(range.lowerBound, max(0, plan.count - (k + 1) * plan.bucketElements))
            remaining[position[k]] -= hi - lo
            hi = lo
        }
    }

    func finish(overlapped: Bool) throws -> ReductionTiming {
        cond.lock()
        guard active else { cond.unlock(); throw DistributedError.invalidArgument("GradientReducer.finish without begin") }
        readyFrom = 0
        for i in remaining.indices { remaining[i] = 0 }
        guard let comm, let plan else {
            active = false; cond.unlock()
            return timing  // single process: the mean of one buffer is itself
        }
        if overlapped {
            cond.broadcast()
            let t0 = now()
            while (verifyLayout || running || done < plan.buckets.count) && error == nil && !threadExited { cond.wait() }
            timing.waitSeconds = now() - t0
            if error == nil && done < plan.buckets.count {
                error = DistributedError.invalidArgument("GradientReducer thread stopped mid-reduction")
            }
        } else {
            let verify = verifyLayout
            verifyLayout = false
            cond.unlock()
            let t0 = now()
            var err: Error?
            do {
                if verify { try checkLayout(comm, plan) }
                for r in plan.buckets { try reduce(r, comm) }
            } catch { err = error }
            cond.lock()
            error = err
            timing.communicationSeconds = now() - t0
            timing.waitSeconds = timing.communicationSeconds
        }
        active = false
        let result = (timing, error)
        cond.unlock()
        if let e = result.1 { throw e }
        return result.0
    }

    /// Stops the thread. Returns (thread idle, a reduction was abandoned between begin and finish).
    func shutDown() -> (idle: Bool, abandoned: Bool) {
        cond.lock(); defer { cond.unlock() }
        shutdown = true
        cond.broadcast()
        return (!running, active)
    }

    /// Communication thread body. The layout check (when due) runs first, as soon as begin() is
    /// called, so it overlaps backward too.
    func run() {
        cond.lock()
        while true {
            while !shutdown && !(active && error == nil && (verifyLayout || (next != nil && remaining[done] <= 0))) {
                cond.wait()
            }
            if shutdown { break }
            let verify = verifyLayout
            verifyLayout = false
            let range = next
            let plan = self.plan!
            running = true
            cond.unlock()
            let t0 = now()
            var err: Error?
            do {
                if verify { try checkLayout(comm!, plan) } else if let range { try reduce(range, comm!) }
            } catch { err = error }
            let dt = now() - t0
            cond.lock()
            running = false
            timing.communicationSeconds += dt
            if let err { error = err } else if !verify { done += 1 }
            cond.broadcast()
        }
        threadExited = true
        cond.broadcast()
        cond.unlock()
    }

    /// The next bucket to reduce (nil when all are done).
    private var next: Range<Int>? {
        guard let plan, done < plan.buckets.count else { return nil }
        return plan.buckets[done]
    }

    private func reduce(_ r: Range<Int>, _ comm: CommHandle) throws {
        let b = UnsafeMutableBufferPointer(rebasing: buffer[r])
        try MPI.allReduce(b, .sum, comm)
        MPI.scale(b, by: 1 / Float(size))
    }

    /// One tiny all-reduce proving every rank uses the same count and bucket size; a mismatch
    /// would pair different buckets and corrupt or hang. All ranks see the same result and throw.
    private func checkLayout(_ comm: CommHandle, _ plan: BucketPlan) throws {
        var h: Int64 = 17
        for k in plan.order { h = h &* 1_000_003 &+ Int64(k) }
        h &= 0x3FFF_FFFF_FFFF_FFFF  // keep -h representable
        var v: [Int64] = [Int64(plan.count), -Int64(plan.count), Int64(plan.bucketElements), -Int64(plan.bucketElements), h, -h]
        try v.withUnsafeMutableBufferPointer { try MPI.allReduce($0, .max, comm) }
        guard v[0] == -v[1], v[2] == -v[3] else {
            throw DistributedError.inconsistentArguments(
                "gradient buffers of \(-v[1])...\(v[0]) floats in buckets of \(-v[3])...\(v[2]) floats")
        }
        guard v[4] == -v[5] else {
            throw DistributedError.inconsistentArguments("the ranks issue gradient buckets in different orders")
        }
    }
}

private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

import CMPIShim
import Foundation

/// The process group this trainer runs in: MPI's world when a launcher (mpirun, srun) started the
/// process, otherwise a single process (rank 0 of 1) whose collectives are identities. Callers use
/// the same API either way.
///
/// Collectives must be called by every rank in the same order with consistent arguments (same
/// root, same counts unless a method says otherwise). Methods that could hang or corrupt memory on
/// inconsistent counts check them first with a tiny collective and then throw on every rank.
///
/// MPI is finalized only by an explicit `finalize()`, never at exit: a rank that dies or exits
/// early must leave MPI unfinalized so the launcher tears the job down, instead of blocking in
/// MPI_Finalize while its peers wait in a collective.
public final class Communicator {
    public let rank: Int
    public let size: Int
    public var isRoot: Bool { rank == 0 }
    /// True when backed by MPI (even with one rank); false in single-process mode.
    public let isDistributed: Bool
    /// Thread level MPI provided (`.multiple` in single-process mode, where nothing is restricted).
    public let threadLevel: ThreadLevel
    public let launcher: LauncherEnvironment
    /// Host name as MPI reports it (the local host name in single-process mode).
    public let processorName: String

    let comm: CommHandle?
    private let lock = NSLock()
    private var isFinalized = false
    private var reductionsInFlight = 0

    private static let sharedLock = NSLock()
    nonisolated(unsafe) private static var shared: Result<Communicator, Error>?

    /// The process-wide communicator, created on first use. MPI can be initialised once per
    /// process, so later calls return the same object (or rethrow the same error).
    ///
    /// `level` is the thread level requested from MPI_Init_thread on first use; the environment
    /// variable ELIP_MPI_THREAD_LEVEL (single|funneled|serialized|multiple) overrides it, which is
    /// how the tests exercise the fallback paths.
    public static func world(requesting level: ThreadLevel = .multiple) throws -> Communicator {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        if let shared { return try shared.get() }
        let env = ProcessInfo.processInfo.environment
        var requested = level
        if let s = env["ELIP_MPI_THREAD_LEVEL"]?.lowercased() {
            switch s {
            case "single": requested = .single
            case "funneled": requested = .funneled
            case "serialized": requested = .serialized
            case "multiple": requested = .multiple
            default: break
            }
        }
        let result = Result { try Communicator(launcher: LauncherEnvironment.detect(env), requesting: requested) }
        shared = result
        return try result.get()
    }

    /// A stand-alone single-process communicator (rank 0 of 1) that never touches MPI.
    public static func singleProcess() -> Communicator { Communicator() }

    private init() {
        rank = 0; size = 1; isDistributed = false; threadLevel = .multiple
        launcher = .notLaunched; comm = nil
        processorName = MPI.localHostName()
    }

    private init(launcher: LauncherEnvironment, requesting level: ThreadLevel) throws {
        self.launcher = launcher
        guard launcher.isLaunched else {
            rank = 0; size = 1; isDistributed = false; threadLevel = .multiple; comm = nil
            processorName = MPI.localHostName()
            return
        }
        guard !MPI.isInitialized else {
            throw DistributedError.invalidArgument("MPI was initialised outside Communicator.world()")
        }
        threadLevel = try MPI.initialize(requesting: level)
        let world = CommHandle.world
        rank = try MPI.rank(world)
        size = try MPI.size(world)
        comm = world
        isDistributed = true
        processorName = MPI.processorName()
        try launcher.validate(worldSize: size)
    }

    // MARK: state checks

    /// Throws when MPI is gone, or when the thread level forbids a second thread's MPI call while
    /// the gradient reducer's thread may be inside one.
    private func usable() throws {
        lock.lock(); defer { lock.unlock() }
        if isFinalized { throw DistributedError.finalized }
        if reductionsInFlight > 0 && threadLevel < .multiple {
            throw DistributedError.busy("MPI provides only \(threadLevel): no collectives on the training thread "
                                        + "between GradientReducer.begin and finish")
        }
    }

    func reductionStarted() { lock.lock(); reductionsInFlight += 1; lock.unlock() }
    func reductionEnded() { lock.lock(); reductionsInFlight -= 1; lock.unlock() }

    private func checkRoot(_ root: Int) throws {
        guard (0..<size).contains(root) else {
            throw DistributedError.invalidArgument("root \(root) outside 0..<\(size)")
        }
    }

    /// A private communicator for a helper thread (collective: every rank must call it in order).
    func duplicate() throws -> CommHandle? {
        guard let comm else { return nil }
        try usable()
        return try MPI.dup(comm)
    }

    // MARK: collective watchdog

    /// Seconds a blocking collective may wait before the other ranks are checked for life; nil
    /// while no watchdog runs.
    public private(set) var watchdogTimeout: Double?

    /// Exit status of a job the watchdog aborts.
    public static let watchdogExitCode: Int32 = 75

    /// Starts the collective watchdog (Sources/CMPIShim/Watchdog.c), a collective: every rank
    /// calls it at the same point. When this rank has waited `timeoutSeconds` in a collective, it
    /// pings the other ranks: a rank that does not answer within the grace (the timeout, clamped
    /// to 5...60 s) is stopped, hung or unreachable, and the job is aborted with a message naming
    /// it and the operation; so is a job whose ranks all wait. Ranks that answer and are not
    /// waiting are computing (a long step, rank 0 writing a checkpoint): the wait goes on.
    /// Returns why it is not running when it cannot run (one process, MPI without
    /// MPI_THREAD_MULTIPLE), nil when it runs.
    public func startWatchdog(timeoutSeconds: Double) throws -> String? {
        guard timeoutSeconds.isFinite, timeoutSeconds > 0 else {
            throw DistributedError.invalidArgument("watchdog timeout must be a positive number of seconds, got \(timeoutSeconds)")
        }
        guard let comm, size > 1 else { return "one process: nothing to wait for" }
        guard threadLevel >= .multiple else { return "MPI provides only \(threadLevel), the watchdog needs MPI_THREAD_MULTIPLE" }
        guard watchdogTimeout == nil else { return nil }
        try usable()
        let grace = min(max(timeoutSeconds, 5), 60)
        try MPI.check(elip_watchdog_start(comm.raw, timeoutSeconds, grace, Self.watchdogExitCode), "MPI_Comm_dup (watchdog)")
        watchdogTimeout = timeoutSeconds
        return nil
    }

    /// What the training thread is doing, for the watchdog's message ("step 12").
    public func setWatchdogContext(_ context: String) {
        guard watchdogTimeout != nil else { return }
        context.withCString { elip_watchdog_set_context($0) }
    }

    /// Runs `body` (a blocking collective, or waiting for one) as a wait the watchdog times.
    func waiting<R>(_ operation: String, _ body: () throws -> R) rethrows -> R {
        guard watchdogTimeout != nil else { return try body() }
        operation.withCString { elip_watchdog_enter($0) }
        defer { elip_watchdog_leave() }
        return try body()
    }

    // MARK: collectives

    public func barrier() throws {
        guard let comm else { return }
        try usable()
        try waiting("MPI_Barrier") { try MPI.barrier(comm) }
    }

    /// Replaces `buffer` on every rank with root's contents. Counts must match on all ranks;
    /// a mismatch throws `inconsistentArguments` on every rank.
    public func broadcast<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int = 0) throws {
        try checkRoot(root)
        guard let comm else { return }
        try usable()
        let rootCount = try broadcastCount(buffer.count, root: root, comm)
        let mismatch = try allReduce(rootCount == buffer.count ? Int64(0) : 1, op: .max)
        guard mismatch == 0 else {
            throw DistributedError.inconsistentArguments("broadcast of \(buffer.count) elements on rank \(rank), "
                                                         + "root \(root) has \(rootCount)")
        }
        try waiting("MPI_Bcast") { try MPI.broadcast(buffer, root: root, comm) }
    }

    /// Replaces `array` on every rank with root's array (resized to root's count).
    public func broadcast<T: MPIScalar>(_ array: inout [T], root: Int = 0) throws {
        try checkRoot(root)
        guard let comm else { return }
        try usable()
        let n = try broadcastCount(array.count, root: root, comm)
        if rank != root {
            array = [T](unsafeUninitializedCapacity: n) { b, done in
                // Zero-fill so the array is initialised even if the broadcast below throws.
                if let p = b.baseAddress { memset(p, 0, n * MemoryLayout<T>.stride) }
                done = n
            }
        }
        try waiting("MPI_Bcast") { try array.withUnsafeMutableBufferPointer { try MPI.broadcast($0, root: root, comm) } }
    }

    /// Broadcasts raw bytes; the byte count must match on all ranks.
    public func broadcast(bytes: UnsafeMutableRawBufferPointer, root: Int = 0) throws {
        let b = UnsafeMutableBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        try broadcast(b, root: root)
    }

    /// Root's `value` (JSON-encoded) on every rank. Non-root ranks may pass nil. If root passes nil
    /// or encoding fails, every rank throws.
    public func broadcastValue<T: Codable>(_ value: T?, root: Int = 0) throws -> T {
        try checkRoot(root)
        guard comm != nil else {
            guard let value else { throw DistributedError.codec("root passed no value") }
            return value
        }
        // Payload: one status byte (0 ok, 1 error) then JSON or an error message.
        var payload: [UInt8] = []
        if rank == root {
            if let value {
                do {
                    let enc = JSONEncoder()
                    enc.outputFormatting = .sortedKeys
                    payload = [0] + Array(try enc.encode(value))
                } catch {
                    payload = [1] + Array("encoding \(T.self) failed: \(error)".utf8)
                }
            } else {
                payload = [1] + Array("root passed no value".utf8)
            }
        }
        try broadcast(&payload, root: root)
        guard let status = payload.first else { throw DistributedError.codec("empty payload") }
        let body = Data(payload.dropFirst())
        if status != 0 { throw DistributedError.codec(String(decoding: body, as: UTF8.self)) }
        do { return try JSONDecoder().decode(T.self, from: body) } catch {
            throw DistributedError.codec("decoding \(T.self) failed: \(error)")
        }
    }

    /// In-place element-wise reduction across ranks. Counts must match on all ranks (not checked:
    /// this is the hot path).
    public func allReduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        guard let comm else { return }
        try usable()
        try waiting("MPI_Allreduce") { try MPI.allReduce(buffer, op, comm) }
    }

    public func allReduce<T: MPIScalar>(_ array: inout [T], op: ReduceOp) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: op) }
    }

    public func allReduce<T: MPIScalar>(_ value: T, op: ReduceOp) throws -> T {
        var a = [value]
        try allReduce(&a, op: op)
        return a[0]
    }

    /// Sum across ranks divided by the world size, in place, in one call (no overlap).
    public func allReduceAverage(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard comm != nil, size > 1 else { return }
        try allReduce(buffer, op: .sum)
        MPI.scale(buffer, by: 1 / Float(size))
    }

    /// Every rank's `local` array, in rank order. Counts must be equal on all ranks; a mismatch
    /// throws `inconsistentArguments` on every rank.
    public func allGather<T: MPIScalar>(_ local: [T]) throws -> [[T]] {
        guard comm != nil else { return [local] }
        var flat = [T](unsafeUninitializedCapacity: local.count * size) { b, done in
            if let p = b.baseAddress { memset(p, 0, b.count * MemoryLayout<T>.stride) }
            done = b.count
        }
        try local.withUnsafeBufferPointer { s in
            try flat.withUnsafeMutableBufferPointer { r in try allGather(s, into: r) }
        }
        return (0..<size).map { Array(flat[($0 * local.count)..<(($0 + 1) * local.count)]) }
    }

    /// Gathers `local` from every rank into `result` (rank r's part at r * local.count).
    /// `result.count` must be `size * local.count`; counts must agree across ranks.
    public func allGather<T: MPIScalar>(_ local: UnsafeBufferPointer<T>, into result: UnsafeMutableBufferPointer<T>) throws {
        guard result.count == local.count * size else {
            throw DistributedError.invalidArgument("allGather result holds \(result.count) elements, "
                                                   + "needs \(size) x \(local.count)")
        }
        guard let comm else {
            if local.count > 0 { result.baseAddress!.update(from: local.baseAddress!, count: local.count) }
            return
        }
        try usable()
        var range: [Int64] = [Int64(local.count), -Int64(local.count)]
        try allReduce(&range, op: .max)
        guard range[0] == -range[1] else {
            throw DistributedError.inconsistentArguments("allGather counts range from \(-range[1]) to \(range[0])")
        }
        try waiting("MPI_Allgather") { try MPI.allGather(local, into: result, comm) }
    }

    /// Throws `fingerprintMismatch` on every rank unless all ranks hold the same fingerprint
    /// (config, data manifest, ...). `what` names it in the error.
    public func agree(on fingerprint: String, what: String = "fingerprint") throws {
        guard comm != nil else { return }
        let hashes = try allGather([Int64(bitPattern: Fingerprint.hash(fingerprint))])
        let differing = (0..<size).filter { hashes[$0] != hashes[0] }
        if !differing.isEmpty { throw DistributedError.fingerprintMismatch(ranks: differing, what: what) }
    }

    /// True on every rank when `localFlag` is true on any rank (all-reduce MAX). SPEC §6: a
    /// non-finite loss or gradient anywhere skips the step everywhere.
    public func anyRankNonFinite(localFlag: Bool) throws -> Bool {
        try allReduce(Int32(localFlag ? 1 : 0), op: .max) != 0
    }

    /// Ends the whole job: MPI_Abort on all ranks, or exit(code) in single-process mode.
    public func abort(code: Int32) -> Never {
        if let comm, !MPI.isFinalized { MPI.abort(comm, code: code) }
        exit(code)
    }

    /// Finalizes MPI (idempotent; no-op in single-process mode). Every rank must call it, after
    /// its last collective. Later collectives throw `finalized`.
    public func finalize() throws {
        lock.lock()
        if reductionsInFlight > 0 {
            lock.unlock()
            throw DistributedError.busy("finalize while a gradient reduction is in flight; call finish() first")
        }
        let already = isFinalized
        isFinalized = true
        lock.unlock()
        guard comm != nil, !already, !MPI.isFinalized else { return }
        if watchdogTimeout != nil { elip_watchdog_stop() }  // its thread calls MPI
        try MPI.finalize()
    }

    /// Seconds on a monotonic clock (MPI_Wtime under MPI).
    public func wallTime() -> Double {
        comm != nil ? MPI.wtime() : Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }

    private func broadcastCount(_ n: Int, root: Int, _ comm: CommHandle) throws -> Int {
        var c = [Int64(n)]
        try waiting("MPI_Bcast") { try c.withUnsafeMutableBufferPointer { try MPI.broadcast($0, root: root, comm) } }
        return Int(c[0])
    }
}

/// FNV-1a, 64 bit: a stable (process-independent, unlike Hasher) hash for fingerprint checks.
enum Fingerprint {
    static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}

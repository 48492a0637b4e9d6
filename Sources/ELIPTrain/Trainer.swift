import CKernels
import ELIPDistributed
import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPShards
import ELIPTensor
import Foundation
import TorchCheckpoint

/// Set from signal handlers to the signal's number: SIGUSR1 (Slurm pre-emption), SIGTERM and
/// SIGINT ask every rank to finish the current step, checkpoint and stop. A second SIGINT ends
/// the process at once (exit 130), as Ctrl-C twice is meant to.
nonisolated(unsafe) var stopSignalReceived: sig_atomic_t = 0

/// Failures on purpose, for the multi-process tests (tests-mpi/train.sh): the environment names
/// a step, and the process dies there the way a real fault would (no cleanup).
enum FaultInjection {
    /// ELIP_FAULT_KILL_RANK=r and ELIP_FAULT_AT_STEP=s: rank r SIGKILLs itself before step s.
    static func killRankIfRequested(rank: Int, step: Int) {
        let env = ProcessInfo.processInfo.environment
        guard let r = env["ELIP_FAULT_KILL_RANK"].flatMap(Int.init), let s = env["ELIP_FAULT_AT_STEP"].flatMap(Int.init),
              r == rank, s == step else { return }
        fputs("[rank \(rank)] fault injection: killing myself before step \(step)\n", stderr)
        kill(getpid(), SIGKILL)
    }

    /// ELIP_FAULT_NONFINITE_STEPS=a-b (or one step a): the loss of global steps a...b is made
    /// NaN (and with it every gradient), as a diverging run or a bad batch would.
    static func nonFiniteLoss(step: Int) -> Bool {
        guard let spec = ProcessInfo.processInfo.environment["ELIP_FAULT_NONFINITE_STEPS"] else { return false }
        let parts = spec.split(separator: "-").compactMap { Int($0) }
        guard let first = parts.first else { return false }
        return step >= first && step <= (parts.count > 1 ? parts[1] : first)
    }

    /// ELIP_FAULT_SLOW_CHECKPOINT_SECONDS=t: rank 0 takes t seconds longer over every
    /// checkpoint (a slow file system), while the other ranks wait.
    static func slowCheckpoint() {
        guard let t = ProcessInfo.processInfo.environment["ELIP_FAULT_SLOW_CHECKPOINT_SECONDS"].flatMap(Double.init),
              t > 0, t < 3600 else { return }
        usleep(UInt32(t * 1e6))
    }

    /// ELIP_FAULT_CRASH_IN_CHECKPOINT=s: the checkpoint of step s dies half-written.
    static func crashInCheckpoint(step: Int) -> Bool {
        ProcessInfo.processInfo.environment["ELIP_FAULT_CRASH_IN_CHECKPOINT"].flatMap(Int.init) == step
    }
}

/// `FeatureExchange` over the MPI communicator.
final class CommunicatorExchange: FeatureExchange {
    let comm: Communicator
    init(_ comm: Communicator) { self.comm = comm }
    var rank: Int { comm.rank }
    var worldSize: Int { comm.size }
    func allGather(_ local: [Float]) throws -> [Float] { try comm.allGather(local).flatMap { $0 } }
    func allReduceSum(_ values: [Float]) throws -> [Float] {
        var v = values
        try comm.allReduce(&v, op: .sum)
        return v
    }
}

/// Data-parallel pre-training of any registered model (SPEC §6).
///
/// Every rank builds the same model; rank 0's parameters and state (momentum weights, queues,
/// pointers: whatever the model's state dict holds) are broadcast before the first step. A step:
/// forward on the rank's batch, backward with gradient buckets all-reduced as soon as they are
/// final (in the order the first backward finished them), a global non-finite check (a bad loss
/// or gradient on any rank skips the step everywhere), optional clipping, AdamW. Rank 0 writes
/// checkpoints and metrics; other ranks only print warnings and errors.
public final class Trainer {
    public struct Options {
        public var runDirectory: URL
        /// nil: start fresh; "auto": newest valid checkpoint of the run (fresh when none);
        /// otherwise a checkpoint folder.
        public var resume: String?
        /// Global step to stop at (0: the config's max_steps, or the end of the schedule).
        public var maxSteps: Int = 0
        /// Initial weights (the model's state dict, e.g. from `elip import-weights`).
        public var initialWeights: String?
        /// Loads the starting weights into the freshly initialised model on rank 0 instead of
        /// `initialWeights` (fine-tuning: a pre-training checkpoint through the task's key map).
        public var loadInitialWeights: ((any TrainableModel) throws -> Void)?
        /// Check every op output for non-finite values and name the first (debug mode).
        public var anomalyDetection = false
        /// Print the progress line (rank 0) to stderr.
        public var progress = true
        /// Stop (with a checkpoint) once this many seconds have passed; 0: no limit.
        public var timeLimit: Double = 0
        /// `resume == "auto"` when every checkpoint is damaged: start from step 0 anyway (the
        /// damaged ones are kept, renamed `damaged-step-N`). Off: a clear error naming them.
        public var startFreshIfDamaged = false
        /// Starting (fresh or from a checkpoint) below checkpoints already in the run folder:
        /// rename those `superseded-step-N` and go on. Off: a clear error, since continuing would
        /// overwrite and prune them.
        public var setAsideNewerCheckpoints = false
        /// Collective watchdog timeout in seconds (nil: the config's collective_timeout_minutes;
        /// 0: off). See `Communicator.startWatchdog`.
        public var collectiveTimeout: Double?
        public init(runDirectory: URL) { self.runDirectory = runDirectory }
    }

    public let config: TrainingConfig
    public let options: Options
    public let comm: Communicator
    public let model: any TrainableModel
    public let optimizer: AdamW
    public let source: BatchSource
    let reducer: GradientReducer
    var store: CheckpointStore
    /// The run folder's advisory lock (rank 0): a second trainer on the same folder is refused.
    var runLock: FolderLock?
    public private(set) var state: TrainerState
    var metrics: MetricsLog?
    var nonFiniteInARow = 0
    /// Set by step() when too many steps in a row were skipped; run() stops with it.
    var divergence: TrainError?
    /// The signal that stopped `run()` (after its checkpoint), nil when it stopped otherwise.
    public private(set) var stoppedBySignal: Int32?
    let fingerprint: String
    /// Bucket issue order learned from the first backward of this process (nil: not yet).
    var learnedBucketOrder: [Int]?

    public init(config: TrainingConfig, options: Options, communicator: Communicator, source: BatchSource,
                codeVersion: String = "elip-1") throws {
        self.config = config
        self.options = options
        comm = communicator
        self.source = source
        model = try config.model.makeModel()
        let m = model
        // The moments are two more copies of the parameters; under `ulimit -v` a shortfall here
        // would be a runtime abort, so it is checked first.
        try AddressSpace.require(2 * 4 * model.parameters.used + (64 << 20), for: "AdamW's moments of \(model.parameters.used) parameter floats")
        optimizer = AdamW(arena: model.parameters, hyper: config.optimizer, decays: { m.decays(parameter: $0, shape: $1) },
                          lrMultiplier: { m.learningRateMultiplier(parameter: $0) }, variant: m.adamWVariant)
        reducer = try GradientReducer(communicator: comm, bucketBytes: config.bucketMB << 20)
        store = CheckpointStore(runDirectory: options.runDirectory, keep: config.keepCheckpoints)
        fingerprint = Trainer.fingerprint(config.text, source.summary, codeVersion, worldSize: communicator.size)
        state = TrainerState(step: 0, epoch: 0, batchInEpoch: 0, stepGenerator: SeededGenerator(seed: config.seed),
                             skippedSteps: 0, fingerprint: fingerprint, configText: config.text)
        // Every rank must run the same configuration on the same data.
        try comm.agree(on: fingerprint, what: "config + data + code fingerprint")
        let timeout = options.collectiveTimeout ?? config.collectiveTimeoutMinutes * 60
        if timeout > 0, let why = try comm.startWatchdog(timeoutSeconds: timeout), comm.size > 1, comm.isRoot {
            print("collective watchdog off: \(why)")
        }
        let runFolder = options.runDirectory.path
        let folderExisted = FileManager.default.fileExists(atPath: runFolder)
        if comm.isRoot {
            runLock = try FolderLock(folder: runFolder, purpose: "elip train")
        }
        do {
            try initialiseState()
        } catch {
            // A run that fails before its first step (bad --init-weights, a refused resume) leaves
            // no trace: the folder it created for its lock goes again (rmdir: only if still empty).
            if comm.isRoot, !folderExisted {
                runLock?.release()
                runLock = nil
                try? FileManager.default.removeItem(atPath: (runFolder as NSString).appendingPathComponent(FolderLock.fileName))
                rmdir(runFolder)
            }
            throw error
        }
    }

    static func fingerprint(_ parts: String..., worldSize: Int) -> String {
        let text = parts.joined(separator: "\u{1}") + "\u{1}\(worldSize)"
        let h = text.utf8CString.withUnsafeBufferPointer { elip_checksum64($0.baseAddress, Int64($0.count), 7) }
        return String(format: "%016llx", h)
    }

    /// Fresh or resumed state on rank 0, then broadcast to every rank.
    func initialiseState() throws {
        var resumedFrom: String?
        if comm.isRoot {
            try model.initialiseRandomly(seed: config.seed)
            if let load = options.loadInitialWeights {
                try load(model)
            } else if let w = options.initialWeights {
                // .safetensors or a PyTorch checkpoint (an official ALBEF/BLIP .pth: identity names).
                let (file, note) = try WeightFile.open(w)
                if let note { print("init-weights: \(note)") }
                try StateDict.load(model.stateLayout, from: file)
                let unexpected = StateDict.unexpectedNames(model.stateLayout, in: file)
                if !unexpected.isEmpty {
                    warn("init-weights: \(unexpected.count) tensors of \(w) match no parameter or buffer and were not used (unexpected_keys): \(unexpected.prefix(8).joined(separator: ", "))\(unexpected.count > 8 ? ", ..." : "")")
                }
            }
            if let folder = try resumeSource() {
                state = try store.load(folder, into: model, optimizer: optimizer)
                guard state.fingerprint == fingerprint else {
                    throw TrainError.checkpoint("\(folder.path) was written by a run with another config, data or world size (fingerprint \(state.fingerprint), this run \(fingerprint))")
                }
                resumedFrom = folder.path
                if Self.sameFile(folder.deletingLastPathComponent(), store.directory) {
                    store.protected.insert(folder.lastPathComponent)
                }
            }
            try checkNoNewerCheckpoints(than: state.step, resumedFrom: resumedFrom.map(URL.init(fileURLWithPath:)))
        }
        // Rank 0 holds the truth: weights, model state, optimizer and trainer state.
        let layout = model.stateLayout
        for arena in layout.allArenas { try comm.broadcast(arena.values) }
        for (_, t) in layout.buffers { try t.withUnsafeMutableBufferPointer { try comm.broadcast($0) } }
        var counters = layout.counters.map { Int64($0.get()) }
        try comm.broadcast(&counters)
        for (c, v) in zip(layout.counters, counters) { c.set(Int(v)) }
        for b in layout.integerBuffers {
            var values = b.get()
            try comm.broadcast(&values)
            b.set(values)
        }
        state.modelKind = config.model.kind
        state = try comm.broadcastValue(comm.isRoot ? state : nil)
        // In place: a copy of the moments would need twice the parameters' memory again.
        try optimizer.withMutableMoments { m, v in
            try comm.broadcast(m)
            try comm.broadcast(v)
        }
        optimizer.restoreStep(try comm.broadcastValue(comm.isRoot ? optimizer.step : nil))
        if comm.isRoot {
            try FileManager.default.createDirectory(at: options.runDirectory, withIntermediateDirectories: true)
            metrics = try MetricsLog(url: options.runDirectory.appendingPathComponent("metrics.jsonl"))
            if let resumedFrom { log("resumed from \(resumedFrom) at step \(state.step) (epoch \(state.epoch), batch \(state.batchInEpoch))") }
            if !config.ignoredKeys.isEmpty { log("config: accepted and ignored (no effect here, see docs/CONFIG.md): \(config.ignoredKeys.joined(separator: ", "))") }
        }
    }

    /// The checkpoint to start from (nil: step 0). `auto` takes the newest one that verifies;
    /// damaged ones newer than it are renamed `damaged-step-N` (kept, never overwritten or pruned).
    /// When checkpoints exist and none verifies, starting over needs `startFreshIfDamaged`.
    func resumeSource() throws -> URL? {
        guard let r = options.resume else { return nil }
        guard r == "auto" else { return URL(fileURLWithPath: r) }
        let scan = store.scanNewestValid()
        if scan.valid == nil && !scan.damagedNewer.isEmpty && !options.startFreshIfDamaged {
            let list = scan.damagedNewer.map { "  \($0.0.lastPathComponent): \($0.1)" }.joined(separator: "\n")
            throw TrainError.checkpoint("--resume auto: every checkpoint in \(store.directory.path) is damaged; refusing to start over from step 0 on top of them:\n\(list)\nRepair or move them, resume from a good copy with --resume FOLDER, or pass --start-fresh-if-damaged to start from step 0 (the damaged ones are kept as damaged-step-N)")
        }
        for (folder, error) in scan.damagedNewer {
            let moved = try store.setAside(folder, prefix: "damaged")
            warn("damaged checkpoint skipped and kept as \(moved.lastPathComponent): \(error)")
        }
        return scan.valid
    }

    /// A run that starts at `step` below checkpoints already in the folder would overwrite and
    /// prune them: refused unless `setAsideNewerCheckpoints` (then they are renamed superseded-*).
    func checkNoNewerCheckpoints(than step: Int, resumedFrom: URL?) throws {
        let newer = store.list().filter { folder in
            (CheckpointStore.step(of: folder) ?? 0) > step && !(resumedFrom.map { Self.sameFile($0, folder) } ?? false)
        }
        guard !newer.isEmpty else { return }
        guard options.setAsideNewerCheckpoints else {
            let names = newer.reversed().map(\.lastPathComponent).joined(separator: ", ")
            let start = resumedFrom.map { "resuming from \($0.path) (step \(step))" } ?? "starting from step 0"
            throw TrainError.checkpoint("\(store.directory.path) holds checkpoints newer than where this run starts (\(start)): \(names); continuing would overwrite and prune them. Use --resume auto to continue from the newest, another --out, or --set-aside-newer-checkpoints to keep them as superseded-step-N and go on from step \(step)")
        }
        for folder in newer {
            let moved = try store.setAside(folder, prefix: "superseded")
            warn("\(folder.lastPathComponent) is newer than the starting step \(step); kept as \(moved.lastPathComponent)")
        }
    }

    static func sameFile(_ a: URL, _ b: URL) -> Bool {
        a.standardizedFileURL.resolvingSymlinksInPath().path == b.standardizedFileURL.resolvingSymlinksInPath().path
    }

    func log(_ message: String) {
        if comm.isRoot { print(message) }
    }

    func warn(_ message: String) {
        fputs(comm.size > 1 ? "[rank \(comm.rank)] warning: \(message)\n" : "warning: \(message)\n", stderr)
    }

    /// The global step at which training stops.
    public var stopStep: Int {
        let configured = options.maxSteps > 0 ? options.maxSteps : config.maxSteps
        let scheduleEnd = config.epochs * source.batchesPerEpoch / config.gradAccumulation
        return configured > 0 ? configured : scheduleEnd
    }

    /// Trains until `stopStep`, the end of the schedule or a stop signal. Returns the reason.
    @discardableResult
    public func run() throws -> String {
        Trainer.installSignalHandlers()
        Autograd.detectAnomalies = options.anomalyDetection
        defer { Autograd.detectAnomalies = false }
        let start = ProcessStats.now()
        let startStep = state.step
        var reason = state.step < stopStep ? "reached step \(stopStep)"
            : "nothing to do: the run is at step \(state.step), at or past the stop step \(stopStep)"
        while state.step < stopStep {
            if state.epoch >= config.epochs { reason = "end of the schedule (\(config.epochs) epochs)"; break }
            let record = try step()
            if comm.isRoot, let record {
                if state.step % config.logEvery == 0 || state.step == stopStep { try metrics?.append(record) }
                if options.progress { progressLine(record, started: start, fromStep: startStep) }
            }
            if let divergence {
                if options.progress && comm.isRoot { fputs("\n", stderr) }
                throw divergence
            }
            let epochEnded = state.batchInEpoch == 0
            // Signals and the time limit: rank 0's clock decides, every rank stops together.
            let overTime = options.timeLimit > 0 && comm.isRoot && ProcessStats.now() - start > options.timeLimit
            // Bits 0-1: a stop signal, the time limit; above: the highest signal number any rank got.
            let signal = Int32(stopSignalReceived)
            let flags = try comm.allReduce((signal << 2) | (signal != 0 ? 1 : 0) | (overTime ? 2 : 0), op: .max)
            let stop = flags != 0
            if stop || epochEnded || state.step % config.checkpointEvery == 0 || state.step == stopStep {
                try checkpoint()
            }
            if stop {
                stoppedBySignal = flags & 1 != 0 ? flags >> 2 : nil
                reason = stoppedBySignal.map { "stop signal (\(Self.signalName($0))): checkpointed at step \(state.step)" }
                    ?? "time limit of \(Int(options.timeLimit)) s: checkpointed at step \(state.step)"
                break
            }
        }
        if options.progress && comm.isRoot { fputs("\n", stderr) }
        return reason
    }

    /// Writes a checkpoint (rank 0), then every rank continues.
    public func checkpoint() throws {
        comm.setWatchdogContext("checkpoint of step \(state.step)")
        if comm.isRoot {
            FaultInjection.slowCheckpoint()
            try store.save(model: model, optimizer: optimizer, state: state, faultInjection: FaultInjection.crashInCheckpoint(step: state.step))
        }
        try comm.barrier()
    }

    /// One optimizer step (with `gradAccumulation` micro-batches). Returns the metrics record
    /// (on every rank; rank 0 logs it).
    func step() throws -> MetricsRecord? {
        FaultInjection.killRankIfRequested(rank: comm.rank, step: state.step + 1)
        comm.setWatchdogContext("step \(state.step + 1)")
        var times = PhaseTimes()
        model.parameters.zeroGradients()
        let lr = Float(config.learningRate(step: state.step, epoch: state.epoch, iteration: state.batchInEpoch))
        var losses: [String: Double] = [:], values: [String: Double] = [:]
        var kept: [Int] = []
        var localFinite = true
        var reduction = ReductionTiming()
        let micro = config.gradAccumulation
        for m in 0..<micro {
            var t0 = ProcessStats.now()
            var batch = try source.batch(epoch: state.epoch, index: state.batchInEpoch)
            if config.globalNegatives && comm.size > 1 { batch = try padToGlobalLength(batch) }
            times.data += ProcessStats.now() - t0
            // Per-step randomness: the same on resume, different on every rank. With global
            // negatives, masking and negative sampling draw from one stream shared by all ranks
            // (indexed by global row), as one process with the whole batch would.
            let stepSeed = state.stepGenerator.next()
            let seed = stepSeed ^ (UInt64(comm.rank) &* 0xD1B5_4A32_D192_ED03)
            var context = StepContext(seed: seed, dropout: config.dropout, samplingSeed: config.globalNegatives ? stepSeed : nil)
            context.progress = TrainingProgress(epoch: state.epoch, iteration: state.batchInEpoch, iterationsPerEpoch: source.batchesPerEpoch)
            context.exchange = exchange
            context.globalNegatives = config.globalNegatives
            t0 = ProcessStats.now()
            let out = try model.step(batch, context: &context)
            times.forward += ProcessStats.now() - t0
            let injectNaN = FaultInjection.nonFiniteLoss(step: state.step + 1)
            for (name, loss) in out.losses { losses[name, default: 0] += (injectNaN ? .nan : Double(loss.scalar)) / Double(micro) }
            values = out.scalars
            kept = out.keptIndices.map { $0.first?.count ?? 0 }
            localFinite = localFinite && out.total.scalar.isFinite && !injectNaN
            t0 = ProcessStats.now()
            let last = m == micro - 1
            let loss = injectNaN ? out.total.scaled(.nan) : micro > 1 ? out.total.scaled(1 / Float(micro)) : out.total
            if last { try beginReduction() }
            defer { Autograd.onParameterGradientFinal = nil }
            try Autograd.backward(from: loss)
            times.backward += ProcessStats.now() - t0
            if last {
                t0 = ProcessStats.now()
                reduction = try reducer.finish()
                if learnedBucketOrder == nil { try learnBucketOrder() }
                times.communication += ProcessStats.now() - t0
            }
            state.batchInEpoch += 1
            if state.batchInEpoch >= source.batchesPerEpoch {
                state.batchInEpoch = 0
                state.epoch += 1
            }
        }
        var t0 = ProcessStats.now()
        let gradients = model.parameters.gradients
        let sumSquares = Self.sumOfSquares(gradients)
        localFinite = localFinite && sumSquares.isFinite
        let anyBad = try comm.anyRankNonFinite(localFlag: !localFinite)
        times.communication += ProcessStats.now() - t0
        var norm = Float(sumSquares.squareRoot())
        t0 = ProcessStats.now()
        if anyBad {
            state.skippedSteps += 1
            nonFiniteInARow += 1
            let origin = Autograd.firstNonFinite.map { " First non-finite value: \($0)." } ?? ""
            warn("step \(state.step + 1): non-finite loss or gradient on some rank; step skipped on all ranks (\(nonFiniteInARow) in a row).\(origin)")
            Autograd.clearAnomaly()
            if nonFiniteInARow >= config.maxNonFiniteInARow {
                // Raised by run() once this step's record is in metrics.jsonl.
                let parts = losses.keys.sorted().map { "\($0) \(losses[$0]!)" }.joined(separator: ", ")
                divergence = TrainError.diverged("\(nonFiniteInARow) steps in a row (up to step \(state.step + 1)) had a non-finite loss or gradient, the limit train.max_nonfinite_in_a_row is \(config.maxNonFiniteInARow) (last losses: \(parts), lr \(lr)); lower the learning rate or check the data")
            }
        } else {
            nonFiniteInARow = 0
            if config.gradClip > 0 && norm > config.gradClip {
                let scale = config.gradClip / norm
                for i in 0..<gradients.count { gradients[i] *= scale }
                norm = config.gradClip
            }
            optimizer.update(lr: lr)
        }
        times.optimizer += ProcessStats.now() - t0
        state.step += 1
        // Data counters (e.g. bad records skipped so far) summed over ranks: each rank reads its own
        // shards, and the record speaks for the job. Every rank has the same source type, so the
        // same keys.
        let counters = source.dataCounters.sorted { $0.key < $1.key }
        if !counters.isEmpty {
            var totals = counters.map(\.value)
            try comm.allReduce(&totals, op: .sum)
            for (i, c) in counters.enumerated() { values[c.key] = totals[i] }
        }
        return MetricsRecord(step: state.step, epoch: state.epoch, losses: losses, values: values, lr: Double(lr),
                             gradNorm: Double(norm),
                             imagesPerSecond: Double(config.batchSize * micro * comm.size) / max(times.total, 1e-9),
                             times: times, keptTokens: kept, residentMB: Double(ProcessStats.residentBytes()) / 1_048_576,
                             skipped: anyBad, allReduceHiddenShare: reduction.hiddenShare)
    }

    /// sum g^2 over the arena in double, in fixed chunks combined in order (deterministic).
    static func sumOfSquares(_ x: UnsafeMutableBufferPointer<Float>) -> Double {
        guard let base = x.baseAddress, x.count > 0 else { return 0 }
        let chunks = Threads.chunkCount(x.count, grain: 1 << 18)
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { out in
            Threads.parallelFor(x.count, grain: 1 << 18) { r in
                out[Threads.chunkIndex(of: r.lowerBound, chunks: chunks, n: x.count)] = elip_sum_squares(base + r.lowerBound, Int64(r.count))
            }
        }
        return partial.reduce(0, +)
    }

    /// Starts the bucketed all-reduce and feeds it as backward finishes parameters: each
    /// parameter's range of the arena (padding included) is marked final when backward is done
    /// with it, and a bucket goes out once all of it is final, in the plan's order. The order in
    /// which parameters finish is recorded for `learnBucketOrder`.
    func beginReduction() throws {
        try reducer.begin(buffer: model.parameters.gradients)
        let entries = model.parameters.entries
        let reducer = self.reducer
        let observed = FinishOrder()
        Autograd.onParameterGradientFinal = { p in
            guard let i = p.parameterIndex, i < entries.count else { return }
            observed.indices.append(i)
            try reducer.markReady(entries[i].offset..<(entries[i].offset + entries[i].paddedCount))
        }
        self.observedFinishOrder = observed
    }

    final class FinishOrder { var indices: [Int] = [] }
    var observedFinishOrder: FinishOrder?

    /// After the first backward of the process: buckets are issued from then on in the order
    /// their last parameter was finished (parameters the step did not use go last). Rank 0's
    /// observation is broadcast, so every rank issues the same sequence whatever the model's
    /// parameter creation order.
    func learnBucketOrder() throws {
        let entries = model.parameters.entries
        var finished = [Int?](repeating: nil, count: entries.count)
        for (t, i) in (observedFinishOrder?.indices ?? []).enumerated() where finished[i] == nil { finished[i] = t }
        // Element -> parameter: entries are in offset order.
        let starts = entries.map(\.offset)
        let count = model.parameters.used
        let order = try BucketPlan.orderByCompletion(count: count, bucketElements: reducer.bucketElements) { range in
            var first = 0, lo = 0, hi = starts.count
            while lo < hi { let mid = (lo + hi) / 2; if starts[mid] <= range.lowerBound { first = mid; lo = mid + 1 } else { hi = mid } }
            var latest: Int? = -1
            var i = first
            while i < entries.count && starts[i] < range.upperBound {
                guard let t = finished[i] else { return nil }
                latest = max(latest ?? -1, t)
                i += 1
            }
            return latest
        }
        var agreed = order.map(Int64.init)
        try comm.broadcast(&agreed)
        let final = agreed.map { Int($0) }
        try reducer.setIssueOrder(final, count: count)
        learnedBucketOrder = final
        observedFinishOrder = nil
    }

    /// Gathers and sums across ranks for the model (nil on a single process).
    lazy var exchange: FeatureExchange? = comm.size > 1 ? CommunicatorExchange(comm) : nil

    /// Pads the captions to the longest on any rank (global negatives gather text states).
    func padToGlobalLength(_ batch: ImageTextBatch) throws -> ImageTextBatch {
        let t = batch.text
        let length = Int(try comm.allReduce(Int64(t.length), op: .max))
        guard length > t.length else { return batch }
        var ids: [Int] = [], mask: [Int] = []
        for r in 0..<t.batch {
            ids += t.ids[(r * t.length)..<((r + 1) * t.length)] + [Int](repeating: 0, count: length - t.length)
            mask += t.mask[(r * t.length)..<((r + 1) * t.length)] + [Int](repeating: 0, count: length - t.length)
        }
        return ImageTextBatch(images: batch.images, text: try TextBatch(ids: ids, mask: mask, batch: t.batch, length: length))
    }

    func progressLine(_ r: MetricsRecord, started: Double, fromStep: Int) {
        let elapsed = ProcessStats.now() - started
        let done = max(state.step - fromStep, 1)
        let eta = elapsed / Double(done) * Double(max(stopStep - state.step, 0))
        let parts = r.losses.keys.sorted().map { String(format: "%@ %.3f", $0, r.losses[$0]!) }.joined(separator: " ")
        let line = String(format: "step %d/%d  epoch %d  loss %.3f (%@)  lr %.2e  %.1f img/s  ETA %@",
                          state.step, stopStep, state.epoch, r.totalLoss, parts, r.lr, r.imagesPerSecond, Trainer.duration(eta))
        if isatty(fileno(stderr)) != 0 {
            fputs("\r\u{1B}[K" + line, stderr)
        } else if state.step % config.logEvery == 0 || state.step == stopStep {
            fputs(line + "\n", stderr)
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t % 3600 / 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }

    static func installSignalHandlers() {
        let handler: @convention(c) (Int32) -> Void = { sig in
            if sig == SIGINT && stopSignalReceived == SIGINT { _exit(130) }
            stopSignalReceived = sig
        }
        signal(SIGTERM, handler)
        signal(SIGUSR1, handler)
        signal(SIGINT, handler)
    }

    static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(sig)"
        }
    }
}

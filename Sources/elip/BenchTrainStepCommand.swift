import ArgumentParser
import CKernels
import Dispatch
import ELIPEval
import ELIPImage
import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import ELIPTrain
import Foundation

struct BenchTrainStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Times full ELIP pre-training steps on synthetic inputs.",
        discussion: """
        One step = the model's whole pre-training step (for ALBEF: text encoders, the pruned ViT \
        with its scoring passes, the momentum model, ITC / ITM / MLM), backward and AdamW, exactly as \
        `elip train` runs it on one rank. Inputs are \
        random images and captions of --text-length tokens (a few padded). After --warmup steps, \
        --steps steps are timed; the report gives the median seconds per step, images/s, the FLOP \
        count of the step (2 m n k summed over every sgemm that ran, so pruning is included), \
        effective GFLOP/s against the measured FMA peak and sgemm peak, time per phase and per op \
        kind (non-GEMM time; forward ops are charged the time since the previous op finished), and \
        resident memory. Build with -c release.

        FLOPs by module (the paper's Figure 2(b)): the step's sgemm FLOPs in the vision encoder \
        (the pruned ViT, its scoring passes and the momentum ViT), the text encoder (and its \
        momentum copy), the fusion layers (ALBEF's fusion BERT; BLIP's image-grounded encoder and \
        decoder) and the rest, forward only and forward+backward (a backward GEMM counts for the \
        module of the op it differentiates). --variants look_ahead,none shows them with and \
        without pruning; --flops-chart draws them as stacked bars.
        """
    )
    @Option(help: "Training config (model and optimizer sections); default: --preset.")
    var config: String?
    @Option(help: "Built-in model when no --config: albef-base (ViT-B/16 at 256 px + BERT-base, SPEC §3), blip-base (ViT-B/16 at 224 px + BLIP's BERT-base encoder and decoder), meter-base (CLIP ViT-B/16 at 288 px + RoBERTa-base + 6 co-attention pairs; use --text-length 50) or meter-base-clip32 (CLIP ViT-B/32 at 224 px); `elip info` lists the presets.")
    var preset = "albef-base"
    @Option(help: "A fine-tuning task's step at base size instead of pre-training: ve, nlvr2, retrieval or vqa (the albef-<task>-base preset, with labels, a second image per sentence, image ids or answers as the task's loader gives them).")
    var task: String?
    @Option(help: "Images per step.")
    var batch = 4
    @Option(help: "Caption length in tokens.")
    var textLength = 25
    @Option(help: "Timed steps.")
    var steps = 5
    @Option(help: "Untimed steps first (allocator and BLAS warm-up).")
    var warmup = 1
    @Flag(help: "Turn ELIP pruning off (the ALBEF baseline).")
    var noPrune = false
    @Option(help: "Override the pruning scoring: look_ahead (the paper's) or inline (ablation).")
    var scoring: String?
    @Option(help: """
        Compare pruning variants side by side in this one process (same model and inputs), steps \
        taken round-robin so machine noise hits all alike: a comma list of look_ahead, inline and \
        none (no pruning), e.g. look_ahead,none,inline. Reports each variant and its speed \
        relative to the first.
        """)
    var variants: String?
    @Flag(help: "Dropout off (evaluation-mode step).")
    var noDropout = false
    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?
    @Flag(help: "Print one JSON line instead of tables.")
    var json = false
    @Option(help: """
        Find the largest batch whose step fits in this much memory (e.g. 16GiB, 512MiB), for each \
        variant (default: the configured pruning and none, i.e. with and without ELIP): fixed memory \
        (weights, gradients, optimizer state, momentum model, queues) plus the step's tensors, \
        measured at each batch tried; reports the batch, its memory and images/s. Runs steps at \
        large batches: slow at base size.
        """)
    var maxBatchForMemory: String?
    @Option(help: "Largest batch --max-batch-for-memory tries.")
    var maxBatchLimit = 4096
    @Option(help: "Write the FLOPs share by module (vision, text, fusion, other; forward and forward+backward, per variant) as a stacked bar chart PNG.")
    var flopsChart: String?
    @Option(help: "Also list the N GEMM shapes that took the most time (per step, summed over the timed steps' calls): calls, seconds, GFLOP/s. 0: off.")
    var gemmShapes = 0

    /// One thing to time: a pruning setting.
    struct Variant {
        let name: String
        let prune: PruneConfig?
    }

    func parseVariants(base: PruneConfig?) throws -> [Variant] {
        guard let variants else {
            return [Variant(name: base.map { $0.scoring.rawValue } ?? "none", prune: base)]
        }
        let schedule = base ?? PruneConfig.albef
        return try variants.split(separator: ",").map { token in
            let mode = String(token)
            var prune: PruneConfig?
            switch mode {
            case "none": prune = nil
            default:
                guard let scoring = PruneScoring(rawValue: mode) else {
                    throw ValidationError("--variants: '\(mode)' is not look_ahead, inline or none")
                }
                prune = schedule
                prune?.scoring = scoring
            }
            return Variant(name: mode, prune: prune)
        }
    }

    struct Measured {
        var times: [Double] = [], flops: [Double] = [], gemmSeconds: [Double] = [], rss: [Double] = [], liveMiB: [Double] = []
        var sections: [[String: Double]] = [], ops: [[String: Double]] = []
        var modules: [ModuleFLOPs] = []
        var shapes: [GEMMShape: GEMMShapeTime] = [:]
    }

    func run() throws {
        try configureThreads(threads)
        BLASKernels.noteIfNarrowedByEnvironment()
        var model: any ModelConfig
        var hyper = AdamW.Hyperparameters()
        var source: String
        if let config {
            var c = try TrainingConfig.load(config)
            // A config with its own vocabulary (e.g. the BLIP demo's) frames the random captions
            // with that vocabulary's special ids, as training would.
            if FileManager.default.fileExists(atPath: c.vocabulary) {
                try c.useVocabulary(of: c.captionTokenizer())
            } else if c.model.specialTokens.cls >= c.model.vocabularySize {
                throw ValidationError("\(config): its vocabulary \(c.vocabulary) is missing, and bert-base's special ids do not fit vocab_size \(c.model.vocabularySize)")
            }
            model = c.model
            hyper = c.optimizer
            source = config
            // Said, not silently skipped: the benchmark's batches are synthetic and its --batch rules.
            if let shards = c.dataDirectory {
                fputs("note: \(config): data.shards (\(shards)) and batch_size are not read; bench train-step times synthetic batches of --batch \(batch)\n", stderr)
            }
        } else {
            let name = try task.map(Self.preset(forTask:)) ?? preset
            do { model = try ModelRegistry.preset(named: name) } catch { throw ValidationError("\(error)") }
            source = "preset \(name)"
        }
        if let task, config != nil {
            throw ValidationError("--task \(task) picks the base-size preset of the task; with --config the config's model decides the step (drop one of them)")
        }
        guard batch >= 1, steps >= 1, warmup >= 0, textLength >= 2 else {
            throw ValidationError("--batch, --steps and --text-length must be positive (--text-length at least 2)")
        }
        guard gemmShapes >= 0 else { throw ValidationError("--gemm-shapes must be 0 (off) or a positive count, got \(gemmShapes)") }
        if let queue = model.featureQueueSize, queue < batch {
            throw ValidationError("\(source): queue_size \(queue) is smaller than the \(batch) features a step of --batch \(batch) enqueues")
        }
        if let maxBatchForMemory {  // bad values fail before the model is built
            _ = try Self.parseMemorySize(maxBatchForMemory)
            guard maxBatchLimit >= 1 else { throw ValidationError("--max-batch-limit must be at least 1, got \(maxBatchLimit)") }
        }
        if noPrune { model.prune = nil }
        if let scoring { model.prune?.scoring = try PruneScoring(parsing: scoring, setting: "--scoring") }
        try OutputGuard.check(flopsChart, option: "--flops-chart", inputs: [OutputGuard.Input("--config", config)])
        let variantList = try parseVariants(base: model.prune)
        // Variants share one schedule (only the scoring differs): check it against the model once.
        if let schedule = variantList.lazy.compactMap(\.prune).first {
            var c = model
            c.prune = schedule
            try c.validate(file: source)
        }

        let isa = String(cString: elip_fma_probe_isa())
        let fmaPeak = BenchOpsCommand.measurePeak(threads: Threads.count)
        let gemmPeak = try Self.measureGEMMPeak()
        let net = try model.makeModel()
        try net.initialiseRandomly(seed: 1)
        let optimizer = AdamW(arena: net.parameters, hyper: hyper, decays: { net.decays(parameter: $0, shape: $1) },
                              lrMultiplier: { net.learningRateMultiplier(parameter: $0) }, variant: net.adamWVariant)
        if let maxBatchForMemory {
            var list = variantList
            if variants == nil, model.prune != nil { list.append(Variant(name: "none", prune: nil)) }
            return try runMaxBatch(budgetText: maxBatchForMemory, model: model, net: net, optimizer: optimizer, variantList: list, isa: isa)
        }
        let input = try Self.syntheticBatch(config: model, batch: batch, length: textLength, seed: 7)
        func describe(_ p: PruneConfig?) -> String {
            p.map { "\($0.scoring.rawValue) (keeps \($0.keepCounts(patchCount: model.keepBase).map(String.init).joined(separator: "/")) of \(model.patchCount))" } ?? "off"
        }
        if !json {
            print("\(task == nil && !model.kind.hasPrefix("albef-") ? "ELIP pre-training" : "fine-tuning") step (\(model.kind)): \(source), batch \(batch), text \(textLength) tokens, threads \(Threads.count)")
            for v in variantList { print("  variant \(v.name): pruning \(describe(v.prune))") }
            print(String(format: "FMA peak %.1f GFLOP/s (%@), sgemm peak %.1f GFLOP/s (M=%d N=2304 K=768, OpenBLAS kernels %@)", fmaPeak, isa, gemmPeak, 4 * 257, BLASKernels.current))
            let frozen = net.stateLayout.arenas.filter { $0.role != .trainable }.reduce(0) { $0 + $1.arena.used }
            print(String(format: "parameters: %.1f M trainable, %.1f M momentum", Double(net.parameters.used) / 1e6, Double(frozen) / 1e6))
        }

        // Parameters, gradients, optimizer moments, momentum model and queues are resident from here
        // on; what the steps add on top is activation and workspace memory.
        net.parameters.zeroGradients()
        let residentBeforeSteps = Double(ProcessStats.residentBytes()) / 1_048_576
        var measured = [Measured](repeating: Measured(), count: variantList.count)
        var step = 0
        for round in 0..<(warmup + steps) {
            for (vi, variant) in variantList.enumerated() {
                net.pruning = variant.prune
                StepProfiler.start()
                GEMMProfiler.recordShapes = gemmShapes > 0
                let (dt, loss, liveBytes) = try Self.trainingStep(net, optimizer, input, seed: UInt64(100 + round), dropout: !noDropout)
                StepProfiler.stop()
                step += 1
                guard loss.isFinite else { throw ValidationError("step \(step): non-finite loss \(loss)") }
                let residentMiB = Double(ProcessStats.residentBytes()) / 1_048_576
                if !json {
                    let tag = round < warmup ? "warm-up" : "step"
                    FileHandle.standardError.write(String(format: "  %@ %d (%@): %.2f s, loss %.3f, RSS %.0f MiB\n", tag, step, variant.name, dt, loss, residentMiB).data(using: .utf8)!)
                }
                guard round >= warmup else { continue }
                measured[vi].times.append(dt)
                measured[vi].flops.append(GEMMProfiler.flops)
                measured[vi].gemmSeconds.append(GEMMProfiler.seconds)
                measured[vi].rss.append(residentMiB)
                measured[vi].liveMiB.append(Double(liveBytes) / 1_048_576)
                measured[vi].sections.append(StepProfiler.sectionSeconds)
                measured[vi].ops.append(StepProfiler.opSeconds)
                measured[vi].modules.append(ModuleFLOPs(sectionFlops: StepProfiler.sectionFlops, backwardFlops: StepProfiler.backwardFlops))
                for (shape, time) in GEMMProfiler.byShape { measured[vi].shapes[shape, default: GEMMShapeTime()].add(time) }
            }
        }

        // Per-key medians across the timed steps.
        func medians(_ rows: [[String: Double]]) -> [String: Double] {
            let keys = Set(rows.flatMap(\.keys))
            return Dictionary(uniqueKeysWithValues: keys.map { k in (k, median(rows.map { $0[k] ?? 0 })) })
        }
        let peakMiB = Double(ProcessStats.peakResidentBytes()) / 1_048_576
        let baseTime = median(measured[0].times)
        var reports: [[String: Any]] = []
        var moduleMedians: [(String, ModuleFLOPs)] = []
        for (v, m) in zip(variantList, measured) {
            let byModule = ModuleFLOPs.median(m.modules)
            moduleMedians.append((v.name, byModule))
            let t = median(m.times), f = median(m.flops), gs = median(m.gemmSeconds)
            let phase = medians(m.sections)
            let covered = phase.filter { !$0.key.contains("/") }.values.reduce(0, +)
            var opKinds = medians(m.ops)
            opKinds["sgemm"] = gs
            let report: [String: Any] = [
                "variant": v.name, "pruning": describe(v.prune),
                "step_seconds_median": t, "step_seconds": m.times, "images_per_second": Double(batch) / t,
                "speedup_vs_first": baseTime / t,
                "gflop_per_step": f / 1e9, "effective_gflops": f / t / 1e9,
                "share_of_fma_peak": f / t / 1e9 / fmaPeak, "share_of_sgemm_peak": f / t / 1e9 / gemmPeak,
                "gemm_seconds": gs, "gemm_gflops": f / gs / 1e9,
                "phase_seconds": phase.merging(["other": max(0, t - covered)]) { a, _ in a },
                "op_seconds": opKinds, "rss_mib_per_step": m.rss,
                "peak_live_tensor_mib": m.liveMiB.max() ?? 0,
                "flops_by_module": Self.moduleReport(byModule),
            ].merging(gemmShapes > 0 ? Self.shapeReport(m.shapes, steps: m.times.count, top: gemmShapes) : [:]) { a, _ in a }
            reports.append(report)
            if json { continue }
            print("\n== \(v.name): pruning \(describe(v.prune))")
            print(String(format: "step %.3f s (median of %d; min %.3f, max %.3f), %.2f images/s, %.2fx the first variant",
                         t, m.times.count, m.times.min()!, m.times.max()!, Double(batch) / t, baseTime / t))
            print(String(format: "FLOP per step %.1f GFLOP (sgemm), effective %.1f GFLOP/s = %.1f%% of FMA peak, %.1f%% of sgemm peak",
                         f / 1e9, f / t / 1e9, 100 * f / t / 1e9 / fmaPeak, 100 * f / t / 1e9 / gemmPeak))
            print(String(format: "sgemm time %.3f s (%.1f%% of the step) at %.1f GFLOP/s", gs, 100 * gs / t, f / gs / 1e9))
            print("\nphase                         seconds   share")
            for (k, val) in phase.sorted(by: { $0.key < $1.key }) {
                let name = k.contains("/") ? "  " + k : k
                print(name.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: "%9.3f  %5.1f%%", val, 100 * val / t))
            }
            print("other".padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: "%9.3f  %5.1f%%", max(0, t - covered), 100 * max(0, t - covered) / t))
            print("\nop kind (non-GEMM time)       seconds   share")
            for (k, val) in opKinds.sorted(by: { $0.value > $1.value }) where val >= 0.0005 {
                print(k.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: "%9.3f  %5.1f%%", val, 100 * val / t))
            }
            Self.printModules(byModule)
            if gemmShapes > 0 { Self.printShapes(m.shapes, steps: m.times.count, top: gemmShapes, stepSeconds: t) }
            print(String(format: "resident memory after the timed steps: %.0f -> %.0f MiB; peak of live step tensors (activations, gradients of non-parameters, workspaces) %.0f MiB",
                         m.rss.first!, m.rss.last!, m.liveMiB.max() ?? 0))
        }
        if let flopsChart {
            let image = try Self.flopsChart(moduleMedians, title: "share of step FLOPs by module: \(model.kind), batch \(batch)")
            do { try PNG.write(image, toFile: flopsChart) } catch { throw ValidationError("--flops-chart \(flopsChart): \(error)") }
            if !json { print("wrote \(flopsChart) (\(image.width)x\(image.height))") }
        }
        if json {
            let all: [String: Any] = [
                "source": source, "batch": batch, "text_length": textLength, "threads": Threads.count, "isa": isa, "blas_kernels": BLASKernels.current,
                "fma_peak_gflops": fmaPeak, "sgemm_peak_gflops": gemmPeak, "steps": steps, "peak_rss_mib": peakMiB,
                "rss_before_steps_mib": residentBeforeSteps, "peak_step_memory_mib": peakMiB - residentBeforeSteps,
                "variants": reports,
            ]
            let data = try JSONSerialization.data(withJSONObject: all, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "\npeak resident memory of the process: %.0f MiB (%.0f MiB before the first step: weights, gradients, optimizer state, momentum model, queues; the steps add up to %.0f MiB)",
                         peakMiB, residentBeforeSteps, peakMiB - residentBeforeSteps))
        }
    }

    /// The `top` GEMM shapes by time.
    static func slowestShapes(_ shapes: [GEMMShape: GEMMShapeTime], top: Int) -> ArraySlice<(key: GEMMShape, value: GEMMShapeTime)> {
        shapes.sorted { $0.value.seconds > $1.value.seconds }.prefix(top)
    }

    /// JSON keys `gemm_shapes` (the `top` rows, per step) and `gemm_shapes_gflop_per_step` (every
    /// shape: equals the step's sgemm FLOPs, each call counted once).
    static func shapeReport(_ shapes: [GEMMShape: GEMMShapeTime], steps: Int, top: Int) -> [String: Any] {
        let n = Double(max(steps, 1))
        let rows: [[String: Any]] = slowestShapes(shapes, top: top).map { shape, time in
            ["shape": shape.description, "calls_per_step": Double(time.calls) / n, "seconds_per_step": time.seconds / n,
             "gflops": time.seconds > 0 ? time.flops / time.seconds / 1e9 : 0]
        }
        return ["gemm_shapes": rows, "gemm_shapes_gflop_per_step": shapes.values.reduce(0) { $0 + $1.flops } / n / 1e9]
    }

    /// The `top` GEMM shapes by time, per step.
    static func printShapes(_ shapes: [GEMMShape: GEMMShapeTime], steps: Int, top: Int, stepSeconds: Double) {
        let n = Double(max(steps, 1))
        print("\nGEMM shape (row-major op(A) m x k, op(B) k x n)      calls/step   s/step  share  GFLOP/s")
        for (shape, time) in slowestShapes(shapes, top: top) {
            print(shape.description.padding(toLength: 52, withPad: " ", startingAt: 0)
                  + String(format: "%10.1f %8.3f %5.1f%% %8.1f", Double(time.calls) / n, time.seconds / n,
                           100 * time.seconds / n / stepSeconds, time.seconds > 0 ? time.flops / time.seconds / 1e9 : 0))
        }
    }

    /// One training step as `elip train` runs it on one rank (zero-grad, step, backward, AdamW),
    /// in profiler sections: its seconds, loss and the peak bytes of tensors it allocated on top
    /// of those alive before it (activations, non-parameter gradients, workspaces).
    static func trainingStep(_ net: any TrainableModel, _ optimizer: AdamW, _ input: ImageTextBatch,
                             seed: UInt64, dropout: Bool) throws -> (seconds: Double, loss: Float, liveBytes: Int) {
        CachingAllocator.shared.resetPeak()
        let liveBefore = CachingAllocator.shared.statistics.bytesInUse
        let t0 = ProcessStats.now()
        StepProfiler.begin("zero-grad")
        net.parameters.zeroGradients()
        StepProfiler.end()
        var context = StepContext(seed: seed, dropout: dropout)
        context.progress = .steadyState
        let out = try net.step(input, context: &context)
        StepProfiler.begin("backward")
        try Autograd.backward(from: out.total)
        StepProfiler.end()
        StepProfiler.begin("optimizer")
        optimizer.update(lr: 1e-4)
        StepProfiler.end()
        let seconds = ProcessStats.now() - t0
        return (seconds, out.total.scalar, CachingAllocator.shared.statistics.peakBytesInUse - liveBefore)
    }

    static let moduleNames = ["vision": "vision encoder", "text": "text encoder", "fusion": "fusion", "other": "other"]

    static func moduleReport(_ m: ModuleFLOPs) -> [String: Any] {
        var forward: [String: Double] = [:], backward: [String: Double] = [:], fShare: [String: Double] = [:], tShare: [String: Double] = [:]
        for k in ModuleFLOPs.modules {
            forward[k] = (m.forward[k] ?? 0) / 1e9
            backward[k] = (m.backward[k] ?? 0) / 1e9
            fShare[k] = m.forwardShare(k)
            tShare[k] = m.trainingShare(k)
        }
        return ["forward_gflop": forward, "backward_gflop": backward, "forward_share": fShare, "forward_backward_share": tShare,
                "scoring_forward_gflop": m.scoring / 1e9, "momentum_forward_gflop": m.momentum / 1e9]
    }

    static func printModules(_ m: ModuleFLOPs) {
        print("\nsgemm FLOPs by module         forward GFLOP  share   fwd+bwd GFLOP  share")
        for k in ModuleFLOPs.modules {
            let f = m.forward[k] ?? 0, t = f + (m.backward[k] ?? 0)
            print(moduleNames[k]!.padding(toLength: 28, withPad: " ", startingAt: 0)
                  + String(format: "%14.2f %5.1f%% %15.2f %5.1f%%", f / 1e9, 100 * m.forwardShare(k), t / 1e9, 100 * m.trainingShare(k)))
        }
        print(String(format: "(vision includes %.2f GFLOP of pruning scoring passes; vision, text and fusion include %.2f GFLOP of the momentum model, forward only)",
                     m.scoring / 1e9, m.momentum / 1e9))
    }

    /// The stacked bar chart of --flops-chart: per variant, a forward and a forward+backward bar.
    static func flopsChart(_ variants: [(String, ModuleFLOPs)], title: String) throws -> RGBImage {
        let colors = [RGB(66, 114, 196), RGB(237, 125, 49), RGB(112, 173, 71), RGB(150, 150, 150)]
        var bars: [(label: String, shares: [Double])] = []
        for (name, m) in variants {
            // "910 GFLOP", "1007 GFLOP", "0.231 GFLOP": no exponents under the bars.
            func gflop(_ f: Double) -> String { String(format: f >= 1e11 ? "%.0f GFLOP" : "%.3g GFLOP", f / 1e9) }
            bars.append(("\(name)\nforward\n\(gflop(m.forwardTotal))", ModuleFLOPs.modules.map { m.forwardShare($0) }))
            bars.append(("\(name)\nfwd+bwd\n\(gflop(m.trainingTotal))", ModuleFLOPs.modules.map { m.trainingShare($0) }))
        }
        let chart = StackedBarChart(title: title, bars: bars, segments: zip(ModuleFLOPs.modules, colors).map { (moduleNames[$0]!, $1) })
        return try chart.render()
    }

    /// sgemm GFLOP/s on the ViT-B qkv shape (best of 5): the GEMM ceiling the step can reach.
    static func measureGEMMPeak() throws -> Double {
        let m = 4 * 257, n = 2304, k = 768
        let a = Tensor.full([m * k], 0.01), b = Tensor.full([k * n], 0.02), c = Tensor.zeros([m * n])
        try GEMM.run(a, b, into: c, transB: true, m: m, n: n, k: k)
        var best = 0.0
        for _ in 0..<5 {
            let t0 = ProcessStats.now()
            try GEMM.run(a, b, into: c, transB: true, m: m, n: n, k: k)
            best = max(best, 2.0 * Double(m * n * k) / (ProcessStats.now() - t0) / 1e9)
        }
        return best
    }

    /// Random normalised images and captions: [CLS] + random word pieces, the last few rows
    /// padded; plus what a fine-tuning task's step needs (`addTaskInputs`).
    static func syntheticBatch(config: any ModelConfig, batch: Int, length: Int, seed: UInt64) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed)
        let res = config.imageRes, special = config.specialTokens
        let pixels = (0..<(batch * 3 * res * res)).map { _ in g.nextNormal() }
        var ids: [Int] = [], mask: [Int] = []
        // Word ids from 1000 on (past bert-base's special and unused rows), or from 5 in a small vocabulary.
        let vocab = config.vocabularySize, firstWord = vocab > 2000 ? 1000 : min(5, vocab - 1)
        for b in 0..<batch {
            let used = max(2, length - 3 * (b % 3))  // some captions shorter than the batch length
            for j in 0..<length {
                let real = j < used
                ids.append(!real ? special.pad : j == 0 ? special.cls : j == used - 1 ? special.sep : firstWord + Int(g.next() % UInt64(max(1, vocab - firstWord))))
                mask.append(real ? 1 : 0)
            }
        }
        let plain = ImageTextBatch(images: try Tensor(pixels, shape: [batch, 3, res, res]),
                                   text: try TextBatch(ids: ids, mask: mask, batch: batch, length: length))
        return try addTaskInputs(plain, config: config, seed: seed)
    }
}

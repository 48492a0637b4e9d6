import ArgumentParser
import CKernels
import Dispatch
import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (build with -c release for meaningful numbers).",
        subcommands: [BenchOpsCommand.self, BenchDataCommand.self, BenchLoaderCommand.self, BenchTrainStepCommand.self]
    )
}

struct BenchOpsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "FMA peak, cblas_sgemm GFLOP/s on ViT-B/16 shapes, and one ViT-B/16 layer forward+backward.",
        discussion: """
        1. FMA peak: every thread runs independent vector FMAs; the best of several runs. \
        2. sgemm on the GEMMs of a ViT-B/16 layer at batch 4 x 257 tokens (M = 1028), forward and
           backward shapes, median of --repeats runs, as a share of the measured peak.
        3. A ViT-B/16 block (dim 768, 12 heads, MLP 3072) forward+backward at batch 4, 257 tokens:
           median step time split into GEMM time and everything else; resident memory and page
           faults over --steps steps (a flat line shows the caching allocator at work).
        """
    )
    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?
    @Option(help: "Timed repetitions per GEMM shape.")
    var repeats = 10
    @Option(help: "Layer steps to time.")
    var steps = 20
    @Flag(help: "Print one JSON object instead of tables.")
    var json = false

    func run() throws {
        try configureThreads(threads)
        let n = Threads.count
        var report: [String: Any] = ["threads": n, "isa": String(cString: elip_fma_probe_isa()), "blas_kernels": BLASKernels.current]
        let peak = Self.measurePeak(threads: n)
        report["fma_peak_gflops"] = peak
        if !json { print(String(format: "threads %d, FMA peak %.1f GFLOP/s (%@), OpenBLAS kernels %@", n, peak, String(cString: elip_fma_probe_isa()), BLASKernels.current)) }

        // ViT-B/16 GEMMs at batch 4 x 257 tokens: (name, m, n, k, transA, transB).
        let m = 4 * 257
        let shapes: [(String, Int, Int, Int, Bool, Bool)] = [
            ("qkv fwd     X W^T", m, 2304, 768, false, true),
            ("proj fwd    X W^T", m, 768, 768, false, true),
            ("fc1 fwd     X W^T", m, 3072, 768, false, true),
            ("fc2 fwd     X W^T", m, 768, 3072, false, true),
            ("qkv dX      dY W", m, 768, 2304, false, false),
            ("qkv dW      dY^T X", 2304, 768, m, true, false),
            ("fc1 dX      dY W", m, 768, 3072, false, false),
            ("fc1 dW      dY^T X", 3072, 768, m, true, false),
            ("fc2 dW      dY^T X", 768, 3072, m, true, false),
        ]
        var gemms: [[String: Any]] = []
        if !json { print("\nGEMM (M x N x K)                          GFLOP/s   % of peak") }
        for (name, mm, nn, kk, ta, tb) in shapes {
            let a = Tensor.full([mm * kk], 0.01), b = Tensor.full([kk * nn], 0.02), c = Tensor.zeros([mm * nn])
            try GEMM.run(a, b, into: c, transA: ta, transB: tb, m: mm, n: nn, k: kk)  // warm-up
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = ProcessStats.now()
                try GEMM.run(a, b, into: c, transA: ta, transB: tb, m: mm, n: nn, k: kk)
                times.append(ProcessStats.now() - t0)
            }
            let gf = 2.0 * Double(mm * nn * kk) / median(times) / 1e9
            gemms.append(["name": name, "m": mm, "n": nn, "k": kk, "gflops": gf, "share_of_peak": gf / peak])
            if !json { print(String(format: "%@ %5d x %5d x %5d  %8.1f   %5.1f%%", name.padding(toLength: 20, withPad: " ", startingAt: 0), mm, nn, kk, gf, 100 * gf / peak)) }
        }
        report["gemm"] = gemms

        // One ViT-B/16 block forward + backward.
        let arena = ParameterArena(capacity: 1 << 24)
        let block = try VisionTransformer.block(Scope(arena: arena), config: VisionConfig())
        var g = SeededGenerator(seed: 1)
        for t in arena.tensors { try t.assign((0..<t.count).map { _ in g.nextNormal() * 0.02 }) }
        for t in [block.norm1.weight, block.norm2.weight] { try t.assign([Float](repeating: 1, count: 768)) }
        let x = try Tensor((0..<(m * 768)).map { _ in g.nextNormal() }, shape: [4, 257, 768]).requiringGrad()
        var stepTimes: [Double] = [], gemmTimes: [Double] = [], rss: [Int] = [], faults: [Int] = []
        var flops = 0.0
        GEMMProfiler.enabled = true
        for _ in 0..<(steps + 2) {
            GEMMProfiler.reset()
            let t0 = ProcessStats.now()
            let y = try block(x)
            try Autograd.backward(from: y.sum())
            stepTimes.append(ProcessStats.now() - t0)
            gemmTimes.append(GEMMProfiler.seconds)
            flops = GEMMProfiler.flops
            arena.zeroGradients()
            x.zeroGradient()
            rss.append(ProcessStats.residentBytes())
            faults.append(ProcessStats.pageFaults())
        }
        GEMMProfiler.enabled = false
        // The first two steps warm the allocator and BLAS buffers.
        let steady = Array(stepTimes.dropFirst(2)), steadyGemm = Array(gemmTimes.dropFirst(2))
        let t = median(steady), tg = median(steadyGemm)
        let rssSteady = Array(rss.dropFirst(2)), faultsSteady = Array(faults.dropFirst(2))
        let layer: [String: Any] = [
            "step_seconds": t, "gemm_seconds": tg, "non_gemm_share": (t - tg) / t,
            "gemm_gflops": flops / tg, "step_gflops": flops / t,
            "rss_mib_first": Double(rssSteady.first ?? 0) / 1048576, "rss_mib_last": Double(rssSteady.last ?? 0) / 1048576,
            "page_faults_during_steady_steps": (faultsSteady.last ?? 0) - (faultsSteady.first ?? 0),
        ]
        report["vit_b_layer"] = layer
        if json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "\nViT-B/16 block fwd+bwd, batch 4 x 257 tokens (median of %d steps)", steps))
            print(String(format: "  step %.1f ms = GEMM %.1f ms + other %.1f ms (other %.1f%%)", t * 1e3, tg * 1e3, (t - tg) * 1e3, 100 * (t - tg) / t))
            print(String(format: "  GEMM %.1f GFLOP/s, whole step %.1f GFLOP/s (%.1f GFLOP per step)", flops / tg / 1e9, flops / t / 1e9, flops / 1e9))
            print(String(format: "  resident memory %.1f MiB -> %.1f MiB over %d steps, %d page faults after warm-up",
                         Double(rssSteady.first ?? 0) / 1048576, Double(rssSteady.last ?? 0) / 1048576, steps,
                         (faultsSteady.last ?? 0) - (faultsSteady.first ?? 0)))
        }
    }

    /// Runs the FMA probe on every thread at once for a fixed number of iterations; best of 5.
    static func measurePeak(threads: Int) -> Double {
        var best = 0.0
        let iterations: Int64 = 20_000_000
        for _ in 0..<5 {
            let t0 = ProcessStats.now()
            let flops = UnsafeMutablePointer<Double>.allocate(capacity: threads)
            defer { flops.deallocate() }
            DispatchQueue.concurrentPerform(iterations: threads) { i in flops[i] = elip_fma_probe(iterations) }
            let dt = ProcessStats.now() - t0
            best = max(best, (0..<threads).reduce(0.0) { $0 + flops[$1] } / dt / 1e9)
        }
        return best
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

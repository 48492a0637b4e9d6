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
        abstract: "FMA peak, cblas_sgemm GFLOP/s on ViT-B/16 shapes, and each backbone's block kinds forward+backward (GEMM vs the rest).",
        discussion: """
        1. FMA peak: every thread runs independent vector FMAs; the best of several runs. \
        2. sgemm on the GEMMs of a ViT-B/16 layer at batch 4 x 257 tokens (M = 1028), forward and
           backward shapes, median of --repeats runs, as a share of the measured peak.
        3. The engine's row-wise kernels (softmax, attention's softmax backward, GELU, QuickGELU,
           AdamW) on one thread, nanoseconds per element: each should run at vector speed.
        4. A ViT-B/16 block (dim 768, 12 heads, MLP 3072) forward+backward at batch 4, 257 tokens:
           median step time split into GEMM time and everything else; resident memory and page
           faults over --steps steps (a flat line shows the caching allocator at work).
        5. The same split for every backbone's other block kinds at base size and batch 4: the
           CLIP block (QuickGELU) of METER, the BERT fusion layer (padded text attending the
           image), BLIP's causal decoder layer, METER's two co-attention layers.
        """
    )
    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?
    @Option(help: "Timed repetitions per GEMM shape and per kernel.")
    var repeats = 10
    @Option(help: "Layer steps to time.")
    var steps = 20
    @Flag(help: "Print one JSON object instead of tables.")
    var json = false

    func run() throws {
        try configureThreads(threads)
        BLASKernels.noteIfNarrowedByEnvironment()
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

        let kernels = Self.measureKernels(repeats: repeats)
        report["kernels_ns_per_element"] = Dictionary(uniqueKeysWithValues: kernels)
        if !json {
            print("\nRow-wise kernels, one thread, 1M elements (rows of 257 as attention scores)   ns/element")
            for (name, ns) in kernels { print(name.padding(toLength: 78, withPad: " ", startingAt: 0) + String(format: " %7.3f", ns)) }
        }

        // One ViT-B/16 block forward + backward, then the other backbones' block kinds.
        let vit = try Self.measureBlock(BlockBench.all[0], steps: steps)
        report["vit_b_layer"] = vit.report
        var blocks = [vit]
        for bench in BlockBench.all.dropFirst() { blocks.append(try Self.measureBlock(bench, steps: steps)) }
        report["blocks"] = blocks.map(\.report)
        if json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "\nViT-B/16 block fwd+bwd, batch 4 x 257 tokens (median of %d steps)", steps))
            print(String(format: "  step %.1f ms = GEMM %.1f ms + other %.1f ms (other %.1f%%)", vit.step * 1e3, vit.gemm * 1e3, (vit.step - vit.gemm) * 1e3, 100 * vit.nonGEMMShare))
            print(String(format: "  GEMM %.1f GFLOP/s, whole step %.1f GFLOP/s (%.1f GFLOP per step)", vit.flops / vit.gemm / 1e9, vit.flops / vit.step / 1e9, vit.flops / 1e9))
            print(String(format: "  resident memory %.1f MiB -> %.1f MiB over %d steps, %d page faults after warm-up",
                         vit.rssFirst / 1048576, vit.rssLast / 1048576, steps, vit.faults))
            print("\nEvery backbone's block kinds, fwd+bwd at batch 4 (median of \(steps) steps; the engine's share is what is not GEMM):")
            print("block                                                     step ms   GEMM ms  other ms   other %")
            for b in blocks {
                print(b.name.padding(toLength: 56, withPad: " ", startingAt: 0)
                      + String(format: " %9.1f %9.1f %9.1f %8.1f%%", b.step * 1e3, b.gemm * 1e3, (b.step - b.gemm) * 1e3, 100 * b.nonGEMMShare))
                let top = b.opSeconds.sorted { $0.value > $1.value }.prefix(5)
                print("    largest non-GEMM ops: " + top.map { String(format: "%@ %.1f ms", $0.key, $0.value * 1e3) }.joined(separator: ", "))
            }
        }
    }

    /// The engine's own element-wise and row-wise kernels on one thread: nanoseconds per element,
    /// median of `repeats`. At vector speed each takes 1-2.5 ns per element on the project's
    /// 2 GHz AVX-512 VM; scalar code was 2.5-8x slower (in-place softmax 11.5 ns, AdamW 4-5.5 ns).
    static func measureKernels(repeats: Int) -> [(String, Double)] {
        let cols = 257, rows = 4096, n = rows * cols
        let buffers = (0..<6).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: n) }
        defer { for p in buffers { p.deallocate() } }
        let (x, y, g, d, m, v) = (buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5])
        var state: UInt32 = 12345
        for i in 0..<n {  // scores in [-4, 4), gradients of 1e-3
            state = state &* 1_664_525 &+ 1_013_904_223
            x[i] = Float(state >> 8) / Float(1 << 24) * 8 - 4
            g[i] = x[i] * 1e-3
        }
        elip_softmax_rows(x, y, Int64(rows), Int64(cols))
        // (name, untimed preparation, timed kernel). Inputs are restored before each run where a
        // kernel would otherwise shrink its own input into subnormals.
        let cases: [(String, () -> Void, () -> Void)] = [
            ("softmax, in place", {}, { elip_softmax_rows(y, y, Int64(rows), Int64(cols)) }),
            ("attention softmax backward, in place", { d.update(from: g, count: n) },
             { elip_softmax_backward_scaled_rows(y, d, Int64(rows), Int64(cols), 0.125) }),
            ("GELU forward", {}, { elip_gelu_forward(x, d, Int64(n)) }),
            ("GELU backward", { d.update(repeating: 0, count: n) }, { elip_gelu_backward(x, g, d, Int64(n)) }),
            ("QuickGELU forward", {}, { elip_quick_gelu_forward(x, d, Int64(n)) }),
            ("AdamW update", { d.update(from: y, count: n); m.update(repeating: 0, count: n); v.update(repeating: 0, count: n) },
             { elip_adamw(d, g, m, v, Int64(n), 1e-4, 0.02, 0.9, 0.999, 1e-8, 1e-4, 1) }),
        ]
        return cases.map { name, prepare, kernel in
            prepare()
            kernel()  // warm-up
            var times: [Double] = []
            for _ in 0..<max(1, repeats) {
                prepare()
                let t0 = ProcessStats.now()
                kernel()
                times.append(ProcessStats.now() - t0)
            }
            return (name, median(times) / Double(n) * 1e9)
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

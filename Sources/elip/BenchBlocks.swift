import ELIPEncoders
import ELIPNN
import ELIPTensor
import Foundation

/// One block kind of a backbone at base size, batch 4, for `elip bench ops`: how much of its
/// forward+backward is GEMM and how much the engine's own ops (norms, softmax, activations,
/// masks, copies). Issue 17 asks the latter to stay at or under 15% for every backbone.
struct BlockBench {
    let name: String
    /// Builds the block's parameters in `scope` and returns its forward pass over fresh inputs
    /// (the inputs that need gradients are created by `build`, with `requiringGrad()`).
    let build: (Scope, inout SeededGenerator) throws -> (inputs: [Tensor], forward: () throws -> Tensor)

    static let batch = 4

    static func normal(_ shape: [Int], _ g: inout SeededGenerator) throws -> Tensor {
        try Tensor((0..<shape.reduce(1, *)).map { _ in g.nextNormal() }, shape: shape).requiringGrad()
    }

    /// Key padding for `batch` texts of `length` tokens whose last quarter of rows 1 and 3 is
    /// padding (BERT's `(1 - mask) * -10000`): the masked softmax path runs as in training.
    static func textPadding(length: Int) -> [Float] {
        (0..<batch).flatMap { b in (0..<length).map { t in b % 2 == 1 && t >= length * 3 / 4 ? -10000 : 0 } }
    }

    /// BERT-base's layer with a cross-attention over 768-wide tokens.
    static func bertLayer(_ s: Scope) throws -> PostNormTransformerLayer {
        try PostNormTransformerLayer(s, hidden: 768, heads: 12, intermediate: 3072, eps: 1e-12, crossAttentionWidth: 768)
    }

    /// A BERT-style layer whose padded text (self-attention, causal for a decoder) attends the image.
    static func textAttendingImage(_ name: String, text: Int, image: Int, causal: Bool) -> BlockBench {
        BlockBench(name: "\(name): \(text) text tokens x \(image) image") { s, g in
            let layer = try bertLayer(s)
            let x = try normal([batch, text, 768], &g), tokens = try normal([batch, image, 768], &g)
            let padding = textPadding(length: text)
            let mask: AttentionMask = causal ? .causal(keyPadding: padding) : .keyPadding(padding)
            return ([x, tokens], { try layer(x, mask: mask, cross: .context(tokens, mask: .none), dropout: nil) })
        }
    }

    static let all: [BlockBench] = [
        BlockBench(name: "ViT-B/16 block, GELU (ALBEF, BLIP): 257 tokens") { s, g in
            let block = try VisionTransformer.block(s, config: VisionConfig())
            let x = try normal([batch, 257, 768], &g)
            return ([x], { try block(x) })
        },
        BlockBench(name: "CLIP ViT-B/16 block, QuickGELU (METER): 325 tokens") { s, g in
            let block = try CLIPVisionTransformer.block(s, config: CLIPVisionConfig())
            let x = try normal([batch, 325, 768], &g)
            return ([x], { try block(x) })
        },
        textAttendingImage("BERT fusion layer (ALBEF)", text: 25, image: 257, causal: false),
        textAttendingImage("BLIP decoder layer, causal", text: 25, image: 197, causal: true),
        textAttendingImage("METER co-attention, text side", text: 50, image: 325, causal: false),
        BlockBench(name: "METER co-attention, image side: 325 tokens x 50 text") { s, g in
            let layer = try bertLayer(s)
            let x = try normal([batch, 325, 768], &g), text = try normal([batch, 50, 768], &g)
            let mask = AttentionMask.keyPadding(textPadding(length: 50))
            return ([x, text], { try layer(x, mask: .none, cross: .context(text, mask: mask), dropout: nil) })
        },
    ]
}

struct BlockTiming {
    let name: String
    let step: Double, gemm: Double, flops: Double
    let rssFirst: Double, rssLast: Double, faults: Int
    /// Non-GEMM seconds per op kind of one extra, profiled step (the profiler's hooks cost a
    /// little, so the timed steps run without them).
    let opSeconds: [String: Double]
    var nonGEMMShare: Double { (step - gemm) / step }
    var report: [String: Any] {
        ["name": name, "step_seconds": step, "gemm_seconds": gemm, "non_gemm_share": nonGEMMShare,
         "gemm_gflops": flops / gemm, "step_gflops": flops / step,
         "rss_mib_first": rssFirst / 1048576, "rss_mib_last": rssLast / 1048576, "page_faults_during_steady_steps": faults,
         "op_seconds": opSeconds]
    }
}

extension BenchOpsCommand {
    /// Median forward+backward time of `bench`'s block over `steps` steps after two warm-up steps
    /// (allocator and BLAS buffers), with the part spent in GEMMs (GEMMProfiler).
    static func measureBlock(_ bench: BlockBench, steps: Int) throws -> BlockTiming {
        let arena = ParameterArena(capacity: 1 << 24)
        var g = SeededGenerator(seed: 1)
        let (inputs, forward) = try bench.build(Scope(arena: arena), &g)
        arena.initialise(seed: 1)  // by layer type, as a model's: LayerNorm weights 1, biases 0
        func step() throws { try Autograd.backward(from: forward().sum()) }
        func clearGradients() {  // outside the timed region: a training step's zeroing is the optimizer's
            arena.zeroGradients()
            for x in inputs { x.zeroGradient() }
        }
        var stepTimes: [Double] = [], gemmTimes: [Double] = [], rss: [Int] = [], faults: [Int] = []
        var flops = 0.0
        GEMMProfiler.enabled = true
        defer { GEMMProfiler.enabled = false }
        for _ in 0..<(steps + 2) {
            GEMMProfiler.reset()
            let t0 = ProcessStats.now()
            try step()
            stepTimes.append(ProcessStats.now() - t0)
            gemmTimes.append(GEMMProfiler.seconds)
            flops = GEMMProfiler.flops
            clearGradients()
            rss.append(ProcessStats.residentBytes())
            faults.append(ProcessStats.pageFaults())
        }
        StepProfiler.start()
        try step()
        StepProfiler.stop()
        clearGradients()
        let ops = StepProfiler.opSeconds
        let rssSteady = rss.dropFirst(2), faultsSteady = faults.dropFirst(2)
        return BlockTiming(name: bench.name, step: median(Array(stepTimes.dropFirst(2))), gemm: median(Array(gemmTimes.dropFirst(2))), flops: flops,
                           rssFirst: Double(rssSteady.first ?? 0), rssLast: Double(rssSteady.last ?? 0),
                           faults: (faultsSteady.last ?? 0) - (faultsSteady.first ?? 0), opSeconds: ops)
    }
}

import ELIPPruning
import ELIPTensor
import Foundation

/// The vision-only vs vision-language attention discrepancy per ViT layer (the paper's Figure
/// 1(a); issue 18 part 3): for each layer i and image, the [CLS]-to-patch attention map of each
/// encoder — the [CLS] query's softmax row over the patch keys, averaged over heads, renormalised
/// to sum 1 over the patches, each encoder on its own tokens — and
///
///     KL(P_model ‖ P_vision_only) = Σ_k p_k log(p_k / q_k)
///
/// averaged over images. This direction measures what is lost when the vision-only map stands in
/// for the vision-language model's (the use a vision-only pruning rule makes of it). Both maps are
/// smoothed as (1 - ε) p + ε / N with ε = `smoothing` (N patches) so an attention weight that
/// underflows to 0 cannot make the divergence infinite; identical maps still give exactly 0.
public enum AttentionDiscrepancy {
    public static let smoothing = 1e-6

    /// Mean KL per layer over the images of `batches` ([B, 3, H, W], normalised; both encoders
    /// must take the same resolution). `model` and `visionOnly` need the same depth and patch count.
    public static func measure(model: any PrunableVisionEncoder, visionOnly: any PrunableVisionEncoder,
                               batches: [Tensor]) throws -> [Double] {
        guard model.blockCount == visionOnly.blockCount else {
            throw TensorError.invalidArgument(op: "attention discrepancy", reason: "the model's ViT has \(model.blockCount) layers, the vision-only ViT \(visionOnly.blockCount)")
        }
        var sums = [Double](repeating: 0, count: model.blockCount)
        var count = 0
        try Autograd.noGrad {
            for images in batches {
                var x = try model.embed(images), y = try visionOnly.embed(images)
                guard x.shape == y.shape else {
                    throw TensorError.invalidArgument(op: "attention discrepancy", reason: "the model's ViT makes tokens \(x.shape), the vision-only ViT \(y.shape)")
                }
                let b = x.shape[0], t = x.shape[1]
                guard t >= 3 else { throw TensorError.invalidArgument(op: "attention discrepancy", reason: "needs at least 2 patch tokens, got \(t - 1)") }
                for layer in 0..<model.blockCount {
                    let p = try headMeanPatchAttention(model.firstQueryAttention(block: layer, x))
                    let q = try headMeanPatchAttention(visionOnly.firstQueryAttention(block: layer, y))
                    for i in 0..<b { sums[layer] += klDivergence(p[i], q[i]) }
                    x = try model.runBlock(layer, x)
                    y = try visionOnly.runBlock(layer, y)
                }
                count += b
            }
        }
        guard count > 0 else { return [] }
        return sums.map { $0 / Double(count) }
    }

    /// Per image, the [CLS] row of `probs` [B, H, 1, T] averaged over heads, without the [CLS]
    /// key and renormalised over the T - 1 patches.
    public static func headMeanPatchAttention(_ probs: Tensor) -> [[Double]] {
        let b = probs.shape[0], heads = probs.shape[1], t = probs.shape[3]
        return probs.withUnsafeBufferPointer { p in
            (0..<b).map { i in
                var row = [Double](repeating: 0, count: t - 1)
                for h in 0..<heads {
                    let base = (i * heads + h) * t
                    for k in 1..<t { row[k - 1] += Double(p[base + k]) }
                }
                let total = row.reduce(0, +)
                return total > 0 ? row.map { $0 / total } : row.map { _ in 1 / Double(t - 1) }
            }
        }
    }

    /// KL(p ‖ q) in nats of two distributions over the same N outcomes, each smoothed as
    /// (1 - ε) x + ε / N; clamped at 0 against rounding (mathematically ≥ 0).
    public static func klDivergence(_ p: [Double], _ q: [Double], smoothing eps: Double = smoothing) -> Double {
        precondition(p.count == q.count && !p.isEmpty, "distributions over different outcomes")
        let uniform = eps / Double(p.count)
        var kl = 0.0
        for k in p.indices {
            let pk = (1 - eps) * p[k] + uniform, qk = (1 - eps) * q[k] + uniform
            kl += pk * log(pk / qk)
        }
        return max(0, kl)
    }
}

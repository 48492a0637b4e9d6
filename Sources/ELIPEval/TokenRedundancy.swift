import ELIPPruning
import ELIPTensor
import Foundation

/// Where attention concentrates and patch tokens become redundant, per ViT layer (the paper's
/// Figure 2(a); issue 18 part 1), on the unpruned encoder:
///
/// - `clsAttentionEntropy[i]`: entropy (nats) of layer i's [CLS]-to-patch attention — the [CLS]
///   query's softmax row over the patch keys, renormalised to sum 1 over the patches — averaged
///   over heads and images. Low: the [CLS] attends to few patches. `normalizedEntropy` divides it
///   by log(patches), 1 being uniform attention.
/// - `patchCosine[i]`: mean cosine similarity over all pairs of distinct patch tokens of layer i's
///   output, averaged over images. High: the tokens carry the same information.
public struct TokenRedundancy: Codable, Equatable {
    public var images = 0
    public var clsAttentionEntropy: [Double] = []
    public var normalizedEntropy: [Double] = []
    public var patchCosine: [Double] = []

    public init() {}

    /// Accumulates the curves over `images` [B, 3, H, W] (normalised), in batches the caller
    /// chooses; call `measure` once per batch, then read the means.
    public static func measure(_ vit: any PrunableVisionEncoder, batches: [Tensor]) throws -> TokenRedundancy {
        var entropySum = [Double](repeating: 0, count: vit.blockCount)
        var cosineSum = entropySum
        var count = 0, patches = 0
        try Autograd.noGrad {
            for images in batches {
                var x = try vit.embed(images)
                let b = x.shape[0], t = x.shape[1], d = x.shape[2]
                guard t >= 3 else { throw TensorError.invalidArgument(op: "token redundancy", reason: "needs at least 2 patch tokens, got \(t - 1)") }
                patches = t - 1
                for layer in 0..<vit.blockCount {
                    let probs = try vit.firstQueryAttention(block: layer, x)  // [B, H, 1, T]
                    let heads = probs.shape[1]
                    probs.withUnsafeBufferPointer { p in
                        for i in 0..<b {
                            var sum = 0.0
                            for h in 0..<heads { sum += entropy(p, row: (i * heads + h) * t, length: t) }
                            entropySum[layer] += sum / Double(heads)
                        }
                    }
                    x = try vit.runBlock(layer, x)
                    x.withUnsafeBufferPointer { v in
                        for i in 0..<b { cosineSum[layer] += meanPairwiseCosine(v, start: (i * t + 1) * d, tokens: t - 1, width: d) }
                    }
                }
                count += b
            }
        }
        var r = TokenRedundancy()
        r.images = count
        guard count > 0 else { return r }
        r.clsAttentionEntropy = entropySum.map { $0 / Double(count) }
        r.normalizedEntropy = r.clsAttentionEntropy.map { $0 / log(Double(patches)) }
        r.patchCosine = cosineSum.map { $0 / Double(count) }
        return r
    }

    /// Entropy of p[row + 1 ..< row + length] renormalised to sum 1 (the [CLS] key at `row` left out).
    public static func entropy(_ p: UnsafeBufferPointer<Float>, row: Int, length: Int) -> Double {
        var total = 0.0
        for k in 1..<length { total += Double(p[row + k]) }
        guard total > 0 else { return 0 }
        var h = 0.0
        for k in 1..<length {
            let q = Double(p[row + k]) / total
            if q > 0 { h -= q * log(q) }
        }
        return h
    }

    /// Mean of cos(u_j, u_k) over pairs j != k of `tokens` rows of `width` from `start`:
    /// (|Σ û|² - n) / (n (n - 1)) with û the unit rows (a zero row counts as zero).
    public static func meanPairwiseCosine(_ v: UnsafeBufferPointer<Float>, start: Int, tokens n: Int, width d: Int) -> Double {
        var sum = [Double](repeating: 0, count: d)
        var units = 0.0
        for j in 0..<n {
            var norm = 0.0
            for c in 0..<d { norm += Double(v[start + j * d + c]) * Double(v[start + j * d + c]) }
            guard norm > 0 else { continue }
            let inv = 1 / norm.squareRoot()
            for c in 0..<d { sum[c] += Double(v[start + j * d + c]) * inv }
            units += 1
        }
        let squared = sum.reduce(0) { $0 + $1 * $1 }
        return n > 1 ? (squared - units) / Double(n * (n - 1)) : 0
    }
}

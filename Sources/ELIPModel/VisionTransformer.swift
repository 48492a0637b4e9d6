import ELIPNN
import ELIPTensor

/// One pre-LN ViT block (timm): x += proj(attn(norm1(x))); x += fc2(gelu(fc1(norm2(x)))).
public final class VisionBlock {
    public let norm1: LayerNorm, qkv: Linear, proj: Linear
    public let norm2: LayerNorm, fc1: Linear, fc2: Linear
    public let heads: Int

    public init(_ scope: Scope, dim: Int, heads: Int, mlpRatio: Double) throws {
        self.heads = heads
        norm1 = try LayerNorm(scope["norm1"], dim: dim, eps: 1e-6)
        qkv = try Linear(scope["attn"]["qkv"], in: dim, out: 3 * dim)
        proj = try Linear(scope["attn"]["proj"], in: dim, out: dim)
        norm2 = try LayerNorm(scope["norm2"], dim: dim, eps: 1e-6)
        let hidden = Int(Double(dim) * mlpRatio)
        fc1 = try Linear(scope["mlp"]["fc1"], in: dim, out: hidden)
        fc2 = try Linear(scope["mlp"]["fc2"], in: hidden, out: dim)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let a = try qkv(norm1(x)).packedSelfAttention(heads: heads).output
        let h = try x + proj(a)
        return try h + fc2(fc1(norm2(h)).gelu())
    }

    /// Attention probabilities [B, heads, T, T] of this block's self-attention on x (the rest of
    /// the block is not run).
    public func attentionProbabilities(_ x: Tensor) throws -> Tensor {
        try qkv(norm1(x)).packedSelfAttention(heads: heads, returnProbabilities: true).probabilities!
    }

    /// Attention probabilities [B, heads, 1, T] of query position 0 only ([CLS]) in this block's
    /// self-attention on x: keys for every token, the query for one — what pruning scores need,
    /// at about a third of the projection cost and none of the T x T attention.
    public func clsAttentionProbabilities(_ x: Tensor) throws -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2]
        let normed = try norm1(x)
        // qkv's weight rows and bias are laid out [q | k | v].
        func part(_ i: Int) throws -> (Tensor, Tensor?) {
            (try qkv.weight.slice(axis: 0, start: i * d, length: d), try qkv.bias.map { try $0.slice(axis: 0, start: i * d, length: d) })
        }
        let (wq, bq) = try part(0), (wk, bk) = try part(1)
        let q = try normed.slice(axis: 1, start: 0, length: 1).reshaped([b, d]).linear(wq, bq)
        let k = try normed.linear(wk, bk)
        let queries = try q.reshaped([b, 1, d]), keys = try k.reshaped([b, t, d])
        return try Tensor.attention(query: queries, key: keys, value: keys, heads: heads, returnProbabilities: true).probabilities!
    }
}

/// Output of the ViT: final-normed tokens and, when pruning ran, the kept token positions of
/// every stage (per sample, among the stage's non-[CLS] tokens, ascending).
public struct VisionOutput {
    public let embeds: Tensor
    public let keptIndices: [[[Int]]]
    /// Sequence length entering each block ([CLS] and merged token included).
    public let sequenceLengths: [Int]
}

/// ViT with ELIP's text-guided token pruning (timm names: `patch_embed.proj`, `cls_token`,
/// `pos_embed`, `blocks.N.*`, `norm`).
public final class VisionTransformer {
    public let config: VisionConfig
    public let imageRes: Int
    public let patchWeight: Tensor, patchBias: Tensor
    public let clsToken: Tensor, posEmbed: Tensor
    public let blocks: [VisionBlock]
    public let norm: LayerNorm
    public var patchCount: Int { (imageRes / config.patchSize) * (imageRes / config.patchSize) }

    public init(_ scope: Scope, config: VisionConfig, imageRes: Int) throws {
        self.config = config
        self.imageRes = imageRes
        let d = config.embedDim, p = config.patchSize
        patchWeight = try scope["patch_embed"]["proj"].parameter("weight", [d, 3, p, p])
        patchBias = try scope["patch_embed"]["proj"].parameter("bias", [d])
        clsToken = try scope.parameter("cls_token", [1, 1, d])
        let n = (imageRes / p) * (imageRes / p)
        posEmbed = try scope.parameter("pos_embed", [1, n + 1, d])
        blocks = try (0..<config.depth).map {
            try VisionBlock(scope["blocks"][$0], dim: d, heads: config.numHeads, mlpRatio: config.mlpRatio)
        }
        norm = try LayerNorm(scope["norm"], dim: d, eps: 1e-6)
    }

    /// Tokens before the first block: [CLS] + patch embeddings, plus position embeddings.
    /// `images` [B, 3, H, W] (normalised) are constants.
    public func embed(_ images: Tensor) throws -> Tensor {
        let p = config.patchSize, d = config.embedDim
        guard images.rank == 4, images.shape[1] == 3, images.shape[2] == imageRes, images.shape[3] == imageRes else {
            throw TensorError.shapeMismatch(op: "VisionTransformer input (expects [B, 3, \(imageRes), \(imageRes)])",
                                            lhs: images.shape, rhs: [-1, 3, imageRes, imageRes])
        }
        let b = images.shape[0], g = imageRes / p
        let patches = Patches.extract(images, patchSize: p)  // [B * g * g, 3 * p * p]
        let x = try patches.linear(patchWeight.reshaped([d, 3 * p * p]), patchBias).reshaped([b, g * g, d])
        let cls = try Tensor.zeros([b, 1, d]) + clsToken
        return try Tensor.concat([cls, x], axis: 1) + posEmbed
    }

    /// Full forward. With `pruning` (schedule + text [CLS] states [B, D_text]), tokens are pruned
    /// and merged at each stage (SPEC §2); without, this is the plain ViT.
    public func callAsFunction(_ images: Tensor, pruning: ELIPPruning? = nil) throws -> VisionOutput {
        var x = try embed(images)
        var kept: [[[Int]]] = []
        var lengths: [Int] = []
        var stages = [Int: Int]()
        if let pruning { for (j, l) in pruning.schedule.beginLayer.enumerated() { stages[l] = j } }
        for (i, block) in blocks.enumerated() {
            if let pruning, let j = stages[i] {
                let r = try pruning.pruneStage(j, tokens: x, blocks: blocks)
                x = r.tokens
                kept.append(r.keptIndices)
            }
            lengths.append(x.shape[1])
            x = try block(x)
        }
        return VisionOutput(embeds: try norm(x), keptIndices: kept, sequenceLengths: lengths)
    }
}

/// im2col for non-overlapping patches, in the (channel, row, column) order of a PyTorch conv
/// weight [D, 3, p, p].
enum Patches {
    static func extract(_ images: Tensor, patchSize p: Int) -> Tensor {
        let b = images.shape[0], c = images.shape[1], h = images.shape[2], w = images.shape[3]
        let gh = h / p, gw = w / p
        let out = Tensor.zeros([b * gh * gw, c * p * p])
        images.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                Threads.parallelFor(b * gh) { range in
                    for bi in range {
                        let n = bi / gh, py = bi % gh
                        for px in 0..<gw {
                            let row = (n * gh + py) * gw + px
                            var o = row * c * p * p
                            for ch in 0..<c {
                                for ky in 0..<p {
                                    let s = ((n * c + ch) * h + py * p + ky) * w + px * p
                                    for kx in 0..<p { dst[o] = src[s + kx]; o += 1 }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

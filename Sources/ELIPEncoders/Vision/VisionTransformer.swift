import ELIPConfig
import ELIPNN
import ELIPPruning
import ELIPTensor

/// Shape of a timm ViT (the `vision:` section; ALBEF and BLIP hard-code ViT-B/16).
public struct VisionConfig: Equatable, Sendable {
    public var patchSize = 16
    public var embedDim = 768
    public var depth = 12
    public var numHeads = 12
    public var mlpRatio = 4.0
    /// timm's ViT: 1e-6.
    public var layerNormEps: Float = 1e-6

    public init() {}

    /// Width of the feed-forward hidden layer, int(embed_dim * mlp_ratio) as timm computes it.
    public var mlpHidden: Int { Int(Double(embedDim) * mlpRatio) }

    /// Reads the `vision:` section; absent keys keep ViT-B/16's values.
    public static func read(_ s: ConfigSection) throws -> VisionConfig {
        var c = VisionConfig()
        c.patchSize = try s.int("patch_size", default: c.patchSize, in: 1...4096)
        c.embedDim = try s.int("embed_dim", default: c.embedDim, in: 1...65536)
        c.depth = try s.int("depth", default: c.depth, in: 1...1024)
        c.numHeads = try s.int("num_heads", default: c.numHeads, in: 1...4096)
        c.mlpRatio = try s.double("mlp_ratio", default: c.mlpRatio, in: 0.001...1024)
        guard c.embedDim % c.numHeads == 0 else {
            throw s.error("embed_dim", "\(c.embedDim) is not divisible by num_heads \(c.numHeads)")
        }
        guard c.mlpHidden >= 1 else { throw s.error("mlp_ratio", "gives an empty feed-forward layer (\(c.mlpRatio) x \(c.embedDim))") }
        return c
    }

    /// Checks an image resolution against the patch size; `key` names the setting in messages.
    public func checkResolution(_ res: Int, file: String, key: String) throws {
        guard res >= patchSize, res % patchSize == 0 else {
            throw ConfigError(file: file, key: key, message: "\(res) must be a positive multiple of patch_size \(patchSize)")
        }
        // Attention is quadratic in the tokens: past this grid a forward needs tens of GB and
        // hours, so a mistyped resolution is an error rather than a run that never ends.
        let grid = res / patchSize
        guard grid <= Self.maxPatchGrid else {
            throw ConfigError(file: file, key: key, message: "\(res) px makes a \(grid) x \(grid) grid of \(patchSize)-px patches; at most \(Self.maxPatchGrid) x \(Self.maxPatchGrid) (\(Self.maxPatchGrid * patchSize) px) is supported")
        }
    }

    /// Largest patch grid side (64 x 64 = 4096 tokens; ALBEF and BLIP use at most 24 x 24).
    public static let maxPatchGrid = 64
}

/// ViT with ELIP's text-guided token pruning (timm names: `patch_embed.proj`, `cls_token`,
/// `pos_embed`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`).
public final class VisionTransformer: PrunableVisionEncoder {
    public let config: VisionConfig
    public let imageRes: Int
    public let patchWeight: Tensor, patchBias: Tensor
    public let clsToken: Tensor, posEmbed: Tensor
    public let blocks: [PreNormBlock]
    public let norm: LayerNorm
    public var patchGrid: Int { imageRes / config.patchSize }
    public var patchCount: Int { patchGrid * patchGrid }

    public init(_ scope: Scope, config: VisionConfig, imageRes: Int) throws {
        self.config = config
        self.imageRes = imageRes
        let d = config.embedDim, p = config.patchSize
        guard imageRes >= p, imageRes % p == 0 else {
            throw TensorError.invalidArgument(op: "VisionTransformer", reason: "image size \(imageRes) is not a multiple of the patch size \(p)")
        }
        patchWeight = try scope["patch_embed"]["proj"].parameter("weight", [d, 3, p, p], init: defaultWeightInit)
        patchBias = try scope["patch_embed"]["proj"].parameter("bias", [d], init: .zeros)
        clsToken = try scope.parameter("cls_token", [1, 1, d], init: defaultWeightInit)
        let n = (imageRes / p) * (imageRes / p)
        posEmbed = try scope.parameter("pos_embed", [1, n + 1, d], init: defaultWeightInit)
        blocks = try (0..<config.depth).map { try Self.block(scope["blocks"][$0], config: config) }
        norm = try LayerNorm(scope["norm"], dim: d, eps: config.layerNormEps)
    }

    /// One timm block (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`).
    public static func block(_ b: Scope, config: VisionConfig) throws -> PreNormBlock {
        let d = config.embedDim, eps = config.layerNormEps
        return PreNormBlock(
            norm1: try LayerNorm(b["norm1"], dim: d, eps: eps),
            attention: try MultiHeadAttention(projections: .packed(Linear(b["attn"]["qkv"], in: d, out: 3 * d)),
                                              output: Linear(b["attn"]["proj"], in: d, out: d), heads: config.numHeads),
            norm2: try LayerNorm(b["norm2"], dim: d, eps: eps),
            mlp: try MLP(b["mlp"], dim: d, hidden: config.mlpHidden, activation: .gelu))
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
    /// and merged at each stage (SPEC §2); without, this is the plain ViT. Returns the final-normed
    /// tokens.
    public func callAsFunction(_ images: Tensor, pruning: ELIPPruning? = nil) throws -> PrunedBlocksOutput {
        try encode(images, pruning: pruning)
    }

    // MARK: PrunableVisionEncoder

    public func finalNorm(_ x: Tensor) throws -> Tensor { try norm(x) }

    public var blockCount: Int { blocks.count }

    public func runBlock(_ index: Int, _ x: Tensor) throws -> Tensor { try blocks[index](x) }

    public func firstQueryAttention(block index: Int, _ x: Tensor) throws -> Tensor {
        try blocks[index].firstQueryAttention(x)
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

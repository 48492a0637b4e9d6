import ELIPNN
import ELIPPruning
import ELIPTensor

/// Shape of OpenAI CLIP's ViT as METER uses it (SPEC-METER §2).
public struct CLIPVisionConfig: Equatable, Sendable {
    public var patchSize = 16
    public var width = 768
    /// Residual blocks built: METER keeps CLIP's first `layers - 1` (11 of ViT-B's 12).
    public var blocks = 11
    /// CLIP fixes the head count at width / 64; METER-tiny's reference overrides it.
    public var heads = 12
    /// LayerNorm eps of every CLIP LayerNorm.
    public var layerNormEps: Float = 1e-5

    public init() {}

    /// CLIP ViT-B/16 (or /32 with `patchSize` 32) with METER's 11 blocks.
    public static func meterViTBase(patchSize: Int = 16) -> CLIPVisionConfig {
        var c = CLIPVisionConfig()
        c.patchSize = patchSize
        return c
    }

    /// The MLP width, 4 x width as in CLIP.
    public var mlpHidden: Int { 4 * width }
}

/// OpenAI CLIP's vision tower under its own names (`conv1` without bias, `class_embedding`,
/// `positional_embedding`, `ln_pre`, `transformer.resblocks.N.{ln_1, attn.in_proj_weight,
/// attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_post`) as METER runs it:
/// pre-LN blocks with QuickGELU, `ln_pre` before the first block, `ln_post` on every output token
/// and no projection (`proj` is not part of the model), so the output is [B, T, width].
///
/// As a `PrunableVisionEncoder`, `embed` includes `ln_pre`: ELIP's stages start at block inputs,
/// which in CLIP come after `ln_pre`. Pass METER's keep base to `ELIPPruning(patchCount:)` (the
/// official (resolution_before / 32)², not this model's patch count, SPEC-METER §3.1).
public final class CLIPVisionTransformer: PrunableVisionEncoder {
    public let config: CLIPVisionConfig
    public let imageRes: Int
    public let conv1: Tensor
    public let classEmbedding: Tensor, positionalEmbedding: Tensor
    public let lnPre: LayerNorm
    public let blocks: [PreNormBlock]
    public let lnPost: LayerNorm
    public var patchGrid: Int { imageRes / config.patchSize }
    public var patchCount: Int { patchGrid * patchGrid }

    /// `scope` is CLIP's `visual` module (METER: `vit_model.visual`).
    public init(_ scope: Scope, config: CLIPVisionConfig, imageRes: Int) throws {
        self.config = config
        self.imageRes = imageRes
        let d = config.width, p = config.patchSize
        guard p >= 1, imageRes >= p, imageRes % p == 0 else {
            throw TensorError.invalidArgument(op: "CLIPVisionTransformer", reason: "image size \(imageRes) is not a multiple of the patch size \(p)")
        }
        guard config.heads >= 1, d % config.heads == 0 else {
            throw TensorError.invalidArgument(op: "CLIPVisionTransformer", reason: "width \(d) is not a multiple of \(config.heads) heads")
        }
        let grid = imageRes / p
        // CLIP's own init: conv default, class/positional embeddings scale * randn with scale
        // width^-0.5; the checkpoint replaces them, so the project's default init is used.
        conv1 = try scope["conv1"].parameter("weight", [d, 3, p, p], init: defaultWeightInit)
        classEmbedding = try scope.parameter("class_embedding", [d], init: defaultWeightInit)
        positionalEmbedding = try scope.parameter("positional_embedding", [grid * grid + 1, d], init: defaultWeightInit)
        lnPre = try LayerNorm(scope["ln_pre"], dim: d, eps: config.layerNormEps)
        blocks = try (0..<config.blocks).map { try Self.block(scope["transformer"]["resblocks"][$0], config: config) }
        lnPost = try LayerNorm(scope["ln_post"], dim: d, eps: config.layerNormEps)
    }

    /// One `ResidualAttentionBlock`: packed `attn.in_proj_{weight,bias}` ([q | k | v] rows),
    /// `attn.out_proj`, `mlp.c_fc` / `mlp.c_proj` with QuickGELU.
    public static func block(_ b: Scope, config: CLIPVisionConfig) throws -> PreNormBlock {
        let d = config.width, eps = config.layerNormEps
        return PreNormBlock(
            norm1: try LayerNorm(b["ln_1"], dim: d, eps: eps),
            attention: try MultiHeadAttention(
                projections: .packed(Linear(b["attn"], in: d, out: 3 * d, weightName: "in_proj_weight", biasName: "in_proj_bias")),
                output: Linear(b["attn"]["out_proj"], in: d, out: d), heads: config.heads),
            norm2: try LayerNorm(b["ln_2"], dim: d, eps: eps),
            mlp: try MLP(b["mlp"], dim: d, hidden: config.mlpHidden, activation: .quickGELU, names: ("c_fc", "c_proj")))
    }

    /// Every parameter, in module order.
    public var parameters: [Tensor] {
        [conv1, classEmbedding, positionalEmbedding] + lnPre.parameters
            + blocks.flatMap { $0.norm1.parameters + $0.attention.parameters + $0.norm2.parameters + $0.mlp.parameters }
            + lnPost.parameters
    }

    /// Tokens entering block 0: ln_pre([class_embedding, conv1 patches (row-major)] + positional_embedding).
    /// `images` [B, 3, R, R] (normalised) are constants.
    public func embed(_ images: Tensor) throws -> Tensor {
        let p = config.patchSize, d = config.width
        guard images.rank == 4, images.shape[1] == 3, images.shape[2] == imageRes, images.shape[3] == imageRes else {
            throw TensorError.shapeMismatch(op: "CLIP ViT input (expects [B, 3, \(imageRes), \(imageRes)])",
                                            lhs: images.shape, rhs: [-1, 3, imageRes, imageRes])
        }
        let b = images.shape[0], g = patchGrid
        let patches = Patches.extract(images, patchSize: p)  // [B * g * g, 3 * p * p]
        let x = try patches.linear(conv1.reshaped([d, 3 * p * p])).reshaped([b, g * g, d])
        let cls = try Tensor.zeros([b, 1, d]) + classEmbedding.reshaped([1, 1, d])
        return try lnPre(Tensor.concat([cls, x], axis: 1) + positionalEmbedding)
    }

    /// Images to `ln_post`-normalised tokens, pruned when `pruning` is given (METER's
    /// `visual_transformer` output, `image_embeds`).
    public func callAsFunction(_ images: Tensor, pruning: ELIPPruning? = nil) throws -> PrunedBlocksOutput {
        try encode(images, pruning: pruning)
    }

    // MARK: PrunableVisionEncoder

    public func finalNorm(_ x: Tensor) throws -> Tensor { try lnPost(x) }

    public var blockCount: Int { blocks.count }

    public func runBlock(_ index: Int, _ x: Tensor) throws -> Tensor { try blocks[index](x) }

    public func firstQueryAttention(block index: Int, _ x: Tensor) throws -> Tensor {
        try blocks[index].firstQueryAttention(x)
    }
}

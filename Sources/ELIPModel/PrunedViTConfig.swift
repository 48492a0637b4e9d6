import ELIPPruning

/// A model config whose ViT runs ELIP's pruning schedule: what the token budget needs (issue 18).
/// ALBEF and BLIP conform; a backbone whose keep rule differs gives its own.
public protocol PrunedViTConfig: ModelConfig {
    /// Transformer blocks of the (pruned) ViT.
    var visionDepth: Int { get }
    /// N0 of the keep counts (ALBEF: the patch count; BLIP: `(image_size // 16)^2` whatever the
    /// patch size, as its create_vit does).
    var pruneKeepBase: Int { get }
}

extension PrunedViTConfig {
    /// Tokens per ViT layer under this config's pruning (all N0 + 1 without it).
    public func tokenBudget() throws -> TokenBudget {
        try TokenBudget(schedule: prune, depth: visionDepth, patchCount: patchCount, keepBase: pruneKeepBase)
    }
}

extension ALBEFConfig: PrunedViTConfig {
    public var visionDepth: Int { vision.depth }
    public var pruneKeepBase: Int { patchCount }
}

extension BLIPConfig: PrunedViTConfig {
    public var visionDepth: Int { vision.depth }
    public var pruneKeepBase: Int { keepBase }
}

/// METER's keep counts are of `keep_base` (the official (224 // 32)^2 = 49 whatever the patch
/// grid) or, without the key, of N0; its CLIP ViT has `clip.blocks` blocks.
extension METERConfig: PrunedViTConfig {
    public var visionDepth: Int { vision.blocks }
    public var pruneKeepBase: Int { keepBase }
}

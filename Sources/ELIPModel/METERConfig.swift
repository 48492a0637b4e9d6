import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// ELIP-METER pre-training configuration (SPEC-METER): the official config keys (`image_size`,
/// `patch_size`, `hidden_size`, `num_heads`, `num_top_layer`, `max_text_len`, `mlm_prob`,
/// `img_prune`, `lr_mult_head`, `lr_mult_cross_modal`), the CLIP ViT's shape (`clip:` section),
/// RoBERTa's (`roberta_config:` a HuggingFace config.json, or an inline `roberta:` section) and
/// the keep rule (`keep_base`).
public struct METERConfig: ModelConfig, Equatable {
    public var imageRes = 288
    public var vision = CLIPVisionConfig.meterViTBase()
    public var roberta = METERConfig.robertaBase
    /// Cross-modal width H, heads and layer pairs (the text/image widths follow the encoders).
    public var fusionHidden = 768, fusionHeads = 12, fusionLayers = 6
    public var prune: PruneConfig? = .meter
    /// Base of the keep counts K_j = floor(base · ratio_j). The official code uses
    /// (resolution_before // 32)² = 49 for every CLIP setting (SPEC-METER §3.1); nil: N0, the
    /// patches of this image (ALBEF's and BLIP's rule).
    public var keepBaseOverride: Int? = 49
    /// Captions are `<s> ... </s>`, padded to this many tokens.
    public var maxTextLength = 50
    public var mlmProbability = 0.15
    /// lr multipliers by name (meter_utils.set_schedule): "cross_modal" and the heads.
    public var lrMultCrossModal = 5.0, lrMultHead = 5.0
    /// RoBERTa's: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` 50264.
    public var specialTokens = SpecialTokens(pad: 1, unknown: 3, cls: 0, sep: 2, mask: 50264)
    /// `init_std`: std of every truncated-normal weight drawn at random (nil: the layers' own,
    /// BERT's 0.02). Only random initialisation reads it; loaded or imported weights are unchanged.
    /// From random weights at 0.02 the pooled [CLS] states barely depend on the input and ITM
    /// stays at ln 2 (README); the demo draws larger weights.
    public var initStd: Float?

    public init() {}

    /// roberta-base's config.json.
    public static var robertaBase: BertConfig {
        var b = BertConfig()
        b.vocabSize = 50265
        b.maxPositionEmbeddings = 514
        b.typeVocabSize = 1
        b.layerNormEps = 1e-5
        return b
    }

    public var kind: String { "meter" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    /// The base the keep counts are computed from.
    public var keepBase: Int { keepBaseOverride ?? patchCount }
    public var vocabularySize: Int { roberta.vocabSize }
    public var maxTextPositions: Int { maxTextLength }
    public var captionStyle: CaptionStyle { .meter(maxLength: maxTextLength) }
    public var usesByteLevelBPE: Bool { true }
    /// METER pre-trains without augmentation (transform "clip"); this is only used where a
    /// config turns augmentation on.
    public var trainingRandAugment: RandAugment { .albef }
    public func makeModel() throws -> any TrainableModel { try METERModel(config: self) }

    public var fusion: METERFusionConfig {
        var f = METERFusionConfig()
        f.hidden = fusionHidden
        f.heads = fusionHeads
        f.layers = fusionLayers
        f.textWidth = roberta.hiddenSize
        f.imageWidth = vision.width
        return f
    }

    public var summary: String {
        "METER: CLIP ViT \(vision.blocks)x\(vision.width) (patch \(vision.patchSize)) at \(imageRes) px, RoBERTa \(roberta.numHiddenLayers)x\(roberta.hiddenSize), co-attention \(fusionLayers)x2x\(fusionHidden), pruning "
            + (prune.map { "keeps \($0.keepCounts(patchCount: keepBase)) of \(patchCount) (base \(keepBase), \($0.scoring.rawValue))" } ?? "off")
    }

    /// The model keys of a config file's top level (not validated; see `ModelKind.readConfig`).
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> METERConfig {
        var c = METERConfig()
        c.imageRes = try s.int("image_size", default: c.imageRes, in: 1...16384)
        if let v = try s.section("clip") {
            c.vision.width = try v.int("width", default: c.vision.width, in: 1...65536)
            c.vision.heads = try v.int("heads", default: c.vision.width / 64, in: 1...4096)
            c.vision.blocks = try v.int("blocks", default: c.vision.blocks, in: 1...1024)
            c.vision.layerNormEps = try v.float("layer_norm_eps", default: c.vision.layerNormEps, in: 1e-30...1)
            try v.finish()
        }
        c.vision.patchSize = try s.int("patch_size", default: c.vision.patchSize, in: 1...4096)
        if let path = try s.string("roberta_config") {
            c.roberta = try BertConfig.load(location.resolve(path, key: "roberta_config", in: s))
        } else if let r = try s.section("roberta") {
            c.roberta = try BertConfig.read(r)
        }
        c.fusionHidden = try s.int("hidden_size", default: c.fusionHidden, in: 1...65536)
        c.fusionHeads = try s.int("num_heads", default: c.fusionHeads, in: 1...4096)
        c.fusionLayers = try s.int("num_top_layer", default: c.fusionLayers, in: 1...1024)
        // λ (the image [CLS]'s weight in the fused query; 0.8, hard-coded officially) is
        // img_prune.lambda as for ALBEF and BLIP; a top-level `lambda` still sets it.
        c.prune = try PruneConfig.read(s, fallback: c.prune, legacyLambda: "lambda")
        c.keepBaseOverride = try s.int("keep_base", in: 1...(1 << 24))
        c.maxTextLength = try s.int("max_text_len", default: c.maxTextLength, in: 3...(1 << 16))
        c.mlmProbability = try s.double("mlm_prob", default: c.mlmProbability, in: 0...1)
        c.lrMultCrossModal = try s.double("lr_mult_cross_modal", default: c.lrMultCrossModal, in: 0...1e6)
        c.lrMultHead = try s.double("lr_mult_head", default: c.lrMultHead, in: 0...1e6)
        c.initStd = try s.double("init_std", in: 1e-6...10).map(Float.init)
        c.specialTokens.mask = c.roberta.vocabSize - 1  // RoBERTa's <mask> is its last id
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        var grid = VisionConfig()
        grid.patchSize = vision.patchSize
        try grid.checkResolution(imageRes, file: file, key: "image_size")
        guard vision.width % vision.heads == 0 else { throw fail("clip", "width \(vision.width) must be a multiple of heads \(vision.heads)") }
        guard fusionHidden % fusionHeads == 0 else { throw fail("hidden_size", "\(fusionHidden) must be a multiple of num_heads \(fusionHeads)") }
        // RoBERTa's positions start at pad + 1 = 2, so a row of L tokens needs L + 2 rows.
        guard maxTextLength + 2 <= roberta.maxPositionEmbeddings else {
            throw fail("max_text_len", "\(maxTextLength) needs \(maxTextLength + 2) position rows (positions start at 2), RoBERTa has max_position_embeddings \(roberta.maxPositionEmbeddings)")
        }
        guard roberta.typeVocabSize >= 1 else { throw fail("roberta", "type_vocab_size must be at least 1 (RoBERTa adds token type 0)") }
        for id in [specialTokens.pad, specialTokens.unknown, specialTokens.cls, specialTokens.sep, specialTokens.mask] where id < 0 || id >= roberta.vocabSize {
            throw fail("roberta", "special id \(id) outside the vocabulary of \(roberta.vocabSize)")
        }
        if let prune {
            try prune.validate(depth: vision.blocks, patchCount: keepBase, file: file)
            guard let first = prune.keepCounts(patchCount: keepBase).first, first <= patchCount else {
                throw fail("keep_base", "keeps \(prune.keepCounts(patchCount: keepBase)) of base \(keepBase), but the ViT has only \(patchCount) patches")
            }
            guard roberta.hiddenSize == vision.width else {
                throw fail("img_prune", "pruning mixes RoBERTa's <s> state (hidden_size \(roberta.hiddenSize)) into the image [CLS] (clip width \(vision.width)): the widths must be equal, or turn pruning off (img_prune: null)")
            }
        }
    }
}

extension PruneConfig {
    /// ELIP-METER's `img_prune` (METER/meter/config.py).
    public static let meter = PruneConfig(beginLayer: [2, 4, 9], numActLayers: [2, 5, 2], keepRatio: [0.90, 0.70, 0.45])
}

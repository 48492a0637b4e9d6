import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// ELIP-BLIP pre-training configuration (SPEC-BLIP §1-§4): the model keys of ELIP's BLIP
/// `configs/pretrain.yaml` (`image_size`, `vit`, `queue_size`, `alpha`, `img_prune`, `med_config`)
/// plus the constants the official code fixes, settable here (`embed_dim`, `momentum`, `temp`,
/// `max_length`, `lambda`) and the `vision:` section (the ViT's shape; BLIP picks it by `vit`).
public struct BLIPConfig: ModelConfig, Equatable {
    public var imageRes = 224
    public var embedDim = 256
    public var temp: Float = 0.07
    public var queueSize = 57600
    public var momentum: Float = 0.995
    public var alpha: Float = 0.4
    /// The distillation weight ramps up over this many epochs (BLIP: 2).
    public var alphaRampEpochs = 2
    public var prune: PruneConfig? = .albef
    /// Captions are `[CLS] ... [SEP]`, padded to this many tokens.
    public var maxTextLength = 30
    /// Label smoothing of the captioning (LM) loss.
    public var labelSmoothing: Float = 0.1
    public var vision = VisionConfig()
    public var bert = BLIPConfig.medConfig
    public var specialTokens = SpecialTokens.bertBaseUncased

    public init() {}

    /// BLIP's configs/med_config.json: bert-base with [DEC] and [ENC] added (30524 ids),
    /// cross-attention in every layer, no token types.
    public static var medConfig: BertConfig {
        var b = BertConfig()
        b.vocabSize = 30524
        b.encoderWidth = 768
        b.addCrossAttention = true
        b.typeVocabSize = 0
        return b
    }

    public var featureQueueSize: Int? { queueSize }
    public var kind: String { "blip" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    /// N0 of the keep counts: BLIP's create_vit hard-codes patch 16, `(image_size // 16) ** 2`.
    public var keepBase: Int { (imageRes / 16) * (imageRes / 16) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// BLIP: its `pre_caption`, `[CLS] tokens [SEP]`, padded to `max_length`.
    public var captionStyle: CaptionStyle { .blip(maxLength: maxTextLength) }
    public var trainingRandAugment: RandAugment { .blip }
    public var addedTokenCount: Int { 2 }
    /// The two tokens BLIP adds after the WordPiece vocabulary: [DEC] (bos) then [ENC].
    public var decoderStartId: Int { bert.vocabSize - 2 }
    public var encoderStartId: Int { bert.vocabSize - 1 }
    public func makeModel() throws -> any TrainableModel { try BLIPModel(config: self) }

    public var summary: String {
        "BLIP: ViT \(vision.depth)x\(vision.embedDim) (patch \(vision.patchSize)) at \(imageRes) px, BERT \(bert.numHiddenLayers) layers x \(bert.hiddenSize) with a shared causal decoder, queue \(queueSize), pruning "
            + (prune.map { "keeps \($0.keepCounts(patchCount: keepBase)) of \(patchCount) (\($0.modeDescription))" } ?? "off")
    }

    /// The model keys of a config file's top level (not validated; see `ModelKind.readConfig`).
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> BLIPConfig {
        var c = BLIPConfig()
        c.imageRes = try s.int("image_size", default: c.imageRes, in: 1...16384)
        c.embedDim = try s.int("embed_dim", default: c.embedDim, in: 1...65536)
        c.temp = try s.float("temp", default: c.temp, in: 0.001...0.5)
        c.queueSize = try s.int("queue_size", default: c.queueSize, in: 1...(1 << 24))
        c.momentum = try s.float("momentum", default: c.momentum, in: 0...1)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        c.maxTextLength = try s.int("max_length", default: c.maxTextLength, in: 3...(1 << 16))
        // λ (`lamd` = 0.8 in the official code) lives in img_prune.lambda; the top-level `lambda`
        // still sets it.
        c.prune = try PruneConfig.read(s, fallback: c.prune, legacyLambda: "lambda")
        switch try s.choice("vit", ["base", "large"]) ?? "base" {
        case "large": c.vision.embedDim = 1024; c.vision.depth = 24; c.vision.numHeads = 16
        default: break
        }
        if let v = try s.section("vision") { c.vision = try VisionConfig.read(v) }
        if let path = try s.string("med_config") {
            c.bert = try BertConfig.load(location.resolve(path, key: "med_config", in: s))
            c.bert.typeVocabSize = 0  // med.py's BertEmbeddings has no token types, whatever the file says
            if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        }
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        try vision.checkResolution(imageRes, file: file, key: "image_size")
        guard bert.addCrossAttention ?? true else {
            throw fail("med_config", "BLIP's text encoder cross-attends in every layer: add_cross_attention must be true")
        }
        guard bert.vocabSize >= 3 else { throw fail("med_config", "vocab_size \(bert.vocabSize) leaves no room for [DEC] and [ENC]") }
        guard maxTextLength <= bert.maxPositionEmbeddings else {
            throw fail("max_length", "\(maxTextLength) exceeds max_position_embeddings \(bert.maxPositionEmbeddings)")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("med_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim)")
        }
        if let prune {
            try prune.validate(depth: vision.depth, patchCount: keepBase, file: file)
            guard let first = prune.keepCounts(patchCount: keepBase).first, first <= patchCount else {
                throw fail("img_prune", "keeps \(prune.keepCounts(patchCount: keepBase)) of (image_size // 16)^2 = \(keepBase), but the ViT has only \(patchCount) patches")
            }
            guard bert.hiddenSize == vision.embedDim else {
                throw fail("img_prune", "pruning mixes the text [CLS] (hidden_size \(bert.hiddenSize)) into the image [CLS] (vision embed_dim \(vision.embedDim)): the widths must be equal, or turn pruning off (img_prune: null)")
            }
        }
    }
}

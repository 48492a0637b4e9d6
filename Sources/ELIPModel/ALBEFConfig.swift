import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// ALBEF pre-training configuration: the model keys of ALBEF's `Pretrain.yaml` (SPEC §3) plus
/// ELIP's `img_prune` (λ and merging included), the `vision:` section (ALBEF hard-codes ViT-B/16).
public struct ALBEFConfig: ModelConfig, Equatable {
    public var imageRes = 256
    public var visionWidth = 768
    public var embedDim = 256
    public var temp: Float = 0.07
    public var mlmProbability: Float = 0.15
    public var queueSize = 65536
    public var momentum: Float = 0.995
    public var alpha: Float = 0.4
    /// nil: no pruning (plain ALBEF).
    public var prune: PruneConfig? = .albef
    public var vision = VisionConfig()
    public var bert = BertConfig.albefBase
    public var specialTokens = SpecialTokens.bertBaseUncased

    public init() {}

    public var featureQueueSize: Int? { queueSize }
    public var kind: String { "albef" }
    /// Number of patches of the original image (N0).
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// ALBEF's Pretrain.py: `pre_caption`, `[CLS] tokens`, at most 25 tokens, padded to the longest.
    public var captionStyle: CaptionStyle { .albef(maxLength: min(25, bert.maxPositionEmbeddings)) }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? 6 }
    public func makeModel() throws -> any TrainableModel { try ALBEFModel(config: self) }

    public var summary: String {
        "ALBEF: ViT \(vision.depth)x\(vision.embedDim) (patch \(vision.patchSize)) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize), queue \(queueSize), pruning "
            + (prune.map { "keeps \($0.keepCounts(patchCount: patchCount)) of \(patchCount) (\($0.modeDescription))" } ?? "off")
    }

    /// The model keys of a config file's top level; `bert_config` is resolved against
    /// `location`'s folders. The caller checks the section for unknown keys, then calls
    /// `validate` (so a misspelt key is reported before the checks it would have changed).
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFConfig {
        var c = ALBEFConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        c.visionWidth = try s.int("vision_width", default: c.visionWidth, in: 1...65536)
        c.embedDim = try s.int("embed_dim", default: c.embedDim, in: 1...65536)
        c.temp = try s.float("temp", default: c.temp, in: 0.001...0.5)
        c.mlmProbability = try s.float("mlm_probability", default: c.mlmProbability, in: 0...1)
        c.queueSize = try s.int("queue_size", default: c.queueSize, in: 1...(1 << 24))
        c.momentum = try s.float("momentum", default: c.momentum, in: 0...1)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        // λ lives in img_prune.lambda; the older top-level `prune_lambda` still sets it.
        c.prune = try PruneConfig.read(s, fallback: c.prune, legacyLambda: "prune_lambda")
        if let v = try s.section("vision") {
            c.vision = try VisionConfig.read(v)
        } else {
            c.vision.embedDim = c.visionWidth
            guard c.visionWidth % c.vision.numHeads == 0 else {
                throw s.error("vision_width", "\(c.visionWidth) is not divisible by ViT-B's 12 heads; give a vision: section")
            }
        }
        if let path = try s.string("bert_config") {
            c.bert = try BertConfig.load(location.resolve(path, key: "bert_config", in: s))
            if c.bert.fusionLayer == nil { c.bert.fusionLayer = 6 }
            if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        }
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        guard vision.embedDim == visionWidth else {
            throw fail("vision_width", "\(visionWidth) differs from vision.embed_dim \(vision.embedDim)")
        }
        try vision.checkResolution(imageRes, file: file, key: "image_res")
        guard fusionLayer >= 1, fusionLayer < bert.numHiddenLayers else {
            throw fail("bert_config", "fusion_layer \(fusionLayer) must leave text layers below and fusion layers above it (1 ..< num_hidden_layers \(bert.numHiddenLayers))")
        }
        if let prune {
            try prune.validate(depth: vision.depth, patchCount: patchCount, file: file)
            // The fused query mixes the text [CLS] state into the image [CLS] token.
            guard bert.hiddenSize == vision.embedDim else {
                throw fail("img_prune", "pruning mixes the text [CLS] (hidden_size \(bert.hiddenSize)) into the image [CLS] (vision embed_dim \(vision.embedDim)): the widths must be equal, or turn pruning off (img_prune: null)")
            }
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim) (the fusion layers read image tokens)")
        }
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// SNLI-VE fine-tuning of ALBEF (SPEC-ALBEF-TASKS §5; models/model_ve.py): the model keys of the
/// official `VE.yaml` plus the `vision:` section (ALBEF hard-codes ViT-B/16). No pruning: ELIP's
/// fine-tuning models never prune.
public struct ALBEFVEConfig: ModelConfig, Equatable {
    public var imageRes = 384
    public var vision = VisionConfig()
    public var bert = BertConfig.albefBase
    /// Distillation weight (`alpha`); `warm_up` ramps it over epoch 0 (VE.yaml: off).
    public var alpha: Float = 0.4
    public var warmUp = false
    /// Momentum model and distillation (`distill`).
    public var distill = true
    /// EMA coefficient, hard-coded 0.995 in model_ve.py.
    public var momentum: Float = 0.995
    public var prune: PruneConfig? = nil
    public var specialTokens = SpecialTokens.bertBaseUncased
    /// Entailment 2, neutral 1, contradiction 0.
    public static let classCount = 3

    public init() {}

    public var kind: String { "albef-ve" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// ve_dataset.py: `pre_caption(sentence, 30)`, padded to the longest, not truncated.
    public var captionStyle: CaptionStyle { .albef(maxLength: min(30, bert.maxPositionEmbeddings)) }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? 6 }
    public func makeModel() throws -> any TrainableModel { try ALBEFVEModel(config: self) }

    public var summary: String {
        "ALBEF SNLI-VE: ViT \(vision.depth)x\(vision.embedDim) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize), 3-way head, distillation \(distill ? "on" : "off")"
    }

    /// The model keys of VE.yaml's top level (`image_res`, `alpha`, `distill`, `warm_up`,
    /// `vision`, `bert_config`).
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFVEConfig {
        var c = ALBEFVEConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        c.distill = try s.bool("distill", default: c.distill)
        c.warmUp = try s.bool("warm_up", default: c.warmUp)
        if let v = try s.section("vision") { c.vision = try VisionConfig.read(v) }
        if let path = try s.string("bert_config") {
            c.bert = try BertConfig.load(location.resolve(path, key: "bert_config", in: s))
            if c.bert.fusionLayer == nil { c.bert.fusionLayer = 6 }
            if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        }
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        try vision.checkResolution(imageRes, file: file, key: "image_res")
        guard prune == nil else { throw fail("img_prune", "SNLI-VE fine-tuning does not prune (ELIP prunes only in pre-training)") }
        guard fusionLayer >= 1, fusionLayer < bert.numHiddenLayers else {
            throw fail("bert_config", "fusion_layer \(fusionLayer) must leave text layers below and fusion layers above it (1 ..< num_hidden_layers \(bert.numHiddenLayers))")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim) (the fusion layers read image tokens)")
        }
    }
}

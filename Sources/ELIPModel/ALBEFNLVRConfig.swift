import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// NLVR2 fine-tuning of ALBEF (SPEC-ALBEF-TASKS §4; models/model_nlvr.py): the model keys of the
/// official `NLVR.yaml` plus the `vision:` section (ALBEF hard-codes ViT-B/16). With the official
/// `fusion_layer` 6 the text encoder has 18 layers whatever `bert_config` says (model_nlvr.py sets
/// `num_hidden_layers = 18`: 6 text layers, then 6 left/right pairs). A smaller BERT with another
/// fusion layer F of N layers (the demo's: 3 of 6) gets the same structure scaled, F text layers
/// then N - F pairs (a deviation only where the official code has no answer: it hard-codes 6).
/// No pruning: ELIP's fine-tuning models never prune.
public struct ALBEFNLVRConfig: ModelConfig, Equatable {
    public var imageRes = 384
    public var vision = VisionConfig()
    public var bert: BertConfig = {
        var b = BertConfig.albefBase
        b.numHiddenLayers = ALBEFNLVRConfig.textEncoderLayers
        return b
    }()
    /// Distillation weight (`alpha`); `warm_up` ramps it over epoch 0 (NLVR.yaml: on).
    public var alpha: Float = 0.4
    public var warmUp = true
    /// Momentum model and distillation (`distill`).
    public var distill = true
    /// EMA coefficient, hard-coded 0.995 in model_nlvr.py.
    public var momentum: Float = 0.995
    public var prune: PruneConfig? = nil
    public var specialTokens = SpecialTokens.bertBaseUncased
    /// "True" 1, "False" 0.
    public static let classCount = 2
    /// model_nlvr.py: `bert_config.num_hidden_layers = 18`.
    public static let textEncoderLayers = 18
    /// model_nlvr.py's `share_cross_attention` pairs layers 6+2i, 7+2i (i < 6): hard-coded.
    public static let firstPairedLayer = 6
    public static let officialFusionLayer = 6

    /// Layers of the NLVR2 text encoder for a bert_config of `layers` layers with fusion layer
    /// `fusion`: 18 for the official fusion layer 6 (model_nlvr.py), else fusion + 2 (layers - fusion).
    public static func textEncoderLayers(bertLayers layers: Int, fusion: Int) -> Int {
        fusion == officialFusionLayer ? textEncoderLayers : fusion + 2 * max(0, layers - fusion)
    }

    public init() {}

    public var kind: String { "albef-nlvr2" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// nlvr_dataset.py: `pre_caption(sentence, 30)`, padded to the longest, not truncated.
    public var captionStyle: CaptionStyle { .albef(maxLength: min(30, bert.maxPositionEmbeddings)) }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? 6 }
    public func makeModel() throws -> any TrainableModel { try ALBEFNLVRModel(config: self) }

    public var summary: String {
        "ALBEF NLVR2: ViT \(vision.depth)x\(vision.embedDim) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize) (left/right image alternating, key/value shared per pair), 2-way head, distillation \(distill ? "on" : "off")"
    }

    /// The model keys of NLVR.yaml's top level (`image_res`, `alpha`, `distill`, `warm_up`,
    /// `vision`, `bert_config`).
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFNLVRConfig {
        var c = ALBEFNLVRConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        c.distill = try s.bool("distill", default: c.distill)
        c.warmUp = try s.bool("warm_up", default: c.warmUp)
        if let v = try s.section("vision") { c.vision = try VisionConfig.read(v) }
        if let path = try s.string("bert_config") {
            c.bert = try BertConfig.load(location.resolve(path, key: "bert_config", in: s))
            if c.bert.fusionLayer == nil { c.bert.fusionLayer = officialFusionLayer }
            c.bert.numHiddenLayers = textEncoderLayers(bertLayers: c.bert.numHiddenLayers, fusion: c.bert.fusionLayer ?? officialFusionLayer)
            if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        }
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        try vision.checkResolution(imageRes, file: file, key: "image_res")
        guard prune == nil else { throw fail("img_prune", "NLVR2 fine-tuning does not prune (ELIP prunes only in pre-training)") }
        guard fusionLayer >= 1, bert.numHiddenLayers > fusionLayer, (bert.numHiddenLayers - fusionLayer) % 2 == 0 else {
            throw fail("bert_config", "NLVR2 needs text layers, then fusion layers in left/right pairs (model_nlvr.py: 6 text layers, pairs 6+2i and 7+2i, i < 6), got fusion_layer \(fusionLayer) of \(bert.numHiddenLayers) layers")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim) (the fusion layers read image tokens)")
        }
    }
}

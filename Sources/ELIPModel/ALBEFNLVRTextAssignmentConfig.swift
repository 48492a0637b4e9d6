import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// NLVR2's text-assignment pre-training stage (SPEC-ALBEF-TASKS §4; salesforce/ALBEF
/// models/model_pretrain_nlvr.py, configs/NLVR_pretrain.yaml): the model keys of
/// NLVR_pretrain.yaml plus the `vision:` section. The text encoder has NLVR2's depth
/// (ALBEFNLVRConfig.textEncoderLayers: 18 for the official fusion layer 6). No pruning.
public struct ALBEFNLVRTextAssignmentConfig: ModelConfig, Equatable {
    public var imageRes = 256
    public var vision = VisionConfig()
    public var visionWidth = 768
    public var embedDim = 256
    public var bert: BertConfig = {
        var b = BertConfig.albefBase
        b.numHiddenLayers = ALBEFNLVRConfig.textEncoderLayers
        return b
    }()
    public var prune: PruneConfig? = nil
    public var specialTokens = SpecialTokens.bertBaseUncased
    /// Labels: 0 the caption's image is the left one, 1 it is the right one, 2 neither.
    public static let classCount = 3

    public init() {}

    public var kind: String { "albef-nlvr2-ta" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// Pretrain_nlvr.py tokenises the pre-training captions with max_length 25 and truncation.
    public var captionStyle: CaptionStyle { .albef(maxLength: min(25, bert.maxPositionEmbeddings)) }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? ALBEFNLVRConfig.officialFusionLayer }
    public func makeModel() throws -> any TrainableModel { try ALBEFNLVRTextAssignmentModel(config: self) }

    public var summary: String {
        "ALBEF NLVR2 text assignment: ViT \(vision.depth)x\(vision.embedDim) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize) (left/right image alternating, key/value shared per pair), 3-way ta_head"
    }

    /// The model keys of NLVR_pretrain.yaml (`image_res`, `vision_width`, `embed_dim`,
    /// `bert_config`) and `vision`.
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFNLVRTextAssignmentConfig {
        var c = ALBEFNLVRTextAssignmentConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        if let v = try s.section("vision") { c.vision = try VisionConfig.read(v) }
        c.visionWidth = try s.int("vision_width", default: c.vision.embedDim, in: 1...65536)
        c.embedDim = try s.int("embed_dim", default: c.embedDim, in: 1...65536)
        if let path = try s.string("bert_config") {
            c.bert = try BertConfig.load(location.resolve(path, key: "bert_config", in: s))
            if c.bert.fusionLayer == nil { c.bert.fusionLayer = ALBEFNLVRConfig.officialFusionLayer }
            c.bert.numHiddenLayers = ALBEFNLVRConfig.textEncoderLayers(bertLayers: c.bert.numHiddenLayers, fusion: c.bert.fusionLayer ?? 6)
            if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        }
        return c
    }

    public func validate(file: String) throws {
        func fail(_ key: String, _ m: String) -> ConfigError { ConfigError(file: file, key: key, message: m) }
        try vision.checkResolution(imageRes, file: file, key: "image_res")
        guard prune == nil else { throw fail("img_prune", "the text-assignment stage does not prune") }
        guard visionWidth == vision.embedDim else { throw fail("vision_width", "\(visionWidth) must equal the ViT width \(vision.embedDim)") }
        guard fusionLayer >= 1, bert.numHiddenLayers > fusionLayer, (bert.numHiddenLayers - fusionLayer) % 2 == 0 else {
            throw fail("bert_config", "NLVR2 needs text layers, then fusion layers in left/right pairs, got fusion_layer \(fusionLayer) of \(bert.numHiddenLayers) layers")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim)")
        }
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// Image-text retrieval fine-tuning of ALBEF (SPEC-ALBEF-TASKS §2; models/model_retrieval.py):
/// the model keys of the official `Retrieval_coco.yaml` / `Retrieval_flickr.yaml` plus the
/// `vision:` section (ALBEF hard-codes ViT-B/16). No pruning downstream.
public struct ALBEFRetrievalConfig: ModelConfig, Equatable {
    public var imageRes = 384
    public var vision = VisionConfig()
    public var bert = BertConfig.albefBase
    public var embedDim = 256
    public var queueSize = 65536
    public var temp: Float = 0.07
    public var momentum: Float = 0.995
    /// Distillation weight; `warm_up` ramps it over epoch 0. Without `distill` the ITC targets
    /// are the id-aware positives alone (the momentum model still fills the queues).
    public var alpha: Float = 0.4
    public var distill = true
    public var warmUp = true
    /// ITC shortlist per query at evaluation, re-ranked by ITM (COCO 256, Flickr30K 128).
    public var kTest = 256
    public var prune: PruneConfig? = nil
    public var specialTokens = SpecialTokens.bertBaseUncased

    public init() {}

    public var kind: String { "albef-retrieval" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// caption_dataset.py: `pre_caption(caption, 30)`, padded to the longest, not truncated.
    public var captionStyle: CaptionStyle { .albef(maxLength: min(30, bert.maxPositionEmbeddings)) }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? 6 }
    public func makeModel() throws -> any TrainableModel { try ALBEFRetrievalModel(config: self) }

    public var summary: String {
        "ALBEF retrieval: ViT \(vision.depth)x\(vision.embedDim) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize), embed \(embedDim), queue \(queueSize), k_test \(kTest)"
    }

    /// The model keys of Retrieval_*.yaml's top level.
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFRetrievalConfig {
        var c = ALBEFRetrievalConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        if let v = try s.section("vision") { c.vision = try VisionConfig.read(v) }
        let visionWidth = try s.int("vision_width", default: c.vision.embedDim, in: 1...(1 << 16))
        guard visionWidth == c.vision.embedDim else {
            throw ConfigError(file: s.file, key: "vision_width", message: "\(visionWidth) differs from the ViT width \(c.vision.embedDim)")
        }
        c.embedDim = try s.int("embed_dim", default: c.embedDim, in: 1...(1 << 16))
        c.queueSize = try s.int("queue_size", default: c.queueSize, in: 1...(1 << 24))
        c.temp = try s.float("temp", default: c.temp, in: 1e-6...100)
        c.momentum = try s.float("momentum", default: c.momentum, in: 0...1)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        c.distill = try s.bool("distill", default: c.distill)
        c.warmUp = try s.bool("warm_up", default: c.warmUp)
        c.kTest = try s.int("k_test", default: c.kTest, in: 1...(1 << 24))
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
        guard prune == nil else { throw fail("img_prune", "retrieval fine-tuning does not prune (ELIP prunes only in pre-training)") }
        guard fusionLayer >= 1, fusionLayer < bert.numHiddenLayers else {
            throw fail("bert_config", "fusion_layer \(fusionLayer) must leave text layers below and fusion layers above it (1 ..< num_hidden_layers \(bert.numHiddenLayers))")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim) (the fusion layers read image tokens)")
        }
    }
}

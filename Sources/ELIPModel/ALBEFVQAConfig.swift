import ELIPConfig
import ELIPEncoders
import ELIPImage
import ELIPObjectives
import ELIPPruning
import ELIPText
import Foundation

/// VQA fine-tuning of ALBEF (SPEC-ALBEF-TASKS §3; models/model_vqa.py): the model keys of the
/// official `VQA.yaml` plus the `vision:` section. The answer decoder is built from the same
/// BERT config with `decoderLayers` layers, every one cross-attending to the question states.
public struct ALBEFVQAConfig: ModelConfig, Equatable {
    public var imageRes = 384
    public var vision = VisionConfig()
    public var bert = BertConfig.albefBase
    /// Layers of the answer decoder (`decoder_layers`; model_vqa.py hard-codes
    /// `num_hidden_layers = 6`, `fusion_layer = 0`).
    public var decoderLayers = 6
    /// The text layer whose weights start decoder layer 0 when a pre-training checkpoint is
    /// loaded (`decoder_init_from_layer`): text layers n >= it become decoder layers n - it.
    /// VQA.py hard-codes 6 (BERT-base's fusion layers 6-11 -> decoder 0-5); a smaller BERT, such
    /// as the demo's 3+3 layers, sets its own fusion layer so the decoder starts from the fusion
    /// layers rather than from random weights. At or above the text depth no layer is copied
    /// (as VQA.py with a BERT of 6 or fewer layers).
    public var decoderInitFromLayer = ALBEFTaskCheckpoint.scriptFusionLayer
    /// Distillation weight (`alpha`); `warm_up` ramps it over epoch 0 (VQA.yaml: on).
    public var alpha: Float = 0.4
    public var warmUp = true
    /// Momentum model and distillation (`distill`).
    public var distill = true
    /// EMA coefficient, hard-coded 0.995 in model_vqa.py.
    public var momentum: Float = 0.995
    /// Candidates `rank_answer` re-scores per question (`k_test`).
    public var kTest = 128
    public var prune: PruneConfig? = nil
    public var specialTokens = SpecialTokens.bertBaseUncased

    public init() {}

    public var kind: String { "albef-vqa" }
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }
    public var vocabularySize: Int { bert.vocabSize }
    public var maxTextPositions: Int { bert.maxPositionEmbeddings }
    /// Training questions as vqa_dataset.py and VQA.py make them: `pre_question(q, 30)`, ALBEF
    /// framing, truncated to 25 tokens, padded to the longest.
    public var captionStyle: CaptionStyle {
        CaptionStyle(cleaning: .question, framing: .albef, maxLength: min(25, bert.maxPositionEmbeddings), padToMaxLength: false, maxWords: 30)
    }
    /// Test questions (VQA.py's evaluation): `pre_question(q, 50)`, padded to the longest, not
    /// truncated (up to the position table).
    public var testQuestionStyle: CaptionStyle {
        CaptionStyle(cleaning: .question, framing: .albef, maxLength: bert.maxPositionEmbeddings, padToMaxLength: false, maxWords: 50)
    }
    /// Answers (`answer + "[SEP]"`, the special token kept whole): padded to the longest, not
    /// truncated (up to the position table).
    public var answerStyle: CaptionStyle {
        CaptionStyle(cleaning: .none, framing: .albef, maxLength: bert.maxPositionEmbeddings, padToMaxLength: false)
    }
    public var trainingRandAugment: RandAugment { .albef }
    public var fusionLayer: Int { bert.fusionLayer ?? 6 }
    public func makeModel() throws -> any TrainableModel { try ALBEFVQAModel(config: self) }

    /// The decoder's BERT config (model_vqa.py: `num_hidden_layers = 6`, `fusion_layer = 0`).
    public var decoderBert: BertConfig {
        var d = bert
        d.numHiddenLayers = decoderLayers
        d.fusionLayer = 0
        return d
    }

    public var summary: String {
        "ALBEF VQA: ViT \(vision.depth)x\(vision.embedDim) at \(imageRes) px, BERT \(fusionLayer)+\(bert.numHiddenLayers - fusionLayer) layers x \(bert.hiddenSize), answer decoder \(decoderLayers) layers, k_test \(kTest), distillation \(distill ? "on" : "off")"
    }

    /// The model keys of VQA.yaml's top level (`image_res`, `alpha`, `distill`, `warm_up`,
    /// `k_test`, `vision`, `bert_config`) and this tool's `decoder_layers`, `decoder_init_from_layer`.
    public static func read(_ s: ConfigSection, location: ConfigLocation) throws -> ALBEFVQAConfig {
        var c = ALBEFVQAConfig()
        c.imageRes = try s.int("image_res", default: c.imageRes, in: 1...16384)
        c.alpha = try s.float("alpha", default: c.alpha, in: 0...1)
        c.distill = try s.bool("distill", default: c.distill)
        c.warmUp = try s.bool("warm_up", default: c.warmUp)
        c.kTest = try s.int("k_test", default: c.kTest, in: 1...(1 << 20))
        c.decoderLayers = try s.int("decoder_layers", default: c.decoderLayers, in: 1...1024)
        c.decoderInitFromLayer = try s.int("decoder_init_from_layer", default: c.decoderInitFromLayer, in: 1...1024)
        // The answers' end-of-sequence text: only BERT's [SEP] (the tokenizer keeps it whole).
        _ = try s.choice("eos", ["[SEP]"])
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
        guard prune == nil else { throw fail("img_prune", "VQA fine-tuning does not prune (ELIP prunes only in pre-training)") }
        guard fusionLayer >= 1, fusionLayer < bert.numHiddenLayers else {
            throw fail("bert_config", "fusion_layer \(fusionLayer) must leave text layers below and fusion layers above it (1 ..< num_hidden_layers \(bert.numHiddenLayers))")
        }
        guard bert.encoderWidth ?? bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "encoder_width \(bert.encoderWidth ?? bert.hiddenSize) must equal the ViT width \(vision.embedDim) (the fusion layers read image tokens)")
        }
        // The decoder's cross-attention key/value are Linear(encoder_width) over question states.
        guard bert.hiddenSize == vision.embedDim else {
            throw fail("bert_config", "hidden_size \(bert.hiddenSize) must equal the ViT width \(vision.embedDim): the answer decoder's cross-attention (width encoder_width) reads the question states")
        }
        guard decoderLayers >= 1 else { throw fail("decoder_layers", "the answer decoder needs at least one layer") }
    }
}

import ELIPConfig
import Foundation

/// BERT configuration in HuggingFace / ALBEF `config_bert.json` form.
public struct BertConfig: Equatable, Sendable {
    public var vocabSize = 30522
    public var hiddenSize = 768
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var intermediateSize = 3072
    public var hiddenDropoutProb: Float = 0.1
    public var attentionProbsDropoutProb: Float = 0.1
    public var maxPositionEmbeddings = 512
    /// Rows of the token-type table; 0: no token-type embeddings (BLIP's med.py).
    public var typeVocabSize = 2
    public var layerNormEps: Float = 1e-12
    /// First layer with cross-attention; layers below form the text encoder (ALBEF). nil: none.
    public var fusionLayer: Int?
    /// Width of the image tokens the cross-attention reads (nil: the hidden size).
    public var encoderWidth: Int?
    /// BLIP's med_config: cross-attention in every layer (nil when the file does not say).
    public var addCrossAttention: Bool?

    public init() {}

    /// ALBEF's bert-base config with fusion from layer 6.
    public static var albefBase: BertConfig {
        var c = BertConfig()
        c.fusionLayer = 6
        c.encoderWidth = 768
        return c
    }

    /// Reads a HuggingFace-style config (JSON). Unknown keys are errors; HuggingFace metadata
    /// keys are accepted and ignored (`IgnoredKeys.bertJSON`).
    public static func read(_ s: ConfigSection) throws -> BertConfig {
        var c = BertConfig()
        c.vocabSize = try s.int("vocab_size", default: c.vocabSize, in: 1...(1 << 24))
        c.hiddenSize = try s.int("hidden_size", default: c.hiddenSize, in: 1...65536)
        c.numHiddenLayers = try s.int("num_hidden_layers", default: c.numHiddenLayers, in: 1...1024)
        c.numAttentionHeads = try s.int("num_attention_heads", default: c.numAttentionHeads, in: 1...4096)
        c.intermediateSize = try s.int("intermediate_size", default: c.intermediateSize, in: 1...(1 << 20))
        c.hiddenDropoutProb = try s.float("hidden_dropout_prob", default: c.hiddenDropoutProb, in: 0...0.999)
        c.attentionProbsDropoutProb = try s.float("attention_probs_dropout_prob", default: c.attentionProbsDropoutProb, in: 0...0.999)
        c.maxPositionEmbeddings = try s.int("max_position_embeddings", default: c.maxPositionEmbeddings, in: 2...(1 << 20))  // [CLS] and at least one word
        c.typeVocabSize = try s.int("type_vocab_size", default: c.typeVocabSize, in: 0...(1 << 16))
        c.layerNormEps = try s.float("layer_norm_eps", default: c.layerNormEps, in: 1e-30...1)
        _ = try s.choice("hidden_act", ["gelu"])
        _ = try s.choice("position_embedding_type", ["absolute"])
        c.fusionLayer = try s.int("fusion_layer", in: 0...c.numHiddenLayers)
        c.encoderWidth = try s.int("encoder_width", in: 1...65536)
        if s.contains("add_cross_attention") { c.addCrossAttention = try s.bool("add_cross_attention", default: false) }
        try s.finish()  // a misspelt key is reported before what it would have changed
        guard c.hiddenSize % c.numAttentionHeads == 0 else {
            throw s.error("hidden_size", "\(c.hiddenSize) must be a multiple of num_attention_heads \(c.numAttentionHeads)")
        }
        return c
    }

    /// Loads a config file.
    public static func load(_ path: String) throws -> BertConfig {
        try read(ConfigSection.load(path, ignoring: .bertJSON))
    }
}

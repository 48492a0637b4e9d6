import Foundation
import Yams

/// Errors reading configuration files.
public struct ConfigError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}

/// How a pruning stage scores the candidate tokens (SPEC §2).
public enum PruneScoring: String, Codable, Sendable, CaseIterable {
    /// The paper's method: the fused query runs through all of the stage's layers (no gradient)
    /// and the stage's last layer's attention of position 0 scores the tokens.
    case lookAhead = "look_ahead"
    /// Ablation (EViT-style, cheaper): the fused query's attention in the stage's FIRST layer,
    /// on the stage's input tokens; no look-ahead layers run.
    case inline

    /// "look_ahead or inline", for messages.
    public static var choices: String { allCases.map(\.rawValue).joined(separator: " or ") }

    /// The mode called `name`; otherwise an error naming `setting` and the valid modes.
    public init(parsing name: String, setting: String) throws {
        guard let mode = PruneScoring(rawValue: name) else { throw UnknownPruneScoring(setting: setting, name: name) }
        self = mode
    }
}

public struct UnknownPruneScoring: Error, CustomStringConvertible {
    public let setting: String, name: String
    public var description: String { "\(setting) must be \(PruneScoring.choices), not '\(name)'" }
}

/// ELIP pruning schedule (SPEC §2): stage j starts at layer `beginLayer[j]`, spans
/// `numActLayers[j]` layers, and keeps floor(N0 * keepRatio[j]) tokens.
public struct PruneConfig: Codable, Equatable, Sendable {
    public var beginLayer: [Int]
    public var numActLayers: [Int]
    public var keepRatio: [Double]
    /// How tokens are scored (`scoring:` in `img_prune`; default `look_ahead`).
    public var scoring: PruneScoring = .lookAhead

    enum CodingKeys: String, CodingKey {
        case beginLayer = "begin_layer", numActLayers = "num_act_layers", keepRatio = "keep_ratio", scoring
    }

    public init(beginLayer: [Int], numActLayers: [Int], keepRatio: [Double], scoring: PruneScoring = .lookAhead) {
        self.beginLayer = beginLayer
        self.numActLayers = numActLayers
        self.keepRatio = keepRatio
        self.scoring = scoring
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        beginLayer = try c.decode([Int].self, forKey: .beginLayer)
        numActLayers = try c.decode([Int].self, forKey: .numActLayers)
        keepRatio = try c.decode([Double].self, forKey: .keepRatio)
        if let raw = try c.decodeIfPresent(String.self, forKey: .scoring) {
            scoring = try PruneScoring(parsing: raw, setting: "scoring")
        }
    }

    /// Paper default for ALBEF (ELIP ALBEF/configs/Pretrain.yaml).
    public static let albef = PruneConfig(beginLayer: [2, 4, 10], numActLayers: [2, 6, 2], keepRatio: [0.90, 0.65, 0.40])

    /// Kept tokens per stage for `patchCount` original patches (floor, as Python's int()).
    public func keepCounts(patchCount: Int) -> [Int] {
        keepRatio.map { Int(Double(patchCount) * $0) }
    }

    /// Checks the schedule against a ViT of `depth` layers and `patchCount` patches.
    public func validate(depth: Int, patchCount: Int) throws {
        func fail(_ m: String) -> ConfigError { ConfigError(file: "img_prune", message: m) }
        guard beginLayer.count == numActLayers.count, beginLayer.count == keepRatio.count else {
            throw fail("begin_layer, num_act_layers and keep_ratio must have the same length")
        }
        var end = 0
        for j in beginLayer.indices {
            guard beginLayer[j] >= end, numActLayers[j] >= 1, beginLayer[j] + numActLayers[j] <= depth else {
                throw fail("stage \(j) (begin \(beginLayer[j]), \(numActLayers[j]) layers) overlaps the previous stage or runs past depth \(depth)")
            }
            end = beginLayer[j] + numActLayers[j]
            guard keepRatio[j] > 0, keepRatio[j] <= 1 else { throw fail("keep_ratio[\(j)] = \(keepRatio[j]) must be in (0, 1]") }
        }
        let keeps = keepCounts(patchCount: patchCount)
        for j in keeps.indices where keeps[j] < 1 || (j > 0 && keeps[j] > keeps[j - 1]) {
            throw fail("keep counts \(keeps) must be positive and non-increasing")
        }
    }
}

/// ViT shape (the `vision:` section; ALBEF hard-codes ViT-B/16).
public struct VisionConfig: Codable, Equatable, Sendable {
    public var patchSize = 16
    public var embedDim = 768
    public var depth = 12
    public var numHeads = 12
    public var mlpRatio = 4.0

    enum CodingKeys: String, CodingKey {
        case patchSize = "patch_size", embedDim = "embed_dim", depth, numHeads = "num_heads", mlpRatio = "mlp_ratio"
    }

    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 16
        embedDim = try c.decodeIfPresent(Int.self, forKey: .embedDim) ?? 768
        depth = try c.decodeIfPresent(Int.self, forKey: .depth) ?? 12
        numHeads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? 12
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? 4
    }
}

/// BERT configuration in HuggingFace/ALBEF `config_bert.json` form.
public struct BertConfig: Codable, Equatable, Sendable {
    public var vocabSize = 30522
    public var hiddenSize = 768
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var intermediateSize = 3072
    public var hiddenDropoutProb: Float = 0.1
    public var attentionProbsDropoutProb: Float = 0.1
    public var maxPositionEmbeddings = 512
    public var typeVocabSize = 2
    public var layerNormEps: Float = 1e-12
    public var hiddenAct = "gelu"
    /// First layer with cross-attention; layers below form the text encoder. Plain BERT: = layers.
    public var fusionLayer: Int?
    /// Width of the image tokens the cross-attention reads.
    public var encoderWidth: Int?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act", fusionLayer = "fusion_layer"
        case encoderWidth = "encoder_width"
    }

    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = BertConfig()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        hiddenDropoutProb = try c.decodeIfPresent(Float.self, forKey: .hiddenDropoutProb) ?? d.hiddenDropoutProb
        attentionProbsDropoutProb = try c.decodeIfPresent(Float.self, forKey: .attentionProbsDropoutProb) ?? d.attentionProbsDropoutProb
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? d.typeVocabSize
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        fusionLayer = try c.decodeIfPresent(Int.self, forKey: .fusionLayer)
        encoderWidth = try c.decodeIfPresent(Int.self, forKey: .encoderWidth)
    }

    /// ALBEF's bert-base config with fusion from layer 6.
    public static var albefBase: BertConfig {
        var c = BertConfig()
        c.fusionLayer = 6
        c.encoderWidth = 768
        return c
    }

    public static func load(_ path: String) throws -> BertConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, message: "cannot read the file")
        }
        do {
            let c = try JSONDecoder().decode(BertConfig.self, from: data)
            try c.validate(file: path)
            return c
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(file: path, message: "not a valid BERT config: \(error)")
        }
    }

    func validate(file: String) throws {
        guard hiddenSize > 0, numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw ConfigError(file: file, message: "hidden_size \(hiddenSize) must be a positive multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard hiddenAct == "gelu" else { throw ConfigError(file: file, message: "hidden_act \(hiddenAct) is not supported (only exact gelu)") }
        if let f = fusionLayer, f < 0 || f > numHiddenLayers {
            throw ConfigError(file: file, message: "fusion_layer \(f) outside [0, \(numHiddenLayers)]")
        }
    }
}

/// ALBEF pre-training configuration (`Pretrain.yaml` keys) plus the `vision:` section.
public struct ALBEFConfig {
    public var imageRes = 256
    public var visionWidth = 768
    public var embedDim = 256
    public var batchSize = 64
    public var temp: Float = 0.07
    public var mlmProbability: Float = 0.15
    public var queueSize = 65536
    public var momentum: Float = 0.995
    public var alpha: Float = 0.4
    /// nil: no pruning (plain ALBEF).
    public var prune: PruneConfig? = .albef
    /// Weight of the text [CLS] in the fused query is 1 - lambda.
    public var pruneLambda: Float = 0.8
    public var vision = VisionConfig()
    public var bert = BertConfig.albefBase
    /// Every top-level key of the file, for sections other modules read (optimizer, data, ...).
    public var raw: [String: Any] = [:]

    public init() {}

    /// Number of patches of the original image (N0).
    public var patchCount: Int { (imageRes / vision.patchSize) * (imageRes / vision.patchSize) }

    /// Reads a Pretrain.yaml (YAML or JSON); `bert_config` is resolved relative to the file's
    /// folder when it is not found as given.
    public static func load(_ path: String) throws -> ALBEFConfig {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, message: "cannot read the file as UTF-8 text")
        }
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch { throw ConfigError(file: path, message: "YAML syntax error: \(error)") }
        guard let dict = node as? [String: Any] else { throw ConfigError(file: path, message: "top level must be a mapping") }
        var c = try ALBEFConfig(dictionary: dict, file: path)
        if let bertPath = dict["bert_config"] as? String {
            let dir = (path as NSString).deletingLastPathComponent
            let candidates = [bertPath, (dir as NSString).appendingPathComponent(bertPath),
                              (dir as NSString).appendingPathComponent((bertPath as NSString).lastPathComponent)]
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw ConfigError(file: path, message: "bert_config \(bertPath) not found (tried \(candidates.joined(separator: ", ")))")
            }
            c.bert = try BertConfig.load(found)
        }
        if c.bert.fusionLayer == nil { c.bert.fusionLayer = 6 }
        if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        try c.validate(file: path)
        return c
    }

    public init(dictionary d: [String: Any], file: String) throws {
        func number(_ key: String) throws -> Double? {
            guard let v = d[key] else { return nil }
            if let x = v as? Double { return x }
            if let x = v as? Int { return Double(x) }
            if let s = v as? String, let x = Double(s) { return x }  // YAML 1.1 reads "1e-4" as a string
            throw ConfigError(file: file, message: "\(key) must be a number, got \(v)")
        }
        raw = d
        if let v = try number("image_res") { imageRes = Int(v) }
        if let v = try number("vision_width") { visionWidth = Int(v) }
        if let v = try number("embed_dim") { embedDim = Int(v) }
        if let v = try number("batch_size") { batchSize = Int(v) }
        if let v = try number("temp") { temp = Float(v) }
        if let v = try number("mlm_probability") { mlmProbability = Float(v) }
        if let v = try number("queue_size") { queueSize = Int(v) }
        if let v = try number("momentum") { momentum = Float(v) }
        if let v = try number("alpha") { alpha = Float(v) }
        if let v = try number("prune_lambda") { pruneLambda = Float(v) }
        if d.keys.contains("img_prune") {
            if let p = d["img_prune"] as? [String: Any] {
                do {
                    let json = try JSONSerialization.data(withJSONObject: p)
                    prune = try JSONDecoder().decode(PruneConfig.self, from: json)
                } catch { throw ConfigError(file: file, message: "img_prune: \(error)") }
            } else {
                prune = nil  // `img_prune: null` or `img_prune: false` turns pruning off
            }
        }
        if let v = d["vision"] {
            guard let p = v as? [String: Any] else { throw ConfigError(file: file, message: "vision must be a mapping") }
            do {
                let json = try JSONSerialization.data(withJSONObject: p)
                vision = try JSONDecoder().decode(VisionConfig.self, from: json)
            } catch { throw ConfigError(file: file, message: "vision: \(error)") }
        } else {
            vision.embedDim = visionWidth
        }
    }

    public func validate(file: String) throws {
        guard vision.embedDim == visionWidth else {
            throw ConfigError(file: file, message: "vision_width \(visionWidth) differs from vision.embed_dim \(vision.embedDim)")
        }
        guard imageRes > 0, imageRes % vision.patchSize == 0 else {
            throw ConfigError(file: file, message: "image_res \(imageRes) must be a multiple of patch_size \(vision.patchSize)")
        }
        guard vision.embedDim % vision.numHeads == 0 else {
            throw ConfigError(file: file, message: "vision embed_dim \(vision.embedDim) not divisible by num_heads \(vision.numHeads)")
        }
        guard queueSize > 0, embedDim > 0 else { throw ConfigError(file: file, message: "queue_size and embed_dim must be positive") }
        if let prune {
            try prune.validate(depth: vision.depth, patchCount: patchCount)
            // The fused query mixes the text [CLS] state into the image [CLS] token.
            guard bert.hiddenSize == vision.embedDim else {
                throw ConfigError(file: file, message: "pruning mixes the text [CLS] (hidden_size \(bert.hiddenSize)) into the image [CLS] (vision embed_dim \(vision.embedDim)): the widths must be equal, or turn pruning off (img_prune: null)")
            }
        }
        try bert.validate(file: file)
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

// METER outside pre-training steps: the initial checkpoint from pretrained parts and the
// reference case's replay.
extension METERModel: PairMatchingModel {
    // MARK: PairMatchingModel (compute_irtr_recall without rank_output: the ITM head)

    /// The ITM "match" logit of each (caption b, image b) from a full `infer()`, the ViT pruned
    /// under caption b as officially in every evaluation pass. The official retrieval ranks by
    /// the fine-tuned `rank_output`; a pre-trained model has none, so its ITM head's match row
    /// (which `rank_output` is initialised from) scores instead.
    public func pairMatchScores(texts: TextBatch, images: Tensor) throws -> [Float] {
        try Autograd.noGrad {
            let logits = try itmHead(infer(texts, images: images, outputs: .pooledOnly, dropout: nil).fused.clsFeats).toArray()
            return (0..<texts.batch).map { logits[2 * $0 + 1] }
        }
    }

    // MARK: initial checkpoint (SPEC-METER §2, §4)

    public var pretrainedSources: [String] { ["clip", "roberta"] }

    /// As METER's build_model: the ViT from OpenAI CLIP's `visual.*` (its last block and `proj`
    /// are not part of the model; the position grid resized bicubically, CLS row kept), RoBERTa
    /// from HuggingFace's `roberta.*` (or unprefixed) names; fusion and heads random.
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        guard let clip = files["clip"], let roberta = files["roberta"] else {
            throw CheckpointError(file: "import", message: "METER needs a CLIP file (clip) and a RoBERTa file (roberta)")
        }
        try initialiseRandomly(seed: seed)
        var loaded = (clip: 0, roberta: 0)
        for (entry, tensor) in zip(parameters.entries, parameters.tensors) {
            if entry.name.hasPrefix("vit_model.") {
                let source = String(entry.name.dropFirst("vit_model.".count))
                guard let e = clip[source] else { throw CheckpointError(file: clip.path, message: "\(source) missing (CLIP ViT)") }
                if source == "visual.positional_embedding" && e.elementCount != entry.count {
                    guard e.shape.count == 2, e.shape[1] == entry.shape[1] else {
                        throw CheckpointError(file: clip.path, message: "\(source): shape \(e.shape), expected [tokens, \(entry.shape[1])]")
                    }
                    do {
                        try tensor.assign(PretrainedImport.resizePositionEmbedding(clip.floats(source), shape: [1] + e.shape, toTokens: entry.shape[0]))
                    } catch let error as CheckpointError {
                        throw CheckpointError(file: clip.path, message: "\(source): \(error.message)")
                    }
                } else {
                    guard e.elementCount == entry.count else {
                        throw CheckpointError(file: clip.path, message: "\(source): shape \(e.shape), expected \(entry.shape)")
                    }
                    try tensor.withUnsafeMutableBufferPointer { try clip.copyFloats(source, into: $0.baseAddress!, count: entry.count) }
                }
                loaded.clip += 1
            } else if entry.name.hasPrefix("text_transformer.") {
                let rest = String(entry.name.dropFirst("text_transformer.".count))
                guard let source = [rest, "roberta." + rest].first(where: roberta.contains), let e = roberta[source] else {
                    throw CheckpointError(file: roberta.path, message: "\(rest) missing (RoBERTa)")
                }
                guard e.elementCount == entry.count else {
                    throw CheckpointError(file: roberta.path, message: "\(source): shape \(e.shape), expected \(entry.shape)")
                }
                try tensor.withUnsafeMutableBufferPointer { try roberta.copyFloats(source, into: $0.baseAddress!, count: entry.count) }
                loaded.roberta += 1
            }
        }
        let fresh = parameters.entries.count - loaded.clip - loaded.roberta
        return ["CLIP ViT: \(loaded.clip) tensors from \(clip.path)", "RoBERTa: \(loaded.roberta) tensors from \(roberta.path)",
                "random init: \(fresh) tensors (cross-modal transforms, token types, co-attention layers, poolers, MLM and ITM heads)"]
    }

    // MARK: reference case (shared/reference/meter-tiny layout)

    static func isReferenceCase(_ dir: String) -> Bool {
        let path = (dir as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return json["meter"] != nil && json["roberta"] != nil
    }

    /// The case's config.json (official `meter` keys, `roberta`, `vit`, `keep_base_tokens`,
    /// `special_ids`, `lambda_`), weights.safetensors (official names) and batch.safetensors
    /// (`image`, `false_image`, `text_ids`, `text_masks`, `text_ids_mlm`, `text_labels_mlm`,
    /// `itm_labels`): the model, the batch and the recorded draws.
    static func referenceCase(_ dir: String) throws -> ReferenceCase {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let configPath = path("config.json")
        let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError(file: configPath, message: "not a JSON object")
        }
        let root = ConfigSection(values: json, file: configPath)
        guard let meter = try root.section("meter") else { throw root.missing("meter") }
        guard let vit = try root.section("vit") else { throw root.missing("vit") }
        guard let robertaSection = try root.section("roberta") else { throw root.missing("roberta") }
        guard let special = try root.section("special_ids") else { throw root.missing("special_ids") }

        var c = METERConfig()
        // A RobertaConfig as HuggingFace writes it (its keys at the top level of IgnoredKeys.bertJSON).
        _ = robertaSection
        c.roberta = try BertConfig.read(ConfigSection(values: json["roberta"] as? [String: Any] ?? [:], file: "\(configPath) (roberta)",
                                                      ignoring: .bertJSON))
        c.vision.width = try vit.int("width", default: c.vision.width, in: 1...65536)
        c.vision.heads = try vit.int("heads", default: c.vision.width / 64, in: 1...4096)
        c.vision.blocks = try vit.int("resblocks", default: c.vision.blocks, in: 1...1024)
        c.vision.layerNormEps = try vit.float("ln_eps", default: c.vision.layerNormEps, in: 1e-30...1)
        c.vision.patchSize = try meter.int("patch_size", default: c.vision.patchSize, in: 1...4096)
        c.imageRes = try meter.int("image_size", default: c.imageRes, in: 1...16384)
        c.fusionHidden = try meter.int("hidden_size", default: c.fusionHidden, in: 1...65536)
        c.fusionHeads = try meter.int("num_heads", default: c.fusionHeads, in: 1...4096)
        c.fusionLayers = try meter.int("num_top_layer", default: c.fusionLayers, in: 1...1024)
        c.maxTextLength = try meter.int("max_text_len", default: c.maxTextLength, in: 3...(1 << 16))
        c.prune = try PruneConfig.read(meter, fallback: c.prune)
        // The base the official code computed ((resolution_before // 32)²), as the case states it.
        guard let base = try root.int("keep_base_tokens", in: 1...(1 << 24)) else { throw root.missing("keep_base_tokens") }
        c.keepBaseOverride = base
        if let before = try meter.int("resolution_before", in: 1...16384), (before / 32) * (before / 32) != base {
            throw meter.error("resolution_before", "(\(before) // 32)² ≠ keep_base_tokens \(base)")
        }
        if let lambda = try root.double("lambda_", in: 0...1) { c.prune?.lambda = Float(lambda) }
        func id(_ key: String) throws -> Int {
            guard let v = try special.int(key, in: 0...(c.roberta.vocabSize - 1)) else { throw special.missing(key) }
            return v
        }
        c.specialTokens = .init(pad: try id("pad"), unknown: try id("unk"), cls: try id("bos"), sep: try id("eos"), mask: try id("mask"))
        guard c.roberta.hiddenSize == (try meter.int("input_text_embed_size", default: c.roberta.hiddenSize, in: 1...65536)),
              c.vision.width == (try meter.int("input_image_embed_size", default: c.vision.width, in: 1...65536)) else {
            throw meter.error("input_text_embed_size / input_image_embed_size must equal RoBERTa's hidden size and the ViT width")
        }
        try c.validate(file: configPath)

        let model = try METERModel(config: c)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: path("weights.safetensors")))
        let file = try SafetensorsFile(path: path("batch.safetensors"))
        let imageEntry = try file.entry("image"), idsEntry = try file.entry("text_ids")
        guard imageEntry.shape.count == 4, idsEntry.shape.count == 2, imageEntry.shape[0] == idsEntry.shape[0] else {
            throw CheckpointError(file: file.path, message: "image must be [B, 3, R, R] and text_ids [B, L] with the same B, got \(imageEntry.shape) and \(idsEntry.shape)")
        }
        let text = try TextBatch(ids: file.int64s("text_ids").map { Int($0) }, mask: file.int64s("text_masks").map { Int($0) },
                                 batch: idsEntry.shape[0], length: idsEntry.shape[1])
        let batch = ImageTextBatch(images: try Tensor(file.floats("image"), shape: imageEntry.shape), text: text)
        var context = StepContext(seed: 0, dropout: false)
        context.inspection = true
        for name in ["text_ids_mlm", "text_labels_mlm", "itm_labels"] {
            context.recorded.ints[name] = try file.int64s(name).map { Int($0) }
        }
        context.recorded.floats["false_image"] = try file.floats("false_image")
        return ReferenceCase(model: model, batch: batch, context: context, normFloor: 1e-5)
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import Safetensors
import Foundation

// ALBEF outside pre-training steps: retrieval scoring, pruning guidance, the initial checkpoint
// from pretrained parts, and the reference case's replay.
extension ALBEFModel {
    // MARK: ImageTextRetrievalModel (ALBEF's Retrieval.py evaluation)

    public var retrievalShapes: RetrievalShapes {
        RetrievalShapes(imageRes: config.imageRes, maxTextPositions: config.bert.maxPositionEmbeddings, textWidth: config.bert.hiddenSize,
                        imageTokens: config.patchCount + 1, imageWidth: config.visionWidth, featureWidth: config.embedDim)
    }

    /// Text encoder in mode 'text', text_proj of [CLS], L2-normalised.
    public func encodeTexts(_ text: TextBatch) throws -> (states: Tensor, features: Tensor) {
        try Autograd.noGrad {
            let states = try textLayers(textEmbeddings(text, dropout: nil), mask: text, dropout: nil)
            return (states, try textProj(Self.cls(states)).l2Normalized())
        }
    }

    /// The unpruned ViT, vision_proj of [CLS], L2-normalised.
    public func encodeImages(_ images: Tensor) throws -> (tokens: Tensor, features: Tensor) {
        try Autograd.noGrad {
            let tokens = try visualEncoder(images).tokens
            return (tokens, try visionProj(Self.cls(tokens)).l2Normalized())
        }
    }

    /// ITM positive logit of fusion(caption b, image imageRows[b]) (ALBEF's itm_eval ignores the
    /// similarity).
    public func matchScores(texts mask: TextBatch, textStates: Tensor, images: Tensor, imageRows: [Int], similarities: [Float]) throws -> [Float] {
        try Autograd.noGrad {
            let out = try fusionLayers(textStates, mask: mask, images: fusionLayers.crossAttentionContext(images),
                                       imageRows: imageRows, dropout: nil)
            let logits = try itmHead(Self.cls(out)).toArray()
            return (0..<mask.batch).map { logits[2 * $0 + 1] }
        }
    }

    // MARK: TextGuidedPruningModel

    public var prunableVisionEncoder: any PrunableVisionEncoder { visualEncoder }

    /// The text encoder's output [CLS] of `text` guides the pruning, as in `step`.
    public func pruning(guidedBy text: TextBatch, schedule: PruneConfig) throws -> ELIPPruning {
        let states = try Autograd.noGrad { try textLayers(textEmbeddings(text, dropout: nil), mask: text, dropout: nil) }
        return ELIPPruning(schedule: schedule, patchCount: config.patchCount, textCLS: try Self.cls(states))
    }

    // MARK: initial checkpoint

    public var pretrainedSources: [String] { ["vit", "bert"] }

    /// As ALBEF builds its start: the ViT from a timm/DeiT file (position grid resized when the
    /// resolution differs), the text encoder and MLM head from a HuggingFace BERT; cross-attention,
    /// projections and the ITM head random (seeded); momentum = online; random queues.
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        guard let vit = files["vit"], let bert = files["bert"] else {
            throw CheckpointError(file: "import", message: "ALBEF needs a ViT file and a BERT file")
        }
        try initialiseRandomly(seed: seed)
        let vitMissing = try PretrainedImport.loadViT(vit, into: parameters, prefix: "visual_encoder.")
        let bertMissing = try PretrainedImport.loadBert(bert, into: parameters, bertPrefix: "text_encoder.bert.", headPrefix: "text_encoder.cls.")
        if !vitMissing.isEmpty {
            throw CheckpointError(file: vit.path, message: "ViT parameters missing: \(vitMissing.prefix(5).joined(separator: ", "))")
        }
        // Cross-attention layers and, for a BertModel checkpoint, the MLM head start random.
        let unexpected = bertMissing.filter { !$0.contains("crossattention") && !$0.contains(".cls.") }
        if !unexpected.isEmpty {
            throw CheckpointError(file: bert.path, message: "BERT parameters missing: \(unexpected.prefix(5).joined(separator: ", "))")
        }
        momentum.copyOnlineToMomentum()
        let names = parameters.entries.map(\.name)
        return ["ViT: \(names.filter { $0.hasPrefix("visual_encoder.") }.count) tensors from \(vit.path)",
                "BERT: \(names.filter { $0.hasPrefix("text_encoder.") }.count - bertMissing.count) tensors from \(bert.path)",
                "random init: \(bertMissing.count) BERT tensors (cross-attention / MLM head), projections, itm_head"]
    }

    // MARK: reference case (shared/reference/albef-tiny layout)

    /// Pretrain.yaml (+ its bert_config), weights.safetensors and batch.safetensors: the model
    /// with the case's weights, the batch, and the recorded masks, negatives and alpha.
    static func referenceCase(_ dir: String) throws -> ReferenceCase {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let root = try ConfigSection.load(path("Pretrain.yaml"), ignoring: .trainingFile)
        let config = try ALBEFConfig.read(root, location: ConfigLocation(searchFolders: [dir]))
        _ = try root.int("batch_size", in: 1...(1 << 20))  // a training key; batch.safetensors fixes the batch
        try root.finish()
        try config.validate(file: root.file)
        let model = try ALBEFModel(config: config)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: path("weights.safetensors")))
        let batchFile = try SafetensorsFile(path: path("batch.safetensors"))
        let batch = try ReferenceCase.imageTextBatch(batchFile)
        var context = StepContext(seed: 0, dropout: false)
        for name in ["mlm_input_ids", "mlm_labels", "itm_neg_image_index", "itm_neg_text_index"] {
            context.recorded.ints[name] = try batchFile.int64s(name).map { Int($0) }
        }
        context.recorded.floats["alpha"] = [try batchFile.floats("alpha").first ?? config.alpha]
        return ReferenceCase(model: model, batch: batch, context: context, normFloor: 1e-6)
    }
}

extension ALBEFModel {
    /// Recognises a reference case folder of this model.
    static func isReferenceCase(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("Pretrain.yaml"))
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

// BLIP outside pre-training steps: retrieval scoring, pruning guidance, the initial checkpoint
// from pretrained parts, and the reference case's replay.
extension BLIPModel: CaptionModel {
    // MARK: ImageTextRetrievalModel (BLIP's evaluation: ITC shortlist, ITM re-rank with [ENC])

    public var retrievalShapes: RetrievalShapes {
        RetrievalShapes(imageRes: config.imageRes, maxTextPositions: config.maxTextLength, textWidth: config.bert.hiddenSize,
                        imageTokens: config.patchCount + 1, imageWidth: config.vision.embedDim, featureWidth: config.embedDim)
    }

    /// The text encoder in text mode over `[CLS] ... [SEP]`, text_proj of [CLS], L2-normalised.
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

    /// BLIP's re-ranking score: the ITM positive logit of the [ENC]-framed caption encoded with
    /// the image, plus the feature similarity (SPEC-BLIP §9).
    public func matchScores(texts: TextBatch, textStates: Tensor, images: Tensor, imageRows: [Int], similarities: [Float]) throws -> [Float] {
        try Autograd.noGrad {
            let enc = try withFirstToken(texts, config.encoderStartId)
            let states = try textLayers(textEmbeddings(enc, dropout: nil), mask: enc, images: textLayers.crossAttentionContext(images),
                                        imageRows: imageRows, dropout: nil)
            let logits = try itmHead(Self.cls(states)).toArray()
            return (0..<texts.batch).map { logits[2 * $0 + 1] + similarities[$0] }
        }
    }

    // MARK: CaptionModel (BLIP_Decoder.generate)

    /// The unpruned ViT (BLIP's captioner does not prune), then the decoder from `[DEC] prompt`,
    /// cross-attending to the image, by beam search or nucleus sampling.
    public func generateCaptions(_ images: Tensor, promptIds: [Int], eos: Int, options: CaptionDecoding) throws -> [[Int]] {
        try Autograd.noGrad {
            let tokens = try visualEncoder(images).tokens
            let context = try textLayers.crossAttentionContext(tokens)
            let h = config.bert.hiddenSize, sample = options.sample
            let step: TextGeneration.NextTokenLogProbs = { prefixes, items in
                let l = prefixes[0].count
                let text = try TextBatch(ids: prefixes.flatMap { $0 }, mask: [Int](repeating: 1, count: prefixes.count * l),
                                         batch: prefixes.count, length: l)
                let hidden = try self.decoderLayers(self.textEmbeddings(text, dropout: nil), mask: text, images: context, imageRows: items, dropout: nil)
                let last = try hidden.reshaped([prefixes.count * l, h]).gatherRows((0..<prefixes.count).map { $0 * l + l - 1 })
                let logits = try self.lmHead(last)
                let out = sample ? logits : logits.logSoftmax()
                let v = out.shape[1], values = out.toArray()
                return (0..<prefixes.count).map { Array(values[($0 * v)..<(($0 + 1) * v)]) }
            }
            let prompt = [config.decoderStartId] + promptIds
            let items = images.shape[0]
            let result = options.sample
                ? try TextGeneration.sample(items: items, prompt: prompt, eos: eos, options: options, logits: step)
                : try TextGeneration.beamSearch(items: items, prompt: prompt, eos: eos, options: options, next: step)
            return result.map { Array($0.dropFirst()) }
        }
    }

    // MARK: TextGuidedPruningModel

    public var prunableVisionEncoder: any PrunableVisionEncoder { visualEncoder }

    /// The unimodal text encoder's output [CLS] of `text` guides the pruning, as in `step`.
    public func pruning(guidedBy text: TextBatch, schedule: PruneConfig) throws -> ELIPPruning {
        let states = try Autograd.noGrad { try textLayers(textEmbeddings(text, dropout: nil), mask: text, dropout: nil) }
        return ELIPPruning(schedule: schedule, patchCount: config.keepBase, textCLS: try Self.cls(states))
    }

    // MARK: initial checkpoint (SPEC-BLIP §3.6)

    public var pretrainedSources: [String] { ["vit", "bert"] }

    /// As BLIP_Pretrain builds its start: the ViT from DeiT (position grid resized when the
    /// resolution differs); the text encoder from bert-base (cross-attention and the two added
    /// token rows random); the decoder's own self-attention from the same bert-base layers and
    /// its LM head from bert-base's MLM head; projections and the ITM head random; momentum =
    /// online; random queues.
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        guard let vit = files["vit"], let bert = files["bert"] else {
            throw CheckpointError(file: "import", message: "BLIP needs a ViT file and a BERT file")
        }
        try initialiseRandomly(seed: seed)
        let vitMissing = try PretrainedImport.loadViT(vit, into: parameters, prefix: "visual_encoder.")
        guard vitMissing.isEmpty else {
            throw CheckpointError(file: vit.path, message: "ViT parameters missing: \(vitMissing.prefix(5).joined(separator: ", "))")
        }
        // bert-base has 30522 word rows; BLIP's table has two more ([DEC], [ENC]), which stay random.
        let words = textEmbeddings.wordEmbeddings.weight
        let source = PretrainedImport.huggingFaceBertNames("embeddings.word_embeddings.weight").first(where: bert.contains)
        var missing: [String] = []
        for (entry, tensor) in zip(parameters.entries, parameters.tensors) where tensor !== words {
            let candidates: [String]
            if entry.name.hasPrefix("text_encoder.") {
                candidates = PretrainedImport.huggingFaceBertNames(String(entry.name.dropFirst("text_encoder.".count)))
            } else if entry.name.hasPrefix("text_decoder.bert.") {
                candidates = PretrainedImport.huggingFaceBertNames(String(entry.name.dropFirst("text_decoder.bert.".count)))
            } else if entry.name.hasPrefix("text_decoder.cls.") {
                let rest = String(entry.name.dropFirst("text_decoder.".count))
                candidates = [rest] + PretrainedImport.huggingFaceBertNames(String(rest.dropFirst("cls.".count))).map { "cls." + $0 }
            } else {
                continue
            }
            guard let name = candidates.first(where: bert.contains), let e = bert[name] else { missing.append(entry.name); continue }
            if entry.name == "text_decoder.cls.predictions.bias" && e.elementCount < entry.count {
                try tensor.withUnsafeMutableBufferPointer { try bert.copyFloats(name, into: $0.baseAddress!, count: e.elementCount) }
                continue  // the two added tokens keep a zero bias, as resize_token_embeddings pads it
            }
            guard e.elementCount == entry.count else {
                throw CheckpointError(file: bert.path, message: "\(name): shape \(e.shape), expected \(entry.shape)")
            }
            try tensor.withUnsafeMutableBufferPointer { try bert.copyFloats(name, into: $0.baseAddress!, count: entry.count) }
        }
        guard let source, let e = bert[source], e.shape.count == 2, e.shape[1] == words.shape[1], e.shape[0] <= words.shape[0] else {
            throw CheckpointError(file: bert.path, message: "no word embeddings of width \(words.shape[1]) (at most \(words.shape[0]) rows)")
        }
        try words.withUnsafeMutableBufferPointer { try bert.copyFloats(source, into: $0.baseAddress!, count: e.elementCount) }
        let unexpected = missing.filter { !$0.contains("crossattention") }
        guard unexpected.isEmpty else {
            throw CheckpointError(file: bert.path, message: "BERT parameters missing: \(unexpected.prefix(5).joined(separator: ", "))")
        }
        momentum.copyOnlineToMomentum()
        return ["ViT: \(parameters.entries.filter { $0.name.hasPrefix("visual_encoder.") }.count) tensors from \(vit.path)",
                "BERT: text encoder, decoder self-attention and LM head from \(bert.path) (\(e.shape[0]) of \(words.shape[0]) word rows)",
                "random init: \(missing.count) cross-attention tensors, [DEC]/[ENC] rows, projections, itm_head"]
    }

    // MARK: reference case (shared/reference/blip-tiny layout)

    static func isReferenceCase(_ dir: String) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: (dir as NSString).appendingPathComponent("pretrain.yaml"))
            && fm.fileExists(atPath: (dir as NSString).appendingPathComponent("med_config.json"))
    }

    /// pretrain.yaml (+ med_config.json), weights.safetensors (tied tensors stored once, the other
    /// names in the `aliases` metadata) and batch.safetensors: the model, the batch and the recorded
    /// negatives and alpha. The batch's [ENC]/[DEC] id tensors must be what the model derives.
    static func referenceCase(_ dir: String) throws -> ReferenceCase {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let root = try ConfigSection.load(path("pretrain.yaml"), ignoring: .trainingFile)
        let config = try BLIPConfig.read(root, location: ConfigLocation(searchFolders: [dir]))
        // The official file's training keys; the batch file fixes what a step needs.
        _ = try root.int("batch_size", in: 1...(1 << 20))
        for key in ["weight_decay", "init_lr", "min_lr", "warmup_lr", "lr_decay_rate"] { _ = try root.double(key, in: 0...10) }
        _ = try root.int("max_epoch", in: 1...1_000_000)
        _ = try root.int("warmup_steps", in: 0...1_000_000_000)
        try root.finish()
        try config.validate(file: root.file)
        let model = try BLIPModel(config: config)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: path("weights.safetensors")))
        let batchFile = try SafetensorsFile(path: path("batch.safetensors"))
        let batch = try ReferenceCase.imageTextBatch(batchFile)
        for (name, id) in [("itm_input_ids", config.encoderStartId), ("decoder_input_ids", config.decoderStartId)] where batchFile.contains(name) {
            guard try batchFile.int64s(name).map({ Int($0) }) == model.withFirstToken(batch.text, id).ids else {
                throw CheckpointError(file: batchFile.path, message: "\(name) is not input_ids with position 0 = \(id): the case's special ids differ from vocab_size - 2 / - 1")
            }
        }
        var context = StepContext(seed: 0, dropout: false)
        for name in ["itm_neg_image_index", "itm_neg_text_index"] {
            context.recorded.ints[name] = try batchFile.int64s(name).map { Int($0) }
        }
        context.recorded.floats["alpha"] = [try batchFile.floats("alpha").first ?? config.alpha]
        return ReferenceCase(model: model, batch: batch, context: context, normFloor: 1e-6)
    }
}

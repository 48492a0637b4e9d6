import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Safetensors

/// ELIP-METER pre-training (SPEC-METER; guoyang9/ELIP METER/meter/modules/meter_module.py): RoBERTa
/// encodes the caption; its `<s>` state guides ELIP's pruning of a CLIP ViT (11 blocks); six
/// co-attention layer pairs fuse both streams; MLM (whole-word collator rule, untied decoder) and
/// ITM (half positives in random order, random negative images). Each objective runs its own
/// `infer()`: the MLM pass prunes under the masked caption, the ITM pass under the caption it is
/// paired with. No ITC, no momentum model, no queue.
public final class METERModel: TrainableModel, TextGuidedPruningModel {
    public static let kind = ModelKind(
        name: "meter", about: "METER (CLIP ViT + RoBERTa + co-attention fusion; MLM and ITM) with ELIP pruning guided by RoBERTa's <s> state",
        readConfig: { try METERConfig.read($0, location: $1) },
        presets: ["meter-base": { METERConfig() },
                  "meter-base-clip32": { var c = METERConfig(); c.vision.patchSize = 32; c.imageRes = 224; return c }],
        referenceCase: { try METERModel.referenceCase($0) }, isReferenceCase: { METERModel.isReferenceCase($0) })

    public let config: METERConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig?
    public let parameters: ParameterArena
    public let textEmbeddings: RobertaEmbeddings, textLayers: BertLayerStack
    public let vit: CLIPVisionTransformer
    public let fusion: METERCoAttentionFusion
    public let mlmHead: METERMLMHead, itmHead: Linear
    let masking: WholeWordMasking

    /// Builds the model twice: against a measuring arena, then with one of exactly that size.
    public convenience init(config: METERConfig) throws {
        let probe = try METERModel(config: config, parameters: .measuring())
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used))
    }

    /// Layers under the official state_dict names (SPEC-METER §2, §4, §5).
    init(config: METERConfig, parameters: ParameterArena) throws {
        self.config = config
        pruning = config.prune
        self.parameters = parameters
        let root = Scope(arena: parameters), r = config.roberta
        textEmbeddings = try RobertaEmbeddings(root["text_transformer"]["embeddings"], config: r, paddingIndex: config.specialTokens.pad)
        textLayers = try BertLayerStack(root["text_transformer"]["encoder"], config: r, layers: 0..<r.numHiddenLayers, crossAttention: { _ in false })
        vit = try CLIPVisionTransformer(root["vit_model"]["visual"], config: config.vision, imageRes: config.imageRes)
        fusion = try METERCoAttentionFusion(root, config: config.fusion)
        mlmHead = try METERMLMHead(root["mlm_score"], hidden: config.fusionHidden, vocabSize: r.vocabSize)
        itmHead = try Linear(root["itm_score"]["fc"], in: 2 * config.fusionHidden, out: 2)
        let s = config.specialTokens
        masking = try WholeWordMasking(probability: config.mlmProbability, vocabularySize: r.vocabSize, maskId: s.mask,
                                       specialIds: [s.cls, s.pad, s.sep, s.unknown, s.mask])
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable)]
        let n = config.roberta.maxPositionEmbeddings
        l.constants = [("text_transformer.embeddings.position_ids", (0..<n).map(Int64.init), [1, n])]
        return l
    }

    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        guard let std = config.initStd else { return }
        // The same draws, rescaled: truncated-normal weights get std `init_std` instead of their own.
        for (entry, t) in zip(parameters.entries, parameters.tensors) {
            guard case let .truncatedNormal(own) = entry.initializer, own > 0 else { continue }
            let factor = std / own
            t.withUnsafeMutableBufferPointer { values in for i in values.indices { values[i] *= factor } }
        }
    }

    /// transformers.AdamW groups of meter_utils.set_schedule: no decay on names containing
    /// "bias", "LayerNorm.weight" or "LayerNorm.bias" (CLIP's `ln_*` weights ARE decayed).
    public func decays(parameter name: String, shape: [Int]) -> Bool {
        !["bias", "LayerNorm.weight", "LayerNorm.bias"].contains { name.contains($0) }
    }

    /// METER steps with transformers.AdamW (SPEC-METER §7).
    public var adamWVariant: AdamWVariant { .huggingFace }

    /// lr ×`lr_mult_cross_modal` for names containing "cross_modal", ×`lr_mult_head` for the heads.
    public func learningRateMultiplier(parameter name: String) -> Double {
        if name.contains("cross_modal") { return config.lrMultCrossModal }
        let heads = ["vqa_classifier", "nlvr2_classifier", "mlm_score", "itm_score", "snli_classifier"]
        return heads.contains { name.contains($0) } ? config.lrMultHead : 1
    }

    /// [CLS] rows [B, D] of token states [B, T, D].
    static func cls(_ x: Tensor) throws -> Tensor {
        try x.slice(axis: 1, start: 0, length: 1).reshaped([x.shape[0], x.shape[2]])
    }

    /// One official `infer()`: RoBERTa, its `<s>` state guiding the pruned ViT, the fusion.
    /// `outputs`: `.pooledOnly` when only `clsFeats` is read (ITM, ranking). `prefix`: these
    /// images' tokens after the ViT blocks no caption influences (`visionPrefix`), when another
    /// pass has computed them.
    public func infer(_ text: TextBatch, images: Tensor, prefix: VisionPrefix? = nil, outputs: METERCoAttentionFusion.Outputs = .allTokens,
                      dropout: DropoutStream?) throws -> (fused: METERCoAttentionFusion.Output, textCLS: Tensor, vision: PrunedBlocksOutput) {
        let e = try encode(text, images: images, prefix: prefix, dropout: dropout)
        let fused = try StepProfiler.section("fusion") {
            try fusion(text: e.states, textMask: text, image: e.vision.tokens, outputs: outputs, dropout: dropout)
        }
        return (fused, e.textCLS, e.vision)
    }

    /// `infer()` up to the fusion: RoBERTa's states, its `<s>` state, the pruned ViT.
    func encode(_ text: TextBatch, images: Tensor, prefix: VisionPrefix?, dropout: DropoutStream?) throws
        -> (states: Tensor, textCLS: Tensor, vision: PrunedBlocksOutput) {
        let states = try StepProfiler.section("text") { try textLayers(textEmbeddings(text, dropout: dropout), mask: text, dropout: dropout) }
        // The guidance is used under no_grad only, so nothing flows back through it.
        let textCLS = try Autograd.noGrad { try Self.cls(states) }
        let vision = try StepProfiler.section("vision") { () throws -> PrunedBlocksOutput in
            let guide = pruning.map { ELIPPruning(schedule: $0, patchCount: config.keepBase, textCLS: textCLS) }
            guard let prefix else { return try vit(images, pruning: guide) }
            return try vit.encode(prefix: prefix.tokens, from: prefix.blocks, pruning: guide)
        }
        return (states, textCLS, vision)
    }

    /// ViT tokens after the blocks before the first pruning stage (all blocks without pruning).
    public struct VisionPrefix {
        public let tokens: Tensor
        public let blocks: Int
        /// The same tokens for batch entries `rows` (an image may repeat; gradients add up).
        func rows(_ rows: [Int]) throws -> VisionPrefix { VisionPrefix(tokens: try tokens.gatherRows(rows), blocks: blocks) }
    }

    /// Whether the ITM pass reuses the MLM pass's text-independent ViT blocks for its images (all
    /// of them come from the batch unless `false_image` is recorded): the official step computes
    /// them twice; the results are the same. Off only to test that equality.
    public var sharesVisionPrefix = true

    func visionPrefix(_ images: Tensor) throws -> VisionPrefix {
        let blocks = vit.textIndependentBlocks(pruning)
        return VisionPrefix(tokens: try vit.runPrefix(images, blocks: blocks), blocks: blocks)
    }

    // MARK: one step

    /// MLM pass then ITM pass (SPEC-METER §6), loss = sum. Draws (masking, ITM labels, negative
    /// images) come from the sampling stream by global row, or from `context.recorded`
    /// (`text_ids_mlm`, `text_labels_mlm`, `itm_labels`, `false_image`).
    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "METER batch (images vs texts)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        let offset = (c.exchange?.rank ?? 0) * bs
        let r = config.roberta
        let dropout = c.dropout ? DropoutStream(hidden: r.hiddenDropoutProb, attention: r.attentionProbsDropoutProb, seed: c.generator.next()) : nil

        // MLM: the masked caption with the true images.
        let (maskedIds, labels) = try mlmDraws(batch.text, context: c, firstRow: offset)
        let masked = try batch.text.replacingIds(maskedIds)
        let prefix = sharesVisionPrefix ? try StepProfiler.section("vision") { try visionPrefix(batch.images) } : nil
        let mlm = try encode(masked, images: batch.images, prefix: prefix, dropout: dropout)
        // Only the masked tokens reach the vocabulary head (the other rows, label -100, add
        // nothing to the loss or its gradients; the untied 50k-word projection of every token
        // would be the step's largest GEMM), so the fusion's last layer runs those rows alone. A
        // batch without masked tokens has no MLM loss (officially NaN): it contributes 0.
        let maskedRows = labels.indices.filter { labels[$0] != -100 }
        let reading = MaskedLanguageModeling.positionsPerEntry(rows: maskedRows, entries: bs, length: batch.text.length)
        let maskedStates = maskedRows.isEmpty ? nil : try StepProfiler.section("fusion") {
            try fusion.textRows(text: mlm.states, textMask: masked, image: mlm.vision.tokens, reading: reading, dropout: dropout)
        }
        let lossMLM = try StepProfiler.section("mlm") { () throws -> Tensor in
            guard let maskedStates else { return try Tensor([0], shape: []) }
            return try mlmHead(maskedStates).crossEntropy(labels: maskedRows.map { labels[$0] })
        }

        // ITM: the clean caption with its own image (label 1) or a random one (label 0).
        let itmLabels = try itmLabelDraws(bs, context: c, firstRow: offset)
        let (fed, sourceRows) = try itmImages(batch.images, labels: itmLabels, context: c, firstRow: offset)
        let itmPrefix = try sourceRows.flatMap { rows in try prefix?.rows(rows) }
        let itm = try infer(batch.text, images: fed, prefix: itmPrefix, outputs: .pooledOnly, dropout: dropout)
        let itmLogits = try itmHead(itm.fused.clsFeats)
        let lossITM = try itmLogits.crossEntropy(labels: itmLabels)

        var out = StepOutput(total: try lossMLM + lossITM, losses: ["mlm": lossMLM, "itm": lossITM])
        out.keptIndices = itm.vision.keptIndices
        out.keptIndicesByPass = ["mlm": mlm.vision.keptIndices, "itm": itm.vision.keptIndices]
        out.tensors = ["text_cls.mlm": mlm.textCLS, "text_cls.itm": itm.textCLS, "image_embeds.mlm": mlm.vision.tokens,
                       "image_embeds.itm": itm.vision.tokens, "cls_feats.itm": itm.fused.clsFeats, "itm_logits": itmLogits]
        if c.inspection {
            // Every position's logits (a parity check reads them): the MLM pass's fusion in full, again.
            out.tensors["mlm_logits"] = try Autograd.noGrad {
                try mlmHead(fusion(text: mlm.states, textMask: masked, image: mlm.vision.tokens, dropout: nil).text)
            }
        }
        return out
    }

    /// Masked ids and labels: recorded, or the collator rule by global row.
    func mlmDraws(_ text: TextBatch, context c: StepContext, firstRow: Int) throws -> (ids: [Int], labels: [Int]) {
        if let ids = c.recorded.int("text_ids_mlm"), let labels = c.recorded.int("text_labels_mlm") {
            guard ids.count == text.ids.count, labels.count == text.ids.count else {
                throw TensorError.invalidArgument(op: "METER MLM", reason: "recorded text_ids_mlm/text_labels_mlm have \(ids.count)/\(labels.count) ids, the batch \(text.ids.count)")
            }
            return (ids, labels)
        }
        let drawn = try masking.mask(text.ids, length: text.length, seed: c.samplingSeed, firstRow: firstRow)
        return (drawn.inputs, drawn.labels)
    }

    /// floor(B/2) ones then zeros, in random order (`torch.randperm`), per rank as officially.
    func itmLabelDraws(_ bs: Int, context c: StepContext, firstRow: Int) throws -> [Int] {
        if let given = c.recorded.int("itm_labels") {
            guard given.count == bs, given.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                throw TensorError.invalidArgument(op: "METER ITM", reason: "recorded itm_labels must be \(bs) values of 0 or 1")
            }
            return given
        }
        var labels = [Int](repeating: 1, count: bs / 2) + [Int](repeating: 0, count: bs - bs / 2)
        var g = SeededGenerator(seed: CounterRandom.mix(c.samplingSeed ^ 0x17E5 ^ CounterRandom.mix(UInt64(firstRow))))
        labels.shuffle(using: &g)
        return labels
    }

    /// The images the ITM pass sees: row b's own where the label is 1, else a negative — the
    /// recorded `false_image`, or (deviation: officially a random image of the whole dataset) a
    /// random image of this batch, drawn by global row; it may be the positive, as officially.
    /// Also returns, when every image the ITM pass sees is one of the batch's, which batch row
    /// each is (nil with a recorded `false_image`).
    func itmImages(_ images: Tensor, labels: [Int], context c: StepContext, firstRow: Int) throws -> (images: Tensor, rows: [Int]?) {
        let bs = labels.count, per = images.count / max(bs, 1)
        var own = images.toArray()
        let negatives: [Float]
        var rows: [Int]? = Array(0..<bs)
        if let recorded = c.recorded.floats["false_image"] {
            guard recorded.count == own.count else {
                throw TensorError.invalidArgument(op: "METER ITM", reason: "recorded false_image has \(recorded.count) values, the images \(own.count)")
            }
            negatives = recorded
            rows = nil
        } else {
            let seed = CounterRandom.mix(c.samplingSeed ^ 0xFA15E)
            let picks = (0..<bs).map { b in min(bs - 1, Int(CounterRandom.uniform(seed: seed, index: firstRow + b) * Float(bs))) }
            negatives = picks.flatMap { j in own[(j * per)..<((j + 1) * per)] }
            for (b, label) in labels.enumerated() where label == 0 { rows?[b] = picks[b] }
        }
        for (b, label) in labels.enumerated() where label == 0 {
            own.replaceSubrange((b * per)..<((b + 1) * per), with: negatives[(b * per)..<((b + 1) * per)])
        }
        return (try Tensor(own, shape: images.shape), rows)
    }

    // MARK: TextGuidedPruningModel

    public var prunableVisionEncoder: any PrunableVisionEncoder { vit }

    /// RoBERTa's last-layer `<s>` state of `text` guides, as in `infer`.
    public func pruning(guidedBy text: TextBatch, schedule: PruneConfig) throws -> ELIPPruning {
        let states = try Autograd.noGrad { try textLayers(textEmbeddings(text, dropout: nil), mask: text, dropout: nil) }
        return ELIPPruning(schedule: schedule, patchCount: config.keepBase, textCLS: try Self.cls(states))
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Safetensors

/// ALBEF pre-training with ELIP pruning (SPEC §3; salesforce/ALBEF models/model_pretrain.py):
/// ViT image encoder pruned under the caption's guidance, BERT split into a text encoder (layers
/// below fusion_layer) and a fusion encoder (cross-attention to image tokens), ITC with feature
/// queues and momentum distillation, ITM with hard negatives, MLM distilled from the momentum
/// model.
///
/// Parameters are created in the forward pass's first-use order (text encoder, text_proj, ViT,
/// vision_proj, temp, fusion layers, itm_head, MLM head); that order only fixes the arena layout
/// and with it the random initialisation, which stays what it has always been.
public final class ALBEFModel: TrainableModel, ImageTextRetrievalModel, TextGuidedPruningModel {
    public static let kind = ModelKind(
        name: "albef", about: "ALBEF (ViT + BERT text/fusion encoders; ITC with queues, ITM, MLM) with ELIP pruning",
        readConfig: { try ALBEFConfig.read($0, location: $1) },
        presets: ["albef-base": { ALBEFConfig() }],
        referenceCase: { try ALBEFModel.referenceCase($0) }, isReferenceCase: { ALBEFModel.isReferenceCase($0) })

    public let config: ALBEFConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig?
    public let parameters: ParameterArena
    public let momentumParameters: ParameterArena
    // Online model.
    public let textEmbeddings: BertEmbeddings, textLayers: BertLayerStack, textProj: Linear
    public let visualEncoder: VisionTransformer, visionProj: Linear
    public let temp: Tensor
    public let fusionLayers: BertLayerStack, itmHead: Linear, mlmHead: BertLMHead
    // Momentum model (no ITM head), its EMA, the queues and the masking rule.
    let textEmbeddingsM: BertEmbeddings, textLayersM: BertLayerStack, textProjM: Linear
    let visualEncoderM: VisionTransformer, visionProjM: Linear
    let fusionLayersM: BertLayerStack, mlmHeadM: BertLMHead
    public let momentum: MomentumTwin
    public let queue: ContrastiveQueue
    let masking: MaskedLanguageModeling

    /// Builds the model twice: once against measuring arenas, then with arenas reserving
    /// exactly the floats the parameters take (address space counts against `ulimit -v`).
    public convenience init(config: ALBEFConfig) throws {
        let probe = try ALBEFModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used),
                      momentumParameters: ParameterArena(capacity: probe.momentumParameters.used, withGradients: false))
    }

    init(config: ALBEFConfig, parameters: ParameterArena, momentumParameters: ParameterArena) throws {
        self.config = config
        pruning = config.prune
        self.parameters = parameters
        self.momentumParameters = momentumParameters
        let bert = config.bert, fusion = config.fusionLayer, all = bert.numHiddenLayers
        let on = Scope(arena: parameters), text = on["text_encoder"]
        textEmbeddings = try BertEmbeddings(text["bert"]["embeddings"], config: bert)
        textLayers = try BertLayerStack(text["bert"]["encoder"], config: bert, layers: 0..<fusion, crossAttention: { _ in false })
        textProj = try Linear(on["text_proj"], in: bert.hiddenSize, out: config.embedDim)
        visualEncoder = try VisionTransformer(on["visual_encoder"], config: config.vision, imageRes: config.imageRes)
        visionProj = try Linear(on["vision_proj"], in: config.visionWidth, out: config.embedDim)
        temp = try on.parameter("temp", [], init: .setByModel)
        fusionLayers = try BertLayerStack(text["bert"]["encoder"], config: bert, layers: fusion..<all, crossAttention: { _ in true })
        itmHead = try Linear(on["itm_head"], in: bert.hiddenSize, out: 2)
        mlmHead = try BertLMHead(text["cls"]["predictions"], config: bert, wordEmbeddings: textEmbeddings.wordEmbeddings.weight)

        let mo = Scope(arena: momentumParameters), textM = mo["text_encoder_m"]
        textEmbeddingsM = try BertEmbeddings(textM["bert"]["embeddings"], config: bert)
        textLayersM = try BertLayerStack(textM["bert"]["encoder"], config: bert, layers: 0..<fusion, crossAttention: { _ in false })
        textProjM = try Linear(mo["text_proj_m"], in: bert.hiddenSize, out: config.embedDim)
        visualEncoderM = try VisionTransformer(mo["visual_encoder_m"], config: config.vision, imageRes: config.imageRes)
        visionProjM = try Linear(mo["vision_proj_m"], in: config.visionWidth, out: config.embedDim)
        fusionLayersM = try BertLayerStack(textM["bert"]["encoder"], config: bert, layers: fusion..<all, crossAttention: { _ in true })
        mlmHeadM = try BertLMHead(textM["cls"]["predictions"], config: bert, wordEmbeddings: textEmbeddingsM.wordEmbeddings.weight)
        momentum = try MomentumTwin(online: parameters, momentum: momentumParameters, coefficient: config.momentum)
        queue = try ContrastiveQueue(dim: config.embedDim, size: config.queueSize)
        masking = MaskedLanguageModeling(probability: config.mlmProbability, vocabularySize: bert.vocabSize, specials: config.specialTokens)
        try temp.assign([config.temp])
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable),
                    .init(momentumParameters, role: .momentum, whenAbsent: { [momentum] in momentum.copyOnlineToMomentum() })]
        l.buffers = [("image_queue", queue.imageQueue), ("text_queue", queue.textQueue)]
        l.counters = [.init(name: "queue_ptr", limit: config.queueSize, get: { [queue] in queue.pointer }, set: { [queue] in queue.pointer = $0 })]
        let n = config.bert.maxPositionEmbeddings
        l.constants = ["text_encoder", "text_encoder_m"].map { ("\($0).bert.embeddings.position_ids", (0..<n).map(Int64.init), [1, n]) }
        return l
    }

    /// Random online weights, momentum = online, random queues.
    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        try temp.assign([config.temp])
        momentum.copyOnlineToMomentum()
        queue.initialiseRandomly(seed: seed &+ 1)
    }

    /// [CLS] rows [B, D] of token states [B, T, D].
    static func cls(_ x: Tensor) throws -> Tensor {
        try x.slice(axis: 1, start: 0, length: 1).reshaped([x.shape[0], x.shape[2]])
    }

    // MARK: one step

    /// One pre-training forward in ALBEF's order: text, pruned ViT, momentum features, ITC, ITM
    /// (hard negatives), MLM. With `context.globalNegatives` and an exchange, ITC contrasts every
    /// rank's batch, ITM draws negatives from the global batch and the MLM mean runs over every
    /// rank's masked tokens: W ranks x batch B compute the step of one rank with batch W * B.
    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "ALBEF batch (images vs texts)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        let global = c.globalNegatives ? c.exchange : nil
        let offset = global.map { $0.rank * bs } ?? 0
        let alpha = c.recorded.float("alpha") ?? distillationWeight(config.alpha, rampEpochs: 1, epoch: c.progress.epoch,
                                                                    iteration: c.progress.iteration, iterationsPerEpoch: c.progress.iterationsPerEpoch)
        temp.withUnsafeMutableBufferPointer { $0[0] = min(max($0[0], 0.001), 0.5) }  // clamp, no gradient
        let b = config.bert
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil
        // MLM inputs are drawn first: the masked captions share the text-encoder passes, as one
        // pass over stacked rows [captions; masked captions] (bigger GEMMs, same values).
        let mlm = try maskedInputs(batch.text, context: c, firstRow: offset)
        let mlmText = try batch.text.replacingIds(mlm.inputs)
        let maskedRows = mlm.labels.indices.filter { mlm.labels[$0] != -100 }
        let textRows = maskedRows.isEmpty ? batch.text : try TextBatch.concat(batch.text, mlmText)

        let text = try StepProfiler.section("text") { try encodeText(textRows, captions: bs, dropout: dropout) }
        let vision = try StepProfiler.section("vision") { try encodeImages(batch.images, guidance: text.cls) }
        let teacher = try StepProfiler.section("momentum") {
            try momentumTeacher(batch.images, textRows, captions: bs, alpha: alpha, exchange: c.exchange, global: global, offset: offset)
        }
        StepProfiler.begin("itc")
        let itc = try queue.loss(imageFeat: vision.features, textFeat: text.features, temperature: temp, teacher: teacher.itc)
        try Autograd.noGrad { try queue.enqueue(imageFeatures: teacher.allImageFeatures, textFeatures: teacher.allTextFeatures) }
        StepProfiler.end()

        StepProfiler.begin("fusion")
        let world = global?.worldSize ?? 1
        let negatives = try c.recorded.int("itm_neg_image_index").map { given in
            try HardNegatives.checkGiven(imageForText: given, textForImage: c.recorded.int("itm_neg_text_index") ?? [],
                                         count: bs, candidates: bs * world)
        } ?? (HardNegatives.sample(itc.textToImage, candidates: bs * world, rowOffset: offset, seed: c.samplingSeed, stream: 1),
              HardNegatives.sample(itc.imageToText, candidates: bs * world, rowOffset: offset, seed: c.samplingSeed, stream: 2))
        let fused = try fuse(batch.text, text: text, images: vision.tokens, negatives: negatives, mlmText: maskedRows.isEmpty ? nil : mlmText,
                             maskedRows: maskedRows, global: global, dropout: dropout)
        let itmLabels = [Int](repeating: 1, count: bs) + [Int](repeating: 0, count: 2 * bs)
        let lossITM = try itmHead(fused.slice(axis: 0, start: 0, length: 3 * bs)).crossEntropy(labels: itmLabels)
        let mlmStates = maskedRows.isEmpty ? nil : try fused.slice(axis: 0, start: 3 * bs, length: maskedRows.count)
        let lossMLM = try maskedLanguageLoss(mlmStates, mlmText: mlmText, labels: mlm.labels, maskedRows: maskedRows, teacherStates: teacher.mlmStates,
                                             teacherImages: teacher.imageTokens, alpha: alpha, global: global)
        StepProfiler.end()

        var out = StepOutput(total: try lossMLM + itc.loss + lossITM, losses: ["mlm": lossMLM, "ita": itc.loss, "itm": lossITM])
        out.keptIndices = vision.keptIndices
        out.tensors = ["image_embeds": vision.tokens, "image_embeds_m": teacher.imageTokens]
        out.scalars = ["alpha": Double(alpha), "temp": Double(temp.scalar)]
        return out
    }

    /// Masked ids and labels: drawn (ALBEF's rule; draws indexed by global token position) or
    /// recorded.
    func maskedInputs(_ text: TextBatch, context c: StepContext, firstRow: Int) throws -> (inputs: [Int], labels: [Int]) {
        if let ids = c.recorded.int("mlm_input_ids"), let labels = c.recorded.int("mlm_labels") {
            return try MaskedLanguageModeling.checkGiven(inputs: ids, labels: labels, count: text.ids.count)
        }
        return masking.mask(text.ids, seed: c.samplingSeed, firstToken: firstRow * text.length)
    }

    struct TextEncoding { let states: Tensor, embeds: Tensor, cls: Tensor, features: Tensor }

    /// Text encoder on [captions; masked captions]: states of all rows, and the captions' states,
    /// [CLS] and normalised features.
    func encodeText(_ rows: TextBatch, captions bs: Int, dropout: DropoutStream?) throws -> TextEncoding {
        let states = try textLayers(textEmbeddings(rows, dropout: dropout), mask: rows, dropout: dropout)
        let embeds = rows.batch > bs ? try states.slice(axis: 0, start: 0, length: bs) : states
        let cls = try Self.cls(embeds)
        return TextEncoding(states: states, embeds: embeds, cls: cls, features: try textProj(cls).l2Normalized())
    }

    /// The ViT, pruned under the guidance of the caption's text [CLS].
    func encodeImages(_ images: Tensor, guidance textCLS: Tensor) throws -> (tokens: Tensor, features: Tensor, keptIndices: [[[Int]]]) {
        let p = pruning.map { ELIPPruning(schedule: $0, patchCount: config.patchCount, textCLS: textCLS) }
        let out = try visualEncoder(images, pruning: p)
        return (out.tokens, try visionProj(Self.cls(out.tokens)).l2Normalized(), out.keptIndices)
    }

    struct Teacher {
        let itc: ContrastiveQueue.Teacher
        let imageTokens: Tensor, mlmStates: Tensor?
        /// Every rank's momentum features, in rank order (what the queues receive).
        let allImageFeatures: Tensor, allTextFeatures: Tensor
    }

    /// Momentum model (no gradient; its ViT is never pruned): EMA, then features and ITC targets.
    func momentumTeacher(_ images: Tensor, _ rows: TextBatch, captions bs: Int, alpha: Float, exchange: FeatureExchange?,
                         global: FeatureExchange?, offset: Int) throws -> Teacher {
        try Autograd.noGrad {
            StepProfiler.section("ema") { momentum.update() }
            // Sections "momentum/text" and "momentum/vision": bench train-step counts their FLOPs per module.
            // Of the captions only [CLS] is read (their features); of the masked captions every
            // position (the MLM teacher's input).
            let l = rows.length, h = config.bert.hiddenSize
            let read = [[Int]](repeating: [0], count: bs) + [[Int]](repeating: Array(0..<l), count: rows.batch - bs)
            let states = try StepProfiler.section("text") {
                try textLayersM(textEmbeddingsM(rows, dropout: nil), mask: rows, dropout: nil, reading: read)
            }
            let textFeat = try textProjM(states.slice(axis: 0, start: 0, length: bs)).l2Normalized()
            let mlmStates = rows.batch > bs ? try states.slice(axis: 0, start: bs, length: (rows.batch - bs) * l).reshaped([rows.batch - bs, l, h]) : nil
            let imageTokens = try StepProfiler.section("vision") { try visualEncoderM(images).tokens }
            let imageFeat = try visionProjM(Self.cls(imageTokens)).l2Normalized()
            let allImages = try exchange.map { try imageFeat.allGatherRows($0) } ?? imageFeat
            let allTexts = try exchange.map { try textFeat.allGatherRows($0) } ?? textFeat
            let itc = try queue.teacher(imageFeatM: imageFeat, textFeatM: textFeat, batchImages: global == nil ? imageFeat : allImages,
                                        batchTexts: global == nil ? textFeat : allTexts, temperature: temp.scalar, alpha: alpha,
                                        positiveOffset: offset)
            return Teacher(itc: itc, imageTokens: imageTokens, mlmStates: mlmStates, allImageFeatures: allImages, allTextFeatures: allTexts)
        }
    }

    /// One fusion pass over the ITM rows in ALBEF's order — (text b, image b), (text b, negative
    /// image), (negative text, image b) — then the masked captions with image b. Image keys and
    /// values are computed once per image and shared by every row that attends to it. Returns
    /// the rows the losses read: the ITM rows' [CLS], then the masked positions of the masked
    /// captions (`maskedRows` order); the last layer runs only those.
    func fuse(_ captions: TextBatch, text: TextEncoding, images: Tensor, negatives: (imageForText: [Int], textForImage: [Int]),
              mlmText: TextBatch?, maskedRows: [Int], global: FeatureExchange?, dropout: DropoutStream?) throws -> Tensor {
        let bs = captions.batch
        let (contextImages, negativeImageRows) = try HardNegatives.negativeImages(images, drawn: negatives.imageForText, global: global)
        let context = try fusionLayers.crossAttentionContext(contextImages)
        let negativeTexts = try HardNegatives.negativeTexts(text.embeds, text: captions, drawn: negatives.textForImage, global: global)
        var states = [text.embeds, text.embeds, negativeTexts.states]
        var mask = try TextBatch.concat(TextBatch.concat(captions, captions), negativeTexts.mask)
        var imageRows = Array(0..<bs) + negativeImageRows + Array(0..<bs)
        if let mlmText {
            states.append(try text.states.slice(axis: 0, start: bs, length: bs))
            mask = try TextBatch.concat(mask, mlmText)
            imageRows += Array(0..<bs)
        }
        let read = [[Int]](repeating: [0], count: 3 * bs) + (mlmText == nil ? [] : MaskedLanguageModeling.positionsPerEntry(rows: maskedRows, entries: bs, length: captions.length))
        return try fusionLayers(Tensor.concat(states, axis: 0), mask: mask, images: context, imageRows: imageRows, dropout: dropout, reading: read)
    }

    /// MLM on the fusion states of the masked positions (`fused`, `maskedRows` order), distilled
    /// from the momentum model's predictions there (its last layer runs those rows only).
    /// Globally the mean runs over every rank's masked tokens (the local mean is rescaled).
    func maskedLanguageLoss(_ fused: Tensor?, mlmText: TextBatch, labels: [Int], maskedRows: [Int], teacherStates: Tensor?,
                            teacherImages: Tensor, alpha: Float, global: FeatureExchange?) throws -> Tensor {
        let bs = mlmText.batch
        var scale: Float = 1
        if let global {
            let total = try global.allReduceSum([Float(maskedRows.count)])[0]
            scale = total > 0 ? Float(maskedRows.count) * Float(global.worldSize) / total : 0
        }
        guard let teacherStates, let fused else { return Tensor(scalar: 0) }
        let teacher = try StepProfiler.section("teacher") {
            try Autograd.noGrad {
                let states = try fusionLayersM(teacherStates, mask: mlmText, images: fusionLayersM.crossAttentionContext(teacherImages),
                                               imageRows: Array(0..<bs), dropout: nil,
                                               reading: MaskedLanguageModeling.positionsPerEntry(rows: maskedRows, entries: bs, length: mlmText.length))
                return try mlmHeadM(states).softmax()
            }
        }
        let logits = try mlmHead(fused)
        return try MaskedLanguageModeling.distilledLoss(logits: logits, labels: maskedRows.map { labels[$0] },
                                                        teacherProbabilities: teacher, alpha: alpha, scale: scale)
    }
}

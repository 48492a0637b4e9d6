import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Safetensors

/// BLIP pre-training with ELIP pruning (SPEC-BLIP; guoyang9/ELIP BLIP/models/blip_pretrain.py).
/// A ViT pruned under the caption's guidance; one BERT text encoder with cross-attention in every
/// layer, run in text mode ([CLS], no cross-attention) for ITC and the pruning query and in
/// multimodal mode ([ENC]) for ITM; a causal decoder ([DEC]) that owns only its self-attention and
/// shares every other weight with the encoder, its output tied to the word embeddings; ITC with
/// queues and momentum distillation, ITM with hard negatives, captioning LM with label smoothing.
public final class BLIPModel: TrainableModel, ImageTextRetrievalModel, TextGuidedPruningModel {
    public static let kind = ModelKind(
        name: "blip", about: "BLIP (ViT + BERT encoder with cross-attention in every layer and a shared causal decoder; ITC with queues, ITM, captioning LM) with ELIP pruning",
        readConfig: { try BLIPConfig.read($0, location: $1) },
        presets: ["blip-base": { BLIPConfig() }],
        referenceCase: { try BLIPModel.referenceCase($0) }, isReferenceCase: { BLIPModel.isReferenceCase($0) })

    public let config: BLIPConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig?
    public let parameters: ParameterArena
    public let momentumParameters: ParameterArena
    // Online model.
    public let visualEncoder: VisionTransformer
    public let textEmbeddings: BertEmbeddings, textLayers: BertLayerStack
    public let visionProj: Linear, textProj: Linear, itmHead: Linear
    public let temp: Tensor
    public let decoderLayers: BertLayerStack, lmHead: BertLMHead
    // Momentum model (no decoder, no ITM head).
    let visualEncoderM: VisionTransformer
    let textEmbeddingsM: BertEmbeddings, textLayersM: BertLayerStack
    let visionProjM: Linear, textProjM: Linear
    public let momentum: MomentumTwin
    public let queue: ContrastiveQueue

    /// Builds the model twice: once against measuring arenas, then with arenas reserving
    /// exactly the floats the parameters take (address space counts against `ulimit -v`).
    public convenience init(config: BLIPConfig) throws {
        let probe = try BLIPModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used),
                      momentumParameters: ParameterArena(capacity: probe.momentumParameters.used, withGradients: false))
    }

    init(config: BLIPConfig, parameters: ParameterArena, momentumParameters: ParameterArena) throws {
        self.config = config
        pruning = config.prune
        self.parameters = parameters
        self.momentumParameters = momentumParameters
        let bert = config.bert, all = 0..<bert.numHiddenLayers, e = config.embedDim
        let on = Scope(arena: parameters), text = on["text_encoder"]
        visualEncoder = try VisionTransformer(on["visual_encoder"], config: config.vision, imageRes: config.imageRes)
        textEmbeddings = try BertEmbeddings(text["embeddings"], config: bert)
        textLayers = try BertLayerStack(text["encoder"], config: bert, layers: all, crossAttention: { _ in true })
        visionProj = try Linear(on["vision_proj"], in: config.vision.embedDim, out: e)
        textProj = try Linear(on["text_proj"], in: bert.hiddenSize, out: e)
        itmHead = try Linear(on["itm_head"], in: bert.hiddenSize, out: 2)
        temp = try on.parameter("temp", [], init: .setByModel)
        // tie_encoder_decoder_weights: the decoder's embeddings and every non-self-attention
        // module are the encoder's tensors, also named text_decoder.bert.*.
        let decoder = on["text_decoder"]
        try decoder["bert"]["embeddings"].tie(textEmbeddings.parameters, from: text["embeddings"])
        decoderLayers = try textLayers.causalDecoderSharingAllButSelfAttention(encoderScope: text["encoder"], decoderScope: decoder["bert"]["encoder"])
        lmHead = try BertLMHead(decoder["cls"]["predictions"], config: bert, wordEmbeddings: textEmbeddings.wordEmbeddings.weight)

        let mo = Scope(arena: momentumParameters), textM = mo["text_encoder_m"]
        visualEncoderM = try VisionTransformer(mo["visual_encoder_m"], config: config.vision, imageRes: config.imageRes)
        textEmbeddingsM = try BertEmbeddings(textM["embeddings"], config: bert)
        textLayersM = try BertLayerStack(textM["encoder"], config: bert, layers: all, crossAttention: { _ in true })
        visionProjM = try Linear(mo["vision_proj_m"], in: config.vision.embedDim, out: e)
        textProjM = try Linear(mo["text_proj_m"], in: bert.hiddenSize, out: e)
        momentum = try MomentumTwin(online: parameters, momentum: momentumParameters, coefficient: config.momentum)
        queue = try ContrastiveQueue(dim: e, size: config.queueSize)
        try temp.assign([config.temp])
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable),
                    .init(momentumParameters, role: .momentum, whenAbsent: { [momentum] in momentum.copyOnlineToMomentum() })]
        l.buffers = [("image_queue", queue.imageQueue), ("text_queue", queue.textQueue)]
        l.counters = [.init(name: "queue_ptr", limit: config.queueSize, get: { [queue] in queue.pointer }, set: { [queue] in queue.pointer = $0 })]
        let n = config.bert.maxPositionEmbeddings
        l.constants = ["text_encoder", "text_encoder_m", "text_decoder.bert"].map { ("\($0).embeddings.position_ids", (0..<n).map(Int64.init), [1, n]) }
        return l
    }

    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        try temp.assign([config.temp])
        momentum.copyOnlineToMomentum()
        queue.initialiseRandomly(seed: seed &+ 1)
    }

    /// BLIP's optimizer is one AdamW group: weight decay on every tensor.
    public func decays(parameter name: String, shape: [Int]) -> Bool { true }

    /// [CLS] rows [B, D] of token states [B, T, D].
    static func cls(_ x: Tensor) throws -> Tensor {
        try x.slice(axis: 1, start: 0, length: 1).reshaped([x.shape[0], x.shape[2]])
    }

    /// The captions with their first token replaced ([ENC] for ITM, [DEC] for the decoder).
    func withFirstToken(_ text: TextBatch, _ id: Int) throws -> TextBatch {
        var ids = text.ids
        for b in 0..<text.batch { ids[b * text.length] = id }
        return try text.replacingIds(ids)
    }

    // MARK: one step

    /// One pre-training forward in BLIP's order: unimodal text, the pruned ViT, momentum features,
    /// ITC, ITM (hard negatives, one encoder pass over positive and negative rows), LM. Image keys
    /// and values are projected once and shared by ITM and the decoder (its cross-attention is the
    /// encoder's). With global negatives: W ranks x batch B compute one rank's step with W * B.
    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "BLIP batch (images vs texts)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        let global = c.globalNegatives ? c.exchange : nil
        let world = global?.worldSize ?? 1, offset = global.map { $0.rank * bs } ?? 0
        let alpha = c.recorded.float("alpha") ?? distillationWeight(config.alpha, rampEpochs: config.alphaRampEpochs, epoch: c.progress.epoch,
                                                                    iteration: c.progress.iteration, iterationsPerEpoch: c.progress.iterationsPerEpoch)
        temp.withUnsafeMutableBufferPointer { $0[0] = min(max($0[0], 0.001), 0.5) }  // clamp, no gradient
        let b = config.bert
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil

        let text = try StepProfiler.section("text") { try textLayers(textEmbeddings(batch.text, dropout: dropout), mask: batch.text, dropout: dropout) }
        let textCLS = try Self.cls(text), textFeat = try textProj(textCLS).l2Normalized()
        let vision = try StepProfiler.section("vision") { () throws -> PrunedBlocksOutput in
            try visualEncoder(batch.images, pruning: pruning.map { ELIPPruning(schedule: $0, patchCount: config.keepBase, textCLS: textCLS) })
        }
        let imageFeat = try visionProj(Self.cls(vision.tokens)).l2Normalized()
        let teacher = try StepProfiler.section("momentum") {
            try momentumTeacher(batch, alpha: alpha, exchange: c.exchange, global: global, offset: offset)
        }
        StepProfiler.begin("itc")
        let itc = try queue.loss(imageFeat: imageFeat, textFeat: textFeat, temperature: temp, teacher: teacher.itc)
        try Autograd.noGrad { try queue.enqueue(imageFeatures: teacher.allImageFeatures, textFeatures: teacher.allTextFeatures) }
        StepProfiler.end()

        StepProfiler.begin("fusion")
        let weightsT2I = try HardNegatives.blipWeights(itc.textToImage, candidates: bs * world, rowOffset: offset)
        let weightsI2T = try HardNegatives.blipWeights(itc.imageToText, candidates: bs * world, rowOffset: offset)
        let negatives = try c.recorded.int("itm_neg_image_index").map { given in
            try HardNegatives.checkGiven(imageForText: given, textForImage: c.recorded.int("itm_neg_text_index") ?? [], count: bs, candidates: bs * world)
        } ?? (HardNegatives.draw(weights: weightsT2I, rowOffset: offset, seed: c.samplingSeed, stream: 1),
              HardNegatives.draw(weights: weightsI2T, rowOffset: offset, seed: c.samplingSeed, stream: 2))
        let itm = try imageTextMatching(batch.text, images: vision.tokens, negatives: negatives, global: global, dropout: dropout)
        let lm = try captioning(batch.text, images: itm.images, dropout: dropout, global: global)
        StepProfiler.end()

        var out = StepOutput(total: try itc.loss + itm.loss + lm.loss, losses: ["ita": itc.loss, "itm": itm.loss, "lm": lm.loss])
        out.keptIndices = vision.keptIndices
        out.tensors = ["text_embeds": text, "image_embeds": vision.tokens, "image_embeds_m": teacher.imageTokens, "itm_weights_t2i": weightsT2I,
                       "itm_weights_i2t": weightsI2T, "itm_logits": itm.logits, "decoder_hidden": lm.hidden]
        out.scalars = ["alpha": Double(alpha), "temp": Double(temp.scalar)]
        return out
    }

    struct Teacher {
        let itc: ContrastiveQueue.Teacher
        let imageTokens: Tensor
        let allImageFeatures: Tensor, allTextFeatures: Tensor
    }

    /// Momentum model (no gradient; its ViT is never pruned): EMA, then features and ITC targets.
    func momentumTeacher(_ batch: ImageTextBatch, alpha: Float, exchange: FeatureExchange?, global: FeatureExchange?, offset: Int) throws -> Teacher {
        try Autograd.noGrad {
            StepProfiler.section("ema") { momentum.update() }
            // Sections "momentum/text" and "momentum/vision": bench train-step counts their FLOPs per module.
            let textCLSM = try StepProfiler.section("text") {
                try textLayersM(textEmbeddingsM(batch.text, dropout: nil), mask: batch.text, dropout: nil,
                                reading: [[Int]](repeating: [0], count: batch.text.batch))
            }
            let textFeat = try textProjM(textCLSM).l2Normalized()
            let imageTokens = try StepProfiler.section("vision") { try visualEncoderM(batch.images).tokens }
            let imageFeat = try visionProjM(Self.cls(imageTokens)).l2Normalized()
            let allImages = try exchange.map { try imageFeat.allGatherRows($0) } ?? imageFeat
            let allTexts = try exchange.map { try textFeat.allGatherRows($0) } ?? textFeat
            let itc = try queue.teacher(imageFeatM: imageFeat, textFeatM: textFeat, batchImages: global == nil ? imageFeat : allImages,
                                        batchTexts: global == nil ? textFeat : allTexts, temperature: temp.scalar, alpha: alpha,
                                        positiveOffset: offset)
            return Teacher(itc: itc, imageTokens: imageTokens, allImageFeatures: allImages, allTextFeatures: allTexts)
        }
    }

    /// ITM: the encoder in multimodal mode over [ENC]-framed rows — (text b, image b), (text b,
    /// its negative image), (negative text of image b, image b) — each from the embeddings; the
    /// head reads [CLS] only, so the last layer runs position 0 alone.
    /// Returns the loss, the logits and the image keys/values (the decoder reuses them).
    func imageTextMatching(_ captions: TextBatch, images: Tensor, negatives: (imageForText: [Int], textForImage: [Int]),
                           global: FeatureExchange?, dropout: DropoutStream?)
        throws -> (loss: Tensor, logits: Tensor, images: CrossAttentionContext) {
        let bs = captions.batch
        let enc = try withFirstToken(captions, config.encoderStartId)
        let (contextImages, negativeImageRows) = try HardNegatives.negativeImages(images, drawn: negatives.imageForText, global: global)
        let context = try textLayers.crossAttentionContext(contextImages)
        let negativeTexts = try HardNegatives.negativeTextIds(enc, drawn: negatives.textForImage, global: global)
        let rows = try TextBatch.concat(TextBatch.concat(enc, enc), negativeTexts)
        let cls = try textLayers(textEmbeddings(rows, dropout: dropout), mask: rows, images: context,
                                 imageRows: Array(0..<bs) + negativeImageRows + Array(0..<bs), dropout: dropout,
                                 reading: [[Int]](repeating: [0], count: 3 * bs))
        let logits = try itmHead(cls)
        let labels = [Int](repeating: 1, count: bs) + [Int](repeating: 0, count: 2 * bs)
        return (try logits.crossEntropy(labels: labels), logits, context)
    }

    /// Captioning: the causal decoder over [DEC]-framed captions attending to the caption's own
    /// (pruned) image; position t predicts token t + 1, padding ignored, label smoothing. Globally
    /// the mean runs over every rank's targets (the local mean is rescaled).
    func captioning(_ captions: TextBatch, images: CrossAttentionContext, dropout: DropoutStream?,
                    global: FeatureExchange?) throws -> (loss: Tensor, hidden: Tensor) {
        let bs = captions.batch, l = captions.length
        let dec = try withFirstToken(captions, config.decoderStartId)
        let targets = zip(dec.ids, dec.mask).map { $1 == 0 ? -100 : $0 }
        let hidden = try decoderLayers(textEmbeddings(dec, dropout: dropout), mask: dec, images: images, imageRows: Array(0..<bs), dropout: dropout)
        var scale: Float = 1
        if let global {
            let local = CausalLanguageModeling.predictingRows(targets: targets, batch: bs, length: l).rows.count
            let total = try global.allReduceSum([Float(local)])[0]
            scale = total > 0 ? Float(local) * Float(global.worldSize) / total : 0
        }
        let loss = try CausalLanguageModeling.loss(hidden: hidden, targets: targets, labelSmoothing: config.labelSmoothing) { try lmHead($0) }
        return (global == nil ? loss : loss.scaled(scale), hidden)
    }
}

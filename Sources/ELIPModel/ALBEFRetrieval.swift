import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

/// Image-text retrieval fine-tuning of ALBEF (SPEC-ALBEF-TASKS §2; models/model_retrieval.py,
/// Retrieval.py). ITC against the momentum features of the batch and a queue, where every
/// candidate with the caption's image id is a positive (`idx_queue` keeps the ids of the queued
/// features); momentum distillation; ITM with one negative image per text and one negative text
/// per image, never of the same image id. The batch's `labels` are the image ids.
public final class ALBEFRetrievalModel: TrainableModel, ImageTextRetrievalModel {
    public static let kind = ModelKind(
        name: "albef-retrieval", about: "ALBEF retrieval fine-tuning (ITC with image-id positives and id queue, ITM, momentum distillation)",
        readConfig: { try ALBEFRetrievalConfig.read($0, location: $1) },
        presets: ["albef-retrieval-base": { ALBEFRetrievalConfig() }],
        referenceCase: { try ALBEFRetrievalModel.referenceCase($0) }, isReferenceCase: { ALBEFRetrievalModel.isReferenceCase($0) })

    public let config: ALBEFRetrievalConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig? {
        get { nil }
        set {}  // fine-tuning never prunes
    }
    public let parameters: ParameterArena
    public let momentumParameters: ParameterArena
    public let encoders: ALBEFTaskEncoders
    public let visionProj: Linear, textProj: Linear, itmHead: Linear
    public let temp: Tensor
    let encodersM: ALBEFTaskEncoders, visionProjM: Linear, textProjM: Linear
    public let momentum: MomentumTwin
    /// Image and text feature queues with the image id of every column.
    public let queue: ContrastiveQueue

    public convenience init(config: ALBEFRetrievalConfig) throws {
        let probe = try ALBEFRetrievalModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used),
                      momentumParameters: ParameterArena(capacity: probe.momentumParameters.used, withGradients: false))
    }

    init(config: ALBEFRetrievalConfig, parameters: ParameterArena, momentumParameters: ParameterArena) throws {
        self.config = config
        self.parameters = parameters
        self.momentumParameters = momentumParameters
        let b = config.bert, width = config.vision.embedDim
        // model_retrieval.py's order: visual_encoder, text_encoder, vision_proj, text_proj, temp,
        // itm_head, then the momentum copies.
        let on = Scope(arena: parameters)
        encoders = try ALBEFTaskEncoders(on, vision: config.vision, imageRes: config.imageRes, bert: b)
        visionProj = try Linear(on["vision_proj"], in: width, out: config.embedDim)
        textProj = try Linear(on["text_proj"], in: b.hiddenSize, out: config.embedDim)
        temp = try on.parameter("temp", [], init: .setByModel)
        itmHead = try Linear(on["itm_head"], in: b.hiddenSize, out: 2)
        let mo = Scope(arena: momentumParameters)
        encodersM = try ALBEFTaskEncoders(mo, suffix: "_m", vision: config.vision, imageRes: config.imageRes, bert: b)
        visionProjM = try Linear(mo["vision_proj_m"], in: width, out: config.embedDim)
        textProjM = try Linear(mo["text_proj_m"], in: b.hiddenSize, out: config.embedDim)
        momentum = try MomentumTwin(online: parameters, momentum: momentumParameters, coefficient: config.momentum)
        queue = try ContrastiveQueue(dim: config.embedDim, size: config.queueSize, tracksIds: true)
        try temp.assign([config.temp])
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable),
                    .init(momentumParameters, role: .momentum, whenAbsent: { [momentum] in momentum.copyOnlineToMomentum() })]
        l.buffers = [("image_queue", queue.imageQueue), ("text_queue", queue.textQueue)]
        l.counters = [.init(name: "queue_ptr", limit: config.queueSize, get: { [queue] in queue.pointer }, set: { [queue] in queue.pointer = $0 })]
        l.integerBuffers = [.init(name: "idx_queue", shape: [1, config.queueSize],
                                  isValid: { $0 == Int64(ContrastiveQueue.emptyId) || (0...Int64(Int32.max)).contains($0) },
                                  valid: "an image id in [0, \(Int32.max)] or \(ContrastiveQueue.emptyId) (empty)",
                                  get: { [queue] in (queue.idQueue ?? []).map(Int64.init) },
                                  set: { [queue] in queue.idQueue = $0.map { Int($0) } })]
        let n = config.bert.maxPositionEmbeddings
        l.constants = ["text_encoder", "text_encoder_m"].map { ("\($0).embeddings.position_ids", (0..<n).map(Int64.init), [1, n]) }
        return l
    }

    /// Random online weights, momentum = online (copy_params), random unit queues, ids -100.
    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        try temp.assign([config.temp])
        momentum.copyOnlineToMomentum()
        queue.initialiseRandomly(seed: seed &+ 1)
    }

    /// Loads a pre-training checkpoint as Retrieval.py does (`bert.` dropped, both position
    /// grids resized to this resolution; queues, pointer and temp loaded; idx_queue stays -100).
    @discardableResult
    public func loadPretrainingCheckpoint(_ file: SafetensorsFile) throws -> ALBEFTaskCheckpoint.Plan {
        try ALBEFTaskCheckpoint.load(.retrieval, from: file, into: stateLayout)
    }

    public var pretrainedSources: [String] { [] }
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        throw CheckpointError(file: "import", message: "retrieval fine-tuning starts from an ALBEF pre-training checkpoint (loadPretrainingCheckpoint), not from DeiT/BERT files")
    }

    // MARK: one step

    /// One fine-tuning step in model_retrieval.py's order: image and text features, id-aware ITC
    /// targets, EMA and momentum features (distilled targets), ITC, enqueue, ITM. ITC and the ITM
    /// negatives are this rank's batch (as in the official code); the enqueue takes every rank's
    /// momentum features and ids in rank order.
    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "retrieval batch (images vs captions)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        guard let ids = batch.labels, ids.count == bs else {
            throw TensorError.invalidArgument(op: "retrieval step", reason: "needs the image id of every caption (\(bs)), got \(batch.labels?.count ?? 0)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 > Int(Int32.max) }) {
            throw TensorError.invalidArgument(op: "retrieval step", reason: "image id \(bad) outside [0, \(Int32.max)]")
        }
        let alpha = config.distill ? (c.recorded.float("alpha") ?? (config.warmUp
            ? distillationWeight(config.alpha, rampEpochs: 1, epoch: c.progress.epoch, iteration: c.progress.iteration,
                                 iterationsPerEpoch: c.progress.iterationsPerEpoch)
            : config.alpha)) : 0  // without distill the targets are the positives alone
        let b = config.bert
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil

        let imageTokens = try encoders.images(batch.images)
        let imageFeat = try visionProj(ALBEFTaskEncoders.cls(imageTokens)).l2Normalized()
        let textStates = try encoders.textLayers(encoders.embeddings(batch.text, dropout: dropout), mask: batch.text, dropout: dropout)
        let textFeat = try textProj(ALBEFTaskEncoders.cls(textStates)).l2Normalized()
        let positives = try queue.idAwarePositives(rowIds: ids, batchIds: ids)

        let teacher = try Autograd.noGrad { () throws -> (ContrastiveQueue.Teacher, Tensor, Tensor) in
            momentum.update()
            let imageFeatM = try visionProjM(ALBEFTaskEncoders.cls(encodersM.images(batch.images))).l2Normalized()
            let statesM = try encodersM.textLayers(encodersM.embeddings(batch.text, dropout: nil), mask: batch.text, dropout: nil)
            let textFeatM = try textProjM(ALBEFTaskEncoders.cls(statesM)).l2Normalized()
            let t = try queue.teacher(imageFeatM: imageFeatM, textFeatM: textFeatM, batchImages: imageFeatM, batchTexts: textFeatM,
                                      temperature: temp.scalar, alpha: alpha, positiveOffset: 0, positives: positives)
            return (t, imageFeatM, textFeatM)
        }
        let itc = try queue.loss(imageFeat: imageFeat, textFeat: textFeat, temperature: temp, teacher: teacher.0)
        try Autograd.noGrad {
            let allImages = try c.exchange.map { try teacher.1.allGatherRows($0) } ?? teacher.1
            let allTexts = try c.exchange.map { try teacher.2.allGatherRows($0) } ?? teacher.2
            let allIds = try c.exchange.map { try Self.gatherIds(ids, $0) } ?? ids
            try queue.enqueue(imageFeatures: allImages, textFeatures: allTexts, ids: allIds)
        }

        // ITM negatives (never a caption or image of the same id): recorded or drawn.
        let negatives: ([Int], [Int])
        if let given = c.recorded.int("itm_neg_image_index") {
            negatives = try HardNegatives.checkGiven(imageForText: given, textForImage: c.recorded.int("itm_neg_text_index") ?? [],
                                                     count: bs, ids: ids, rowOffset: 0)
        } else {
            let wT2I = try HardNegatives.idAwareWeights(itc.textToImage, candidateIds: ids, rowOffset: 0)
            let wI2T = try HardNegatives.idAwareWeights(itc.imageToText, candidateIds: ids, rowOffset: 0)
            negatives = (HardNegatives.draw(weights: wT2I, rowOffset: 0, seed: c.samplingSeed, stream: 1),
                         HardNegatives.draw(weights: wI2T, rowOffset: 0, seed: c.samplingSeed, stream: 2))
        }
        // One fusion pass over the rows (text b, image b), (text b, negative image), (negative
        // text, image b): the official positive and negative passes, stacked (rows independent).
        let states = try Tensor.concat([textStates, textStates, textStates.gatherRows(negatives.1)], axis: 0)
        let mask = try TextBatch.concat(TextBatch.concat(batch.text, batch.text), batch.text.rows(negatives.1))
        let fused = try encoders.fusionLayers(states, mask: mask, images: encoders.fusionLayers.crossAttentionContext(imageTokens),
                                              imageRows: Array(0..<bs) + negatives.0 + Array(0..<bs), dropout: dropout)
        let itmLogits = try itmHead(ALBEFTaskEncoders.cls(fused))
        let lossITM = try itmLogits.crossEntropy(labels: [Int](repeating: 1, count: bs) + [Int](repeating: 0, count: 2 * bs))

        var out = StepOutput(total: try itc.loss + lossITM, losses: ["ita": itc.loss, "itm": lossITM])
        out.tensors = ["image_feat": imageFeat, "text_feat": textFeat, "itm_logits": itmLogits]
        out.scalars = ["alpha": Double(alpha), "temp": Double(temp.scalar)]
        return out
    }

    /// Every rank's image ids in rank order. The exchange carries float32, exact only below
    /// 2^24, so each id travels as two 16-bit halves (ids are checked to be below 2^31).
    static func gatherIds(_ ids: [Int], _ exchange: FeatureExchange) throws -> [Int] {
        let halves = try exchange.allGather(ids.flatMap { [Float($0 >> 16), Float($0 & 0xFFFF)] })
        return stride(from: 0, to: halves.count - 1, by: 2).map { Int(halves[$0]) << 16 | Int(halves[$0 + 1]) }
    }

    // MARK: ImageTextRetrievalModel (Retrieval.py evaluation)

    public var retrievalShapes: RetrievalShapes {
        RetrievalShapes(imageRes: config.imageRes, maxTextPositions: config.bert.maxPositionEmbeddings, textWidth: config.bert.hiddenSize,
                        imageTokens: config.patchCount + 1, imageWidth: config.vision.embedDim, featureWidth: config.embedDim)
    }

    /// Text encoder in mode 'text', text_proj of [CLS], L2-normalised.
    public func encodeTexts(_ text: TextBatch) throws -> (states: Tensor, features: Tensor) {
        try Autograd.noGrad {
            let states = try encoders.textLayers(encoders.embeddings(text, dropout: nil), mask: text, dropout: nil)
            return (states, try textProj(ALBEFTaskEncoders.cls(states)).l2Normalized())
        }
    }

    /// The ViT, vision_proj of [CLS], L2-normalised.
    public func encodeImages(_ images: Tensor) throws -> (tokens: Tensor, features: Tensor) {
        try Autograd.noGrad {
            let tokens = try encoders.images(images)
            return (tokens, try visionProj(ALBEFTaskEncoders.cls(tokens)).l2Normalized())
        }
    }

    /// ITM "match" logit of fusion(caption b, image imageRows[b]) (itm_eval ignores the similarity).
    public func matchScores(texts mask: TextBatch, textStates: Tensor, images: Tensor, imageRows: [Int], similarities: [Float]) throws -> [Float] {
        try Autograd.noGrad {
            let out = try encoders.fusionLayers(textStates, mask: mask, images: encoders.fusionLayers.crossAttentionContext(images),
                                                imageRows: imageRows, dropout: nil)
            let logits = try itmHead(ALBEFTaskEncoders.cls(out)).toArray()
            return (0..<mask.batch).map { logits[2 * $0 + 1] }
        }
    }
}

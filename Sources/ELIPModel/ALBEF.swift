import CKernels
import ELIPNN
import Foundation
import ELIPTensor

/// One pre-training batch. Images are normalised [B, 3, res, res].
public struct PretrainBatch {
    public let images: Tensor
    public let text: TextBatch
    public init(images: Tensor, text: TextBatch) {
        self.images = images
        self.text = text
    }
}

/// The randomness of a step. Either drawn from `generator` (training) or given (replaying a
/// reference step): MLM masking, ITM negatives, dropout.
public struct StepRandomness {
    /// Masked input ids and labels (-100 = not masked); nil: draw with the generator.
    public var mlmInputIds: [Int]?
    public var mlmLabels: [Int]?
    /// Negative image for each text / negative text for each image; nil: sample from the
    /// similarity softmax with the generator.
    public var negativeImageForText: [Int]?
    public var negativeTextForImage: [Int]?
    /// Dropout on (training) or off (evaluation-mode replay).
    public var dropout: Bool
    /// Seeds the dropout masks.
    public var generator: SeededGenerator
    /// Stream for masking and negative sampling: draws are indexed by the sample's row in the
    /// GLOBAL batch, so with a stream shared by all ranks, W ranks x batch B draw exactly what one
    /// rank with batch W * B draws.
    public var samplingSeed: UInt64
    /// This rank's first row in the global batch (0 on a single process).
    public var globalRowOffset = 0

    public init(seed: UInt64, dropout: Bool = true, samplingSeed: UInt64? = nil) {
        self.dropout = dropout
        generator = SeededGenerator(seed: seed)
        self.samplingSeed = samplingSeed ?? CounterRandom.mix(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
}

/// What a pre-training step produced.
public struct PretrainOutput {
    public let lossMLM: Tensor, lossITA: Tensor, lossITM: Tensor
    /// loss_mlm + loss_ita + loss_itm (what backward starts from).
    public let loss: Tensor
    public let imageEmbeds: Tensor
    public let imageEmbedsMomentum: Tensor
    public let keptIndices: [[[Int]]]
}

/// ALBEF pre-training model with ELIP pruning (SPEC §3; salesforce/ALBEF models/model_pretrain.py).
///
/// Parameters: `online` arena (trainable; names as ALBEF's state_dict) and `momentum` arena
/// (EMA copies, `*_m`). The online arena is laid out in the order the forward pass first uses
/// the parameters — text encoder, text_proj, ViT, vision_proj, temp, fusion layers, itm_head,
/// MLM head — so backward finishes their gradients from the end of the arena towards the start
/// and gradient all-reduce can overlap with the rest of backward. The EMA update runs over
/// precomputed pairs of contiguous ranges.
public final class ALBEFModel {
    public let config: ALBEFConfig
    /// The pruning schedule `forward` uses; starts as `config.prune`. Changing it between steps
    /// is allowed (nothing else depends on it), e.g. to benchmark scoring modes on one model.
    public var prune: PruneConfig?
    public let online: ParameterArena
    public let momentum: ParameterArena
    public let visualEncoder: VisionTransformer, visualEncoderM: VisionTransformer
    public let visionProj: Linear, visionProjM: Linear
    public let textEncoder: BertModel, textEncoderM: BertModel
    public let textProj: Linear, textProjM: Linear
    public let itmHead: Linear
    public let temp: Tensor
    /// Queues [embed_dim, queue_size] of momentum features, and the write pointer.
    public let imageQueue: Tensor, textQueue: Tensor
    public var queuePointer: Int = 0
    /// (online offset, momentum offset, count) runs of paired parameters, for the EMA.
    let pairedRanges: [(Int, Int, Int)]

    public init(config: ALBEFConfig) throws {
        self.config = config
        prune = config.prune
        online = ParameterArena()
        momentum = ParameterArena(withGradients: false)
        let on = Scope(arena: online), mo = Scope(arena: momentum)
        // Forward first-use order (see the type's comment).
        textEncoder = try BertModel(bert: on["text_encoder"]["bert"], head: nil, config: config.bert, textLayersOnly: true)
        textProj = try Linear(on["text_proj"], in: config.bert.hiddenSize, out: config.embedDim)
        visualEncoder = try VisionTransformer(on["visual_encoder"], config: config.vision, imageRes: config.imageRes)
        visionProj = try Linear(on["vision_proj"], in: config.visionWidth, out: config.embedDim)
        temp = try on.parameter("temp", [])
        try textEncoder.addFusionLayersAndHead(head: nil)
        itmHead = try Linear(on["itm_head"], in: config.bert.hiddenSize, out: 2)
        // The MLM head is created last: its gradient is final first.
        let head = on["text_encoder"]["cls"]["predictions"]
        try textEncoder.addMLMHead(head)

        textEncoderM = try BertModel(bert: mo["text_encoder_m"]["bert"], head: nil, config: config.bert, textLayersOnly: true)
        textProjM = try Linear(mo["text_proj_m"], in: config.bert.hiddenSize, out: config.embedDim)
        visualEncoderM = try VisionTransformer(mo["visual_encoder_m"], config: config.vision, imageRes: config.imageRes)
        visionProjM = try Linear(mo["vision_proj_m"], in: config.visionWidth, out: config.embedDim)
        try textEncoderM.addFusionLayersAndHead(head: nil)
        try textEncoderM.addMLMHead(mo["text_encoder_m"]["cls"]["predictions"])
        pairedRanges = try Self.pairRanges(online: online, momentum: momentum)

        imageQueue = Tensor.zeros([config.embedDim, config.queueSize])
        textQueue = Tensor.zeros([config.embedDim, config.queueSize])
        try temp.assign([config.temp])
    }

    /// Pairs every momentum parameter (`visual_encoder_m.X`) with its online twin
    /// (`visual_encoder.X`) and merges neighbours into contiguous runs.
    static func pairRanges(online: ParameterArena, momentum: ParameterArena) throws -> [(Int, Int, Int)] {
        var runs: [(Int, Int, Int)] = []
        for e in momentum.entries {
            let parts = e.name.split(separator: ".", maxSplits: 1)
            guard parts.count == 2, parts[0].hasSuffix("_m"),
                  let twin = online.tensor("\(parts[0].dropLast(2)).\(parts[1])"), let i = twin.parameterIndex,
                  online.entries[i].count == e.count else {
                throw TensorError.invalidArgument(op: "ALBEF momentum pairing", reason: "no online twin for \(e.name)")
            }
            let o = online.entries[i].offset
            // Include the alignment padding (zero in both arenas) so runs can merge.
            let padded = (e.count + 15) / 16 * 16
            if let last = runs.last, last.0 + last.2 == o, last.1 + last.2 == e.offset {
                runs[runs.count - 1].2 += padded
            } else {
                runs.append((o, e.offset, padded))
            }
        }
        return runs
    }

    /// `p_m = m p_m + (1 - m) p` over all paired parameters.
    public func momentumUpdate() {
        let m = config.momentum
        guard let src = online.values.baseAddress, let dst = momentum.values.baseAddress else { return }
        for (o, mo, n) in pairedRanges {
            Threads.parallelFor(n, grain: 1 << 16) { r in
                elip_ema(dst + mo + r.lowerBound, src + o + r.lowerBound, Int64(r.count), m)
            }
        }
    }

    /// Copies the online weights into the momentum model (ALBEF's copy_params at start).
    public func copyParametersToMomentum() {
        let src = online.values, dst = momentum.values
        for (o, mo, n) in pairedRanges { for i in 0..<n { dst[mo + i] = src[o + i] } }
    }

    /// Clamp of the temperature to [0.001, 0.5], done without gradient at the start of a step.
    func clampTemperature() {
        temp.withUnsafeMutableBufferPointer { $0[0] = min(max($0[0], 0.001), 0.5) }
    }

    /// [CLS] rows [B, D] of token states [B, T, D].
    static func cls(_ x: Tensor) throws -> Tensor {
        try x.slice(axis: 1, start: 0, length: 1).reshaped([x.shape[0], x.shape[2]])
    }

    /// One pre-training forward (SPEC §3 order): returns the three losses and what a caller may
    /// inspect. Updates the momentum model and the queues, as the official forward does.
    ///
    /// With an `exchange` (several ranks), the momentum features of all ranks are enqueued in rank
    /// order. With `globalNegatives` as well, ITC contrasts against every rank's batch, ITM draws
    /// negatives from the global batch (their features gathered with gradient) and the MLM loss is
    /// normalised by the global number of masked tokens: W ranks x batch B then compute the step
    /// of one rank with batch W * B (texts must be padded to the same length on every rank).
    public func forward(_ batch: PretrainBatch, alpha: Float, randomness: inout StepRandomness,
                        exchange: FeatureExchange? = nil, globalNegatives: Bool = false) throws -> PretrainOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "ALBEF batch (images vs texts)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        let global = globalNegatives ? exchange : nil
        let world = global?.worldSize ?? 1
        let offset = global.map { $0.rank * bs } ?? 0
        randomness.globalRowOffset = offset
        clampTemperature()
        let bert = config.bert
        let dropout = randomness.dropout
            ? DropoutStream(hidden: bert.hiddenDropoutProb, attention: bert.attentionProbsDropoutProb, seed: randomness.generator.next())
            : nil

        // MLM inputs are drawn first: the masked captions share the text-encoder passes.
        let (mlmIds, mlmLabels) = try maskedLanguageInputs(batch.text, randomness: randomness)
        let mlmText = try TextBatch(ids: mlmIds, mask: batch.text.mask, batch: bs, length: batch.text.length)
        let maskedRows = mlmLabels.indices.filter { mlmLabels[$0] != -100 }
        let withMLM = !maskedRows.isEmpty
        // Captions are independent rows, so ALBEF's separate passes over the same encoder are run
        // as one pass over stacked rows (bigger GEMMs, same values): [captions; masked captions].
        let textRows = withMLM ? try TextBatch.concat(batch.text, mlmText) : batch.text

        // Text encoder, then the ViT pruned under the guidance of the text [CLS].
        StepProfiler.begin("text")
        let textStates = try textEncoder.encodeText(textRows, dropout: dropout)
        let textEmbeds = withMLM ? try textStates.slice(axis: 0, start: 0, length: bs) : textStates
        let textCLS = try Self.cls(textEmbeds)
        let textFeat = try textProj(textCLS).l2Normalized()
        StepProfiler.end()
        StepProfiler.begin("vision")
        let pruning = prune.map {
            ELIPPruning(schedule: $0, patchCount: config.patchCount, textCLS: textCLS, lambda: config.pruneLambda)
        }
        let vision = try visualEncoder(batch.images, pruning: pruning)
        let imageEmbeds = vision.embeds
        let imageFeat = try visionProj(Self.cls(imageEmbeds)).l2Normalized()
        StepProfiler.end()

        // Momentum features (no gradient; the momentum ViT is never pruned).
        StepProfiler.begin("momentum")
        let (imageEmbedsM, mlmStatesM, queueImages, queueTexts, simTargetsI2T, simTargetsT2I, imageFeatAll, textFeatAll) =
            try Autograd.noGrad { () throws -> (Tensor, Tensor?, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor) in
                StepProfiler.section("ema") { momentumUpdate() }
                let statesM = try textEncoderM.encodeText(textRows, dropout: nil)
                let textM = withMLM ? try statesM.slice(axis: 0, start: 0, length: bs) : statesM
                let mlmStatesM = withMLM ? try statesM.slice(axis: 0, start: bs, length: bs) : nil
                let textFeatM = try textProjM(Self.cls(textM)).l2Normalized()
                let imageEmbedsM = try visualEncoderM(batch.images).embeds
                let imageFeatM = try visionProjM(Self.cls(imageEmbedsM)).l2Normalized()
                // All ranks' momentum features in rank order (queue; global negatives).
                let imagesAllRanks = try exchange.map { try imageFeatM.allGatherRows($0) } ?? imageFeatM
                let textsAllRanks = try exchange.map { try textFeatM.allGatherRows($0) } ?? textFeatM
                let batchImages = global == nil ? imageFeatM : imagesAllRanks
                let batchTexts = global == nil ? textFeatM : textsAllRanks
                let textAll = try Tensor.concat([batchTexts.transposed(), textQueue], axis: 1)
                let imageAll = try Tensor.concat([batchImages.transposed(), imageQueue], axis: 1)
                let t = Tensor(scalar: temp.scalar)
                let simI2TM = try imageFeatM.matmul(textAll) / t
                let simT2IM = try textFeatM.matmul(imageAll) / t
                let eye = Self.diagonalTargets(rows: bs, cols: simI2TM.shape[1], columnOffset: offset)
                let targetI2T = try simI2TM.softmax().scaled(alpha) + eye.scaled(1 - alpha)
                let targetT2I = try simT2IM.softmax().scaled(alpha) + eye.scaled(1 - alpha)
                return (imageEmbedsM, mlmStatesM, imagesAllRanks, textsAllRanks, targetI2T, targetT2I, imageAll, textAll)
            }
        StepProfiler.end()

        // ITC with momentum distillation.
        StepProfiler.begin("itc")
        let simI2T = try imageFeat.matmul(textFeatAll) / temp
        let simT2I = try textFeat.matmul(imageFeatAll) / temp
        let lossI2T = try simI2T.softCrossEntropy(targets: simTargetsI2T)
        let lossT2I = try simT2I.softCrossEntropy(targets: simTargetsT2I)
        let lossITA = try (lossI2T + lossT2I).scaled(0.5)
        Autograd.noGrad { enqueue(imageFeatures: queueImages, textFeatures: queueTexts) }
        StepProfiler.end()

        // ITM: positives, then hard negatives drawn from the similarity softmax over the batch;
        // the MLM student's fusion layers run in the same pass.
        StepProfiler.begin("fusion")
        let candidates = bs * world
        let negImage: [Int], negText: [Int]
        if let given = randomness.negativeImageForText, let givenText = randomness.negativeTextForImage {
            guard given.count == bs, givenText.count == bs, (given + givenText).allSatisfy({ $0 >= 0 && $0 < candidates }) else {
                throw TensorError.invalidArgument(op: "ITM negatives", reason: "need \(bs) indices in [0, \(candidates)) for each direction")
            }
            (negImage, negText) = (given, givenText)
        } else {
            negImage = Self.sampleNegatives(simT2I, candidates: candidates, rowOffset: offset,
                                            seed: randomness.samplingSeed, stream: 1)
            negText = Self.sampleNegatives(simI2T, candidates: candidates, rowOffset: offset,
                                           seed: randomness.samplingSeed, stream: 2)
        }
        // The fusion layers' image keys/values are computed once per image and shared by the
        // positive, negative and MLM rows. Negatives come from this rank's images, or from every
        // rank's (gathered with gradient).
        let contextImages: Tensor, negImageRows: [Int]
        if let global {
            let imagePool = try imageEmbeds.allGatherRows(global)
            contextImages = try Tensor.concat([imageEmbeds, imagePool.gatherRows(negImage)], axis: 0)
            negImageRows = Array(bs..<(2 * bs))
        } else {
            contextImages = imageEmbeds
            negImageRows = negImage
        }
        let imageContext = try textEncoder.imageContext(contextImages)
        let textPool = try global.map { try textEmbeds.allGatherRows($0) } ?? textEmbeds
        let maskPool: TextBatch
        if let global {
            let masks = try global.allGather(batch.text.mask.map(Float.init)).map { Int($0) }
            maskPool = try TextBatch(ids: [Int](repeating: 0, count: masks.count), mask: masks, batch: candidates, length: batch.text.length)
        } else {
            maskPool = batch.text
        }
        let textEmbedsNeg = try textPool.gatherRows(negText)
        // Rows in ALBEF's ITM order: positives (text b, image b), (text b, negative image),
        // (negative text, image b); then the masked captions with image b.
        var fusionText = [textEmbeds, textEmbeds, textEmbedsNeg]
        var fusionMask = try TextBatch.concat(TextBatch.concat(batch.text, batch.text), maskPool.rows(negText))
        var fusionImageRows = Array(0..<bs) + negImageRows + Array(0..<bs)
        if withMLM {
            fusionText.append(try textStates.slice(axis: 0, start: bs, length: bs))
            fusionMask = try TextBatch.concat(fusionMask, mlmText)
            fusionImageRows += Array(0..<bs)
        }
        let fused = try textEncoder.fuse(Tensor.concat(fusionText, axis: 0), mask: fusionMask, image: imageContext,
                                         imageRows: fusionImageRows, dropout: dropout)
        let itmCLS = try Self.cls(fused.slice(axis: 0, start: 0, length: 3 * bs))
        let itmLabels = [Int](repeating: 1, count: bs) + [Int](repeating: 0, count: 2 * bs)
        let lossITM = try itmHead(itmCLS).crossEntropy(labels: itmLabels)

        // MLM with distillation from the momentum model; only masked rows reach the vocab head.
        // Globally, the loss is a mean over every rank's masked tokens: scale the local mean.
        let mlmScale: Float
        if let global {
            let total = try global.allReduceSum([Float(maskedRows.count)])[0]
            mlmScale = total > 0 ? Float(maskedRows.count) * Float(world) / total : 0
        } else {
            mlmScale = 1
        }
        let lossMLM: Tensor
        if let mlmStatesM {
            let h = bert.hiddenSize
            let teacher = try StepProfiler.section("teacher") {
                try Autograd.noGrad {
                    let states = try textEncoderM.fuse(mlmStatesM, mask: mlmText, image: textEncoderM.imageContext(imageEmbedsM),
                                                       imageRows: Array(0..<bs), dropout: nil)
                    return try textEncoderM.mlmLogits(states.reshaped([bs * batch.text.length, h]).gatherRows(maskedRows)).softmax()
                }
            }
            let states = try fused.slice(axis: 0, start: 3 * bs, length: bs)
            let logits = try textEncoder.mlmLogits(states.reshaped([bs * batch.text.length, h]).gatherRows(maskedRows))
            let hard = try logits.crossEntropy(labels: maskedRows.map { mlmLabels[$0] })
            let soft = try logits.softCrossEntropy(targets: teacher)
            lossMLM = try (hard.scaled(1 - alpha) + soft.scaled(alpha)).scaled(mlmScale)
        } else {
            lossMLM = Tensor(scalar: 0)
        }
        StepProfiler.end()

        let loss = try lossMLM + lossITA + lossITM
        return PretrainOutput(lossMLM: lossMLM, lossITA: lossITA, lossITM: lossITM, loss: loss,
                              imageEmbeds: imageEmbeds, imageEmbedsMomentum: imageEmbedsM, keptIndices: vision.keptIndices)
    }

    /// One-hot targets: row i's positive is column `columnOffset + i`.
    static func diagonalTargets(rows: Int, cols: Int, columnOffset: Int = 0) -> Tensor {
        let t = Tensor.zeros([rows, cols])
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<rows where columnOffset + i < cols { p[i * cols + columnOffset + i] = 1 }
        }
        return t
    }

    /// For each local row b, one candidate drawn from softmax(sim[b, :candidates]) with the
    /// row's own positive (global index rowOffset + b) zeroed — torch.multinomial semantics on
    /// unnormalised weights. The uniform draw is indexed by the global row, so the choice does not
    /// depend on how the batch is split over ranks.
    static func sampleNegatives(_ sim: Tensor, candidates: Int, rowOffset: Int, seed: UInt64, stream: Int) -> [Int] {
        let rows = sim.shape[0], cols = sim.shape[1]
        let values = sim.toArray()
        return (0..<rows).map { b in
            let row = values[(b * cols)..<(b * cols + candidates)]
            let m = row.max() ?? 0
            var w = row.map { Double(exp($0 - m)) }
            let own = rowOffset + b
            w[own] = 0
            let total = w.reduce(0, +)
            if total <= 0 || !total.isFinite { return (own + 1) % max(candidates, 1) }
            var u = Double(CounterRandom.uniform(seed: seed &+ UInt64(stream), index: own)) * total
            for (j, x) in w.enumerated() where x > 0 {
                u -= x
                if u < 0 { return j }
            }
            return w.lastIndex(where: { $0 > 0 }) ?? (own + 1) % candidates
        }
    }

    /// ALBEF masking: each token with probability mlm_probability (never PAD or CLS); of the
    /// masked, 80% -> [MASK], half of the rest -> a random id, the rest unchanged.
    func maskedLanguageInputs(_ text: TextBatch, randomness: StepRandomness) throws -> ([Int], [Int]) {
        if let ids = randomness.mlmInputIds, let labels = randomness.mlmLabels {
            guard ids.count == text.ids.count, labels.count == text.ids.count else {
                throw TensorError.shapeMismatch(op: "given MLM inputs", lhs: [text.batch, text.length], rhs: [ids.count, labels.count])
            }
            return (ids, labels)
        }
        return Self.mask(text.ids, vocabSize: config.bert.vocabSize, probability: config.mlmProbability,
                         seed: randomness.samplingSeed, firstToken: randomness.globalRowOffset * text.length)
    }

    /// Draws for token i come from (seed, firstToken + i): a token's fate depends on its position
    /// in the global batch only.
    public static func mask(_ ids: [Int], vocabSize: Int, probability: Float, padId: Int = 0, clsId: Int = 101,
                            maskId: Int = 103, seed: UInt64, firstToken: Int = 0) -> ([Int], [Int]) {
        var input = ids
        var labels = [Int](repeating: -100, count: ids.count)
        for i in ids.indices {
            let k = 4 * (firstToken + i)
            let masked = CounterRandom.uniform(seed: seed, index: k) < probability && ids[i] != padId && ids[i] != clsId
            let replace = CounterRandom.uniform(seed: seed, index: k + 1) < 0.8
            let random = CounterRandom.uniform(seed: seed, index: k + 2) < 0.5
            let word = Int(CounterRandom.mix(seed &+ UInt64(k + 3)) % UInt64(vocabSize))
            guard masked else { continue }
            labels[i] = ids[i]
            if replace { input[i] = maskId } else if random { input[i] = word }
        }
        return (input, labels)
    }

    /// Writes momentum features into the queues at the pointer, wrapping around.
    func enqueue(imageFeatures: Tensor, textFeatures: Tensor) {
        let n = imageFeatures.shape[0], e = config.embedDim, q = config.queueSize
        let img = imageFeatures.toArray(), txt = textFeatures.toArray()
        imageQueue.withUnsafeMutableBufferPointer { iq in
            textQueue.withUnsafeMutableBufferPointer { tq in
                for s in 0..<n {
                    let col = (queuePointer + s) % q
                    for d in 0..<e {
                        iq[d * q + col] = img[s * e + d]
                        tq[d * q + col] = txt[s * e + d]
                    }
                }
            }
        }
        queuePointer = (queuePointer + n) % q
    }
}

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
    public var generator: SeededGenerator

    public init(seed: UInt64, dropout: Bool = true) {
        self.dropout = dropout
        generator = SeededGenerator(seed: seed)
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
        let src = online.values, dst = momentum.values
        for (o, mo, n) in pairedRanges {
            Threads.parallelFor(n, grain: 1 << 16) { r in
                for i in r { dst[mo + i] = dst[mo + i] * m + src[o + i] * (1 - m) }
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
    /// `gatheredFeatures` lets a distributed caller enqueue all ranks' momentum features.
    public func forward(_ batch: PretrainBatch, alpha: Float, randomness: inout StepRandomness,
                        gatherForQueue: ((Tensor, Tensor) throws -> (Tensor, Tensor))? = nil) throws -> PretrainOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "ALBEF batch (images vs texts)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        clampTemperature()
        let bert = config.bert
        let dropout = randomness.dropout
            ? DropoutStream(hidden: bert.hiddenDropoutProb, attention: bert.attentionProbsDropoutProb, seed: randomness.generator.next())
            : nil

        // Text encoder, then the ViT pruned under the guidance of the text [CLS].
        let textEmbeds = try textEncoder.encodeText(batch.text, dropout: dropout)
        let textCLS = try Self.cls(textEmbeds)
        let textFeat = try textProj(textCLS).l2Normalized()
        let pruning = config.prune.map {
            ELIPPruning(schedule: $0, patchCount: config.patchCount, textCLS: textCLS, lambda: config.pruneLambda)
        }
        let vision = try visualEncoder(batch.images, pruning: pruning)
        let imageEmbeds = vision.embeds
        let imageFeat = try visionProj(Self.cls(imageEmbeds)).l2Normalized()

        // Momentum features (no gradient; the momentum ViT is never pruned).
        let (imageEmbedsM, imageFeatM, textFeatM, simTargetsI2T, simTargetsT2I, imageFeatAll, textFeatAll) =
            try Autograd.noGrad { () throws -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor) in
                momentumUpdate()
                let textM = try textEncoderM.encodeText(batch.text, dropout: nil)
                let textFeatM = try textProjM(Self.cls(textM)).l2Normalized()
                let textAll = try Tensor.concat([textFeatM.transposed(), textQueue], axis: 1)
                let imageEmbedsM = try visualEncoderM(batch.images).embeds
                let imageFeatM = try visionProjM(Self.cls(imageEmbedsM)).l2Normalized()
                let imageAll = try Tensor.concat([imageFeatM.transposed(), imageQueue], axis: 1)
                let t = Tensor(scalar: temp.scalar)
                let simI2TM = try imageFeatM.matmul(textAll) / t
                let simT2IM = try textFeatM.matmul(imageAll) / t
                let eye = Self.diagonalTargets(rows: bs, cols: simI2TM.shape[1])
                let targetI2T = try simI2TM.softmax().scaled(alpha) + eye.scaled(1 - alpha)
                let targetT2I = try simT2IM.softmax().scaled(alpha) + eye.scaled(1 - alpha)
                return (imageEmbedsM, imageFeatM, textFeatM, targetI2T, targetT2I, imageAll, textAll)
            }

        // ITC with momentum distillation.
        let simI2T = try imageFeat.matmul(textFeatAll) / temp
        let simT2I = try textFeat.matmul(imageFeatAll) / temp
        let lossI2T = try simI2T.softCrossEntropy(targets: simTargetsI2T)
        let lossT2I = try simT2I.softCrossEntropy(targets: simTargetsT2I)
        let lossITA = try (lossI2T + lossT2I).scaled(0.5)

        try Autograd.noGrad {
            let (imgs, txts) = try gatherForQueue?(imageFeatM, textFeatM) ?? (imageFeatM, textFeatM)
            enqueue(imageFeatures: imgs, textFeatures: txts)
        }

        // ITM: positives, then hard negatives drawn from the in-batch similarity softmax.
        let outputPos = try textEncoder.fuse(textEmbeds, mask: batch.text, image: imageEmbeds, dropout: dropout)
        let negImage: [Int], negText: [Int]
        if let given = randomness.negativeImageForText, let givenText = randomness.negativeTextForImage {
            guard given.count == bs, givenText.count == bs, (given + givenText).allSatisfy({ $0 >= 0 && $0 < bs }) else {
                throw TensorError.invalidArgument(op: "ITM negatives", reason: "need \(bs) indices in [0, \(bs)) for each direction")
            }
            (negImage, negText) = (given, givenText)
        } else {
            negImage = Self.sampleNegatives(simT2I, batch: bs, generator: &randomness.generator)
            negText = Self.sampleNegatives(simI2T, batch: bs, generator: &randomness.generator)
        }
        let imageEmbedsNeg = try imageEmbeds.gatherRows(negImage)
        let textEmbedsNeg = try textEmbeds.gatherRows(negText)
        let textAll = try Tensor.concat([textEmbeds, textEmbedsNeg], axis: 0)
        let maskAll = try TextBatch.concat(batch.text, batch.text.rows(negText))
        let imageAllEmbeds = try Tensor.concat([imageEmbedsNeg, imageEmbeds], axis: 0)
        let outputNeg = try textEncoder.fuse(textAll, mask: maskAll, image: imageAllEmbeds, dropout: dropout)
        let vl = try Tensor.concat([Self.cls(outputPos), Self.cls(outputNeg)], axis: 0)
        let itmLabels = [Int](repeating: 1, count: bs) + [Int](repeating: 0, count: 2 * bs)
        let lossITM = try itmHead(vl).crossEntropy(labels: itmLabels)

        // MLM with distillation from the momentum model; only masked rows reach the vocab head.
        let (mlmIds, mlmLabels) = try maskedLanguageInputs(batch.text, randomness: &randomness)
        let mlmText = try TextBatch(ids: mlmIds, mask: batch.text.mask, batch: bs, length: batch.text.length)
        let maskedRows = mlmLabels.indices.filter { mlmLabels[$0] != -100 }
        let lossMLM: Tensor
        if maskedRows.isEmpty {
            lossMLM = Tensor(scalar: 0)
        } else {
            let h = bert.hiddenSize
            let teacher = try Autograd.noGrad {
                let states = try textEncoderM.encode(textEncoderM.embed(mlmText, dropout: nil), mask: mlmText,
                                                     layers: 0..<textEncoderM.layers.count, image: imageEmbedsM, dropout: nil)
                return try textEncoderM.mlmLogits(states.reshaped([bs * batch.text.length, h]).gatherRows(maskedRows)).softmax()
            }
            let states = try textEncoder.encode(textEncoder.embed(mlmText, dropout: dropout), mask: mlmText,
                                                layers: 0..<textEncoder.layers.count, image: imageEmbeds, dropout: dropout)
            let logits = try textEncoder.mlmLogits(states.reshaped([bs * batch.text.length, h]).gatherRows(maskedRows))
            let hard = try logits.crossEntropy(labels: maskedRows.map { mlmLabels[$0] })
            let soft = try logits.softCrossEntropy(targets: teacher)
            lossMLM = try hard.scaled(1 - alpha) + soft.scaled(alpha)
        }

        let loss = try lossMLM + lossITA + lossITM
        return PretrainOutput(lossMLM: lossMLM, lossITA: lossITA, lossITM: lossITM, loss: loss,
                              imageEmbeds: imageEmbeds, imageEmbedsMomentum: imageEmbedsM, keptIndices: vision.keptIndices)
    }

    static func diagonalTargets(rows: Int, cols: Int) -> Tensor {
        let t = Tensor.zeros([rows, cols])
        t.withUnsafeMutableBufferPointer { p in for i in 0..<min(rows, cols) { p[i * cols + i] = 1 } }
        return t
    }

    /// For each row b, one index drawn from softmax(sim[b, :batch]) with the diagonal zeroed
    /// (torch.multinomial semantics: unnormalised weights).
    static func sampleNegatives(_ sim: Tensor, batch bs: Int, generator: inout SeededGenerator) -> [Int] {
        let cols = sim.shape[1]
        let values = sim.toArray()
        return (0..<bs).map { b in
            let row = values[(b * cols)..<(b * cols + bs)]
            let m = row.max() ?? 0
            var w = row.map { Double(exp($0 - m)) }
            w[b] = 0
            let total = w.reduce(0, +)
            if total <= 0 || !total.isFinite { return (b + 1) % max(bs, 1) }
            var u = Double(generator.nextUniform()) * total
            for (j, x) in w.enumerated() where x > 0 {
                u -= x
                if u < 0 { return j }
            }
            return w.lastIndex(where: { $0 > 0 }) ?? (b + 1) % bs
        }
    }

    /// ALBEF masking: each token with probability mlm_probability (never PAD or CLS); of the
    /// masked, 80% -> [MASK], half of the rest -> a random id, the rest unchanged.
    func maskedLanguageInputs(_ text: TextBatch, randomness: inout StepRandomness) throws -> ([Int], [Int]) {
        if let ids = randomness.mlmInputIds, let labels = randomness.mlmLabels {
            guard ids.count == text.ids.count, labels.count == text.ids.count else {
                throw TensorError.shapeMismatch(op: "given MLM inputs", lhs: [text.batch, text.length], rhs: [ids.count, labels.count])
            }
            return (ids, labels)
        }
        return Self.mask(text.ids, vocabSize: config.bert.vocabSize, probability: config.mlmProbability,
                         generator: &randomness.generator)
    }

    public static func mask(_ ids: [Int], vocabSize: Int, probability: Float, padId: Int = 0, clsId: Int = 101,
                            maskId: Int = 103, generator g: inout SeededGenerator) -> ([Int], [Int]) {
        var input = ids
        var labels = [Int](repeating: -100, count: ids.count)
        for i in ids.indices {
            let masked = g.nextUniform() < probability && ids[i] != padId && ids[i] != clsId
            let replace = g.nextUniform() < 0.8
            let random = g.nextUniform() < 0.5
            let word = Int(g.next() % UInt64(vocabSize))
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

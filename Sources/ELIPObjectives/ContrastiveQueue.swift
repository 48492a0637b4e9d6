import ELIPTensor

/// Image-text contrastive loss with feature queues and momentum distillation (ALBEF's and BLIP's
/// ITC, SPEC §3): the momentum features of the batch plus a queue of earlier ones are the
/// candidates; targets mix the momentum model's softmax with the one-hot positives.
public final class ContrastiveQueue {
    /// [dim, size] each; columns are unit-norm features.
    public let imageQueue: Tensor
    public let textQueue: Tensor
    /// Next column to write.
    public var pointer = 0
    public let dim: Int
    public let size: Int
    /// With id-aware positives (ALBEF retrieval fine-tuning's `idx_queue`): the sample id of
    /// each queue column, `emptyId` where nothing was written yet; nil otherwise.
    public var idQueue: [Int]?
    /// The id of a never-written column: matches no sample id (ids are dataset indices >= 0).
    public static let emptyId = -100

    public init(dim: Int, size: Int, tracksIds: Bool = false) throws {
        guard dim > 0, size > 0 else {
            throw TensorError.invalidArgument(op: "ContrastiveQueue", reason: "feature width \(dim) and queue size \(size) must be positive")
        }
        self.dim = dim
        self.size = size
        imageQueue = Tensor.zeros([dim, size])
        textQueue = Tensor.zeros([dim, size])
        idQueue = tracksIds ? [Int](repeating: Self.emptyId, count: size) : nil
    }

    /// Random normal columns normalised along the feature dimension (ALBEF's initialisation);
    /// pointer 0.
    public func initialiseRandomly(seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        let e = dim, q = size
        for queue in [imageQueue, textQueue] {
            queue.withUnsafeMutableBufferPointer { p in
                for i in 0..<(e * q) { p[i] = g.nextNormal() }
                for c in 0..<q {
                    var s: Float = 0
                    for d in 0..<e { s += p[d * q + c] * p[d * q + c] }
                    let n = max(s.squareRoot(), 1e-12)
                    for d in 0..<e { p[d * q + c] /= n }
                }
            }
        }
        pointer = 0
        if idQueue != nil { idQueue = [Int](repeating: Self.emptyId, count: size) }
    }

    /// Id-aware ITC targets (ALBEF retrieval): candidate j is a positive of row b iff their ids
    /// are equal; each row's positives share weight 1 (`pos / rowsum(pos)`). The candidates are
    /// `batchIds` (every candidate row of the batch) then the id queue. Throws when a row has no
    /// positive (its own candidate must carry its id).
    public func idAwarePositives(rowIds: [Int], batchIds: [Int]) throws -> Tensor {
        guard let idQueue else {
            throw TensorError.invalidArgument(op: "ContrastiveQueue.idAwarePositives", reason: "this queue keeps no ids")
        }
        let candidates = batchIds + idQueue, cols = candidates.count
        let t = Tensor.zeros([rowIds.count, cols])
        try t.withUnsafeMutableBufferPointer { p in
            for (b, id) in rowIds.enumerated() {
                let hits = candidates.indices.filter { candidates[$0] == id }
                guard !hits.isEmpty, id != Self.emptyId else {
                    throw TensorError.invalidArgument(op: "ITC positives", reason: "sample id \(id) of row \(b) matches no candidate")
                }
                for j in hits { p[b * cols + j] = 1 / Float(hits.count) }
            }
        }
        return t
    }

    /// The momentum side of a step (no gradient).
    public struct Teacher {
        /// Distillation targets [B, n + size]: alpha softmax(momentum sims) + (1 - alpha) one-hot.
        public let imageToText: Tensor, textToImage: Tensor
        /// Candidates [dim, n + size]: the batch's momentum features, then the queue.
        public let imageCandidates: Tensor, textCandidates: Tensor
    }

    /// Targets from the momentum features of this rank's rows (`imageFeatM`, `textFeatM`, [B, dim])
    /// against the candidate rows `batchImages`/`batchTexts` ([n, dim]: this rank's rows, or every
    /// rank's with global negatives) and the queue. Row i's positive is candidate
    /// `positiveOffset + i`, unless `positives` ([B, n + size], rows summing to 1, e.g.
    /// `idAwarePositives`) gives the targets' hard part.
    public func teacher(imageFeatM: Tensor, textFeatM: Tensor, batchImages: Tensor, batchTexts: Tensor,
                        temperature: Float, alpha: Float, positiveOffset: Int, positives: Tensor? = nil) throws -> Teacher {
        try Autograd.noGrad {
            let textAll = try Tensor.concat([batchTexts.transposed(), textQueue], axis: 1)
            let imageAll = try Tensor.concat([batchImages.transposed(), imageQueue], axis: 1)
            let t = Tensor(scalar: temperature)
            let simI2T = try imageFeatM.matmul(textAll) / t
            let simT2I = try textFeatM.matmul(imageAll) / t
            let eye = positives ?? Self.oneHot(rows: imageFeatM.shape[0], cols: simI2T.shape[1], columnOffset: positiveOffset)
            guard eye.shape == simI2T.shape else {
                throw TensorError.shapeMismatch(op: "ContrastiveQueue.teacher (positives)", lhs: eye.shape, rhs: simI2T.shape)
            }
            let targetI2T = try simI2T.softmax().scaled(alpha) + eye.scaled(1 - alpha)
            let targetT2I = try simT2I.softmax().scaled(alpha) + eye.scaled(1 - alpha)
            return Teacher(imageToText: targetI2T, textToImage: targetT2I, imageCandidates: imageAll, textCandidates: textAll)
        }
    }

    /// The student's similarities and the loss (loss_i2t + loss_t2i) / 2, with gradient into the
    /// features and the temperature.
    public struct Student {
        public let loss: Tensor
        /// [B, n + size] similarities / temperature (hard-negative sampling reads their first columns).
        public let imageToText: Tensor, textToImage: Tensor
    }

    public func loss(imageFeat: Tensor, textFeat: Tensor, temperature: Tensor, teacher: Teacher) throws -> Student {
        let simI2T = try imageFeat.matmul(teacher.textCandidates) / temperature
        let simT2I = try textFeat.matmul(teacher.imageCandidates) / temperature
        let lossI2T = try simI2T.softCrossEntropy(targets: teacher.imageToText)
        let lossT2I = try simT2I.softCrossEntropy(targets: teacher.textToImage)
        return Student(loss: try (lossI2T + lossT2I).scaled(0.5), imageToText: simI2T, textToImage: simT2I)
    }

    /// Writes momentum features [n, dim] (and, for a queue that keeps ids, their `ids`) into the
    /// queues at the pointer, wrapping around.
    public func enqueue(imageFeatures: Tensor, textFeatures: Tensor, ids: [Int]? = nil) throws {
        guard imageFeatures.rank == 2, imageFeatures.shape == textFeatures.shape, imageFeatures.shape[1] == dim else {
            throw TensorError.shapeMismatch(op: "ContrastiveQueue.enqueue", lhs: imageFeatures.shape, rhs: [textFeatures.shape[0], dim])
        }
        let n = imageFeatures.shape[0], e = dim, q = size
        guard (idQueue == nil) == (ids == nil), ids.map({ $0.count == n }) ?? true else {
            throw TensorError.invalidArgument(op: "ContrastiveQueue.enqueue", reason: idQueue == nil
                ? "this queue keeps no ids" : "needs one id per enqueued row (\(n)), got \(ids?.count ?? 0)")
        }
        if let ids, var queueIds = idQueue {
            for (s, id) in ids.enumerated() { queueIds[(pointer + s) % q] = id }
            idQueue = queueIds
        }
        let img = imageFeatures.toArray(), txt = textFeatures.toArray()
        imageQueue.withUnsafeMutableBufferPointer { iq in
            textQueue.withUnsafeMutableBufferPointer { tq in
                for s in 0..<n {
                    let col = (pointer + s) % q
                    for d in 0..<e {
                        iq[d * q + col] = img[s * e + d]
                        tq[d * q + col] = txt[s * e + d]
                    }
                }
            }
        }
        pointer = (pointer + n) % q
    }

    /// One-hot targets: row i's positive is column `columnOffset + i`.
    public static func oneHot(rows: Int, cols: Int, columnOffset: Int = 0) -> Tensor {
        let t = Tensor.zeros([rows, cols])
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<rows where columnOffset + i < cols { p[i * cols + columnOffset + i] = 1 }
        }
        return t
    }
}

/// Momentum distillation's weight alpha, ramped linearly from 0 over the first `rampEpochs`
/// epochs: `alpha * min(1, (epoch * n + i) / (rampEpochs * n))` (ALBEF: one epoch, BLIP: two).
public func distillationWeight(_ alpha: Float, rampEpochs: Int, epoch: Int, iteration: Int, iterationsPerEpoch: Int) -> Float {
    let n = max(iterationsPerEpoch, 1)
    guard rampEpochs > 0, epoch < rampEpochs else { return alpha }
    return alpha * min(1, Float(epoch * n + iteration) / Float(rampEpochs * n))
}

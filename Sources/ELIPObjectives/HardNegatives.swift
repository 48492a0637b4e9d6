import ELIPNN
import ELIPTensor
import Foundation

/// Hard negatives for image-text matching (ALBEF's and BLIP's ITM, SPEC §3): for each text, a
/// negative image drawn from the softmax of its similarities to the batch's images (its own
/// positive excluded), and likewise a negative text for each image. With global negatives the
/// candidates are every rank's batch, their features gathered with gradient.
public enum HardNegatives {
    /// For each local row b, one candidate drawn from softmax(sim[b, :candidates]) with the row's
    /// own positive (global index rowOffset + b) zeroed — torch.multinomial semantics on
    /// unnormalised weights. The uniform draw is indexed by the global row, so the choice does not
    /// depend on how the batch is split over ranks.
    public static func sample(_ sim: Tensor, candidates: Int, rowOffset: Int, seed: UInt64, stream: Int) -> [Int] {
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

    /// BLIP's sampling weights (SPEC-BLIP §5.2): softmax over the first `candidates` columns of
    /// `sim`, plus `epsilon`, the row's own positive (column rowOffset + b) set to 0; rows are not
    /// renormalised. [rows, candidates], no gradient.
    public static func blipWeights(_ sim: Tensor, candidates: Int, rowOffset: Int, epsilon: Float = 1e-4) throws -> Tensor {
        try Autograd.noGrad {
            let rows = sim.shape[0]
            let w = try sim.slice(axis: 1, start: 0, length: candidates).softmax().scaled(1, plus: epsilon)
            w.withUnsafeMutableBufferPointer { p in
                for b in 0..<rows where rowOffset + b < candidates { p[b * candidates + rowOffset + b] = 0 }
            }
            return w
        }
    }

    /// ALBEF retrieval fine-tuning's sampling weights (SPEC-ALBEF-TASKS §2 step 6): softmax
    /// over the first `candidates` columns of `sim`, every candidate j with
    /// `candidateIds[j] == candidateIds[rowOffset + b]` (the row's own positive included) set to
    /// 0. A row left without any weight (every candidate shares its id) is an error, as in
    /// torch.multinomial. [rows, candidates], no gradient.
    public static func idAwareWeights(_ sim: Tensor, candidateIds: [Int], rowOffset: Int) throws -> Tensor {
        try Autograd.noGrad {
            let rows = sim.shape[0], n = candidateIds.count
            guard n <= sim.shape[1], rowOffset + rows <= n else {
                throw TensorError.invalidArgument(op: "ITM negatives", reason: "\(n) candidate ids for \(sim.shape[1]) similarity columns, rows \(rowOffset)..<\(rowOffset + rows)")
            }
            let w = try sim.slice(axis: 1, start: 0, length: n).softmax()
            try w.withUnsafeMutableBufferPointer { p in
                for b in 0..<rows {
                    let id = candidateIds[rowOffset + b]
                    var left: Float = 0
                    for j in 0..<n {
                        if candidateIds[j] == id { p[b * n + j] = 0 }
                        left += p[b * n + j]
                    }
                    guard left > 0 else {
                        throw TensorError.invalidArgument(op: "ITM negatives", reason: "row \(rowOffset + b): every candidate shares its id \(id); a batch needs samples of at least two ids")
                    }
                }
            }
            return w
        }
    }

    /// One candidate per row of non-negative weights [rows, candidates] (torch.multinomial on
    /// unnormalised weights); the uniform draw is indexed by the global row `rowOffset + b`.
    public static func draw(weights: Tensor, rowOffset: Int, seed: UInt64, stream: Int) -> [Int] {
        let rows = weights.shape[0], cols = weights.shape[1]
        let values = weights.toArray()
        return (0..<rows).map { b in
            let row = values[(b * cols)..<((b + 1) * cols)].map(Double.init)
            let total = row.reduce(0, +)
            let own = rowOffset + b
            if total <= 0 || !total.isFinite { return (own + 1) % max(cols, 1) }
            var u = Double(CounterRandom.uniform(seed: seed &+ UInt64(stream), index: own)) * total
            for (j, x) in row.enumerated() where x > 0 {
                u -= x
                if u < 0 { return j }
            }
            return row.lastIndex(where: { $0 > 0 }) ?? (own + 1) % cols
        }
    }

    /// Negatives given by the caller (replaying a recorded step): `count` indices in
    /// [0, candidates) per direction, checked.
    public static func checkGiven(imageForText: [Int], textForImage: [Int], count: Int, candidates: Int) throws -> ([Int], [Int]) {
        guard imageForText.count == count, textForImage.count == count,
              (imageForText + textForImage).allSatisfy({ $0 >= 0 && $0 < candidates }) else {
            throw TensorError.invalidArgument(op: "ITM negatives", reason: "need \(count) indices in [0, \(candidates)) for each direction")
        }
        return (imageForText, textForImage)
    }

    /// `checkGiven`, and no given negative shares its row's id (`ids` of the candidates, the
    /// rows being candidates `rowOffset ..< rowOffset + count`).
    public static func checkGiven(imageForText: [Int], textForImage: [Int], count: Int, ids: [Int], rowOffset: Int) throws -> ([Int], [Int]) {
        let given = try checkGiven(imageForText: imageForText, textForImage: textForImage, count: count, candidates: ids.count)
        guard rowOffset >= 0, rowOffset + count <= ids.count else {
            throw TensorError.invalidArgument(op: "ITM negatives", reason: "rows \(rowOffset)..<\(rowOffset + count) outside the \(ids.count) candidates")
        }
        for (direction, drawn) in [("image for text", imageForText), ("text for image", textForImage)] {
            for (b, j) in drawn.enumerated() where ids[j] == ids[rowOffset + b] {
                throw TensorError.invalidArgument(op: "ITM negatives", reason: "negative \(direction) row \(rowOffset + b) is \(j), which has the row's own id \(ids[j])")
            }
        }
        return given
    }

    /// The image tokens the fusion encoder attends to and, for each text b, the row of its
    /// negative image there. Locally that is the batch's images and the drawn indices; with
    /// global negatives, [local images; the drawn images gathered from every rank] (gradient
    /// flows back to the rank that owns each image).
    public static func negativeImages(_ imageEmbeds: Tensor, drawn: [Int], global: FeatureExchange?) throws -> (images: Tensor, negativeRows: [Int]) {
        guard let global else { return (imageEmbeds, drawn) }
        let bs = imageEmbeds.shape[0]
        let pool = try imageEmbeds.allGatherRows(global)
        return (try Tensor.concat([imageEmbeds, pool.gatherRows(drawn)], axis: 0), Array(bs..<(bs + drawn.count)))
    }

    /// Ids and masks of the drawn negative texts, for models that encode a negative caption again
    /// with its image (BLIP): from this rank's batch or, with global negatives, every rank's
    /// (integers; no gradient crosses ranks, each rank encodes the texts it uses).
    public static func negativeTextIds(_ text: TextBatch, drawn: [Int], global: FeatureExchange?) throws -> TextBatch {
        guard let global else { return try text.rows(drawn) }
        let ids = try global.allGather(text.ids.map(Float.init)).map { Int($0) }
        let masks = try global.allGather(text.mask.map(Float.init)).map { Int($0) }
        return try TextBatch(ids: ids, mask: masks, batch: text.batch * global.worldSize, length: text.length).rows(drawn)
    }

    /// Text states [n, L, H] and masks of the drawn negative texts, from this rank's batch or,
    /// with global negatives, every rank's (texts must then have the same length on every rank).
    public static func negativeTexts(_ textEmbeds: Tensor, text: TextBatch, drawn: [Int], global: FeatureExchange?) throws -> (states: Tensor, mask: TextBatch) {
        let pool = try global.map { try textEmbeds.allGatherRows($0) } ?? textEmbeds
        let maskPool: TextBatch
        if let global {
            let masks = try global.allGather(text.mask.map(Float.init)).map { Int($0) }
            maskPool = try TextBatch(ids: [Int](repeating: 0, count: masks.count), mask: masks,
                                     batch: text.batch * global.worldSize, length: text.length)
        } else {
            maskPool = text
        }
        return (try pool.gatherRows(drawn), try maskPool.rows(drawn))
    }
}

import ELIPTensor

/// Token ids and attention mask of a padded batch.
public struct TextBatch {
    public let ids: [Int]
    public let mask: [Int]
    public let batch: Int
    public let length: Int

    public init(ids: [Int], mask: [Int], batch: Int, length: Int) throws {
        guard ids.count == batch * length, mask.count == batch * length else {
            throw TensorError.shapeMismatch(op: "TextBatch", lhs: [batch, length], rhs: [ids.count, mask.count])
        }
        self.ids = ids
        self.mask = mask
        self.batch = batch
        self.length = length
    }

    /// BERT's additive key mask: (1 - mask) * -10000.
    public var additiveMask: [Float] { mask.map { $0 == 0 ? -10000 : 0 } }

    /// The same captions with other ids (masked for MLM, or another first token).
    public func replacingIds(_ newIds: [Int]) throws -> TextBatch {
        try TextBatch(ids: newIds, mask: mask, batch: batch, length: length)
    }

    /// Rows `indices` of this batch.
    public func rows(_ indices: [Int]) throws -> TextBatch {
        var i: [Int] = [], m: [Int] = []
        for r in indices {
            guard r >= 0, r < batch else {
                throw TensorError.invalidArgument(op: "TextBatch.rows", reason: "row \(r) outside [0, \(batch))")
            }
            i += ids[(r * length)..<((r + 1) * length)]
            m += mask[(r * length)..<((r + 1) * length)]
        }
        return try TextBatch(ids: i, mask: m, batch: indices.count, length: length)
    }

    public static func concat(_ a: TextBatch, _ b: TextBatch) throws -> TextBatch {
        guard a.length == b.length else { throw TensorError.shapeMismatch(op: "TextBatch.concat", lhs: [a.length], rhs: [b.length]) }
        return try TextBatch(ids: a.ids + b.ids, mask: a.mask + b.mask, batch: a.batch + b.batch, length: a.length)
    }
}

/// A batch of token sequences padded to the longest one, row-major `[batchSize, length]`.
public struct TokenBatch: Sendable, Equatable {
    public let batchSize: Int
    public let length: Int
    /// `inputIds[b * length + t]`; padding positions hold the pad id.
    public let inputIds: [Int32]
    /// 1 for real tokens, 0 for padding, same layout as `inputIds`.
    public let attentionMask: [Int32]

    /// Pads to the longest sequence, or to `padTo` when given (at least the longest).
    public init(sequences: [[Int32]], padId: Int32, padTo: Int? = nil) {
        let length = max(sequences.map(\.count).max() ?? 0, padTo ?? 0)
        var ids = [Int32](repeating: padId, count: sequences.count * length)
        var mask = [Int32](repeating: 0, count: sequences.count * length)
        for (b, sequence) in sequences.enumerated() {
            let base = b * length
            for (t, id) in sequence.enumerated() {
                ids[base + t] = id
                mask[base + t] = 1
            }
        }
        self.batchSize = sequences.count
        self.length = length
        self.inputIds = ids
        self.attentionMask = mask
    }

    /// Row `b` of the ids, padding included.
    public func ids(row b: Int) -> ArraySlice<Int32> {
        inputIds[(b * length)..<((b + 1) * length)]
    }

    /// Row `b` of the mask.
    public func mask(row b: Int) -> ArraySlice<Int32> {
        attentionMask[(b * length)..<((b + 1) * length)]
    }

    /// Number of real (unpadded) tokens in row `b`.
    public func sequenceLength(row b: Int) -> Int {
        mask(row: b).reduce(0) { $0 + Int($1) }
    }
}

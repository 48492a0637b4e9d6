import ELIPTensor

/// A lookup table [count, dim].
public final class Embedding {
    public let weight: Tensor

    public init(_ scope: Scope, count: Int, dim: Int) throws {
        weight = try scope.parameter("weight", [count, dim], init: defaultWeightInit)
    }

    /// Rows for `ids`, shaped [ids.count, dim].
    public func callAsFunction(_ ids: [Int]) throws -> Tensor { try weight.embeddingLookup(ids) }
}

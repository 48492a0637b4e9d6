import ELIPTensor

/// LayerNorm over the last dimension (ViT uses eps 1e-6, BERT 1e-12).
public final class LayerNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ scope: Scope, dim: Int, eps: Float) throws {
        self.eps = eps
        weight = try scope.parameter("weight", [dim])
        bias = try scope.parameter("bias", [dim])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

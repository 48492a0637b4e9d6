import ELIPTensor

/// LayerNorm over the last dimension (timm's ViT uses eps 1e-6, BERT 1e-12, CLIP and RoBERTa 1e-5).
public final class LayerNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ scope: Scope, dim: Int, eps: Float) throws {
        self.eps = eps
        weight = try scope.parameter("weight", [dim], init: .ones)
        bias = try scope.parameter("bias", [dim], init: .zeros)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.layerNorm(weight: weight, bias: bias, eps: eps) }

    public var parameters: [Tensor] { [weight, bias] }
}

import ELIPTensor

/// y = x W^T + b, weight stored [out, in] as in PyTorch.
public final class Linear {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int, outFeatures: Int

    public init(_ scope: Scope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = try scope.parameter("weight", [outFeatures, inFeatures])
        self.bias = bias ? try scope.parameter("bias", [outFeatures]) : nil
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.linear(weight, bias) }
}

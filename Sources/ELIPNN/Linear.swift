import ELIPTensor

/// y = x W^T + b, weight stored [out, in] as in PyTorch.
public final class Linear {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int, outFeatures: Int

    /// `weightName`/`biasName` are the leaf names in `scope` (CLIP's packed projection is
    /// `attn.in_proj_weight` / `attn.in_proj_bias`). `pytorchDefaultInit`: weight and bias
    /// U(-1/sqrt(in), 1/sqrt(in)) as a plain nn.Linear starts, instead of the transformers' rule
    /// (N(0, 0.02) truncated, bias 0).
    public init(_ scope: Scope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true,
                weightName: String = "weight", biasName: String = "bias", pytorchDefaultInit: Bool = false) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let bound = 1 / Float(max(inFeatures, 1)).squareRoot()
        weight = try scope.parameter(weightName, [outFeatures, inFeatures], init: pytorchDefaultInit ? .uniform(bound: bound) : defaultWeightInit)
        self.bias = bias ? try scope.parameter(biasName, [outFeatures], init: pytorchDefaultInit ? .uniform(bound: bound) : .zeros) : nil
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.linear(weight, bias) }

    /// Its parameters (weight, then bias).
    public var parameters: [Tensor] { [weight] + (bias.map { [$0] } ?? []) }

    /// Rows `start ..< start + count` of the output: the same map restricted to those outputs
    /// (one of q, k, v of a packed projection).
    public func outputRows(_ start: Int, _ count: Int) throws -> (weight: Tensor, bias: Tensor?) {
        (try weight.slice(axis: 0, start: start, length: count), try bias.map { try $0.slice(axis: 0, start: start, length: count) })
    }
}

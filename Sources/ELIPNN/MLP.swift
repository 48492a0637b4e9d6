import ELIPTensor

/// Feed-forward block fc2(activation(fc1(x))) (timm `mlp.fc1/fc2`, CLIP `mlp.c_fc/c_proj`,
/// BERT `intermediate.dense` / `output.dense`).
public final class MLP {
    public let fc1: Linear, fc2: Linear
    public let activation: Activation

    public init(fc1: Linear, fc2: Linear, activation: Activation) throws {
        guard fc1.outFeatures == fc2.inFeatures else {
            throw TensorError.invalidArgument(op: "MLP", reason: "fc1 gives \(fc1.outFeatures) features, fc2 reads \(fc2.inFeatures)")
        }
        self.fc1 = fc1
        self.fc2 = fc2
        self.activation = activation
    }

    /// The usual naming `fc1`/`fc2` under `scope` (timm), or other leaf names.
    public convenience init(_ scope: Scope, dim: Int, hidden: Int, activation: Activation,
                            names: (String, String) = ("fc1", "fc2")) throws {
        try self.init(fc1: Linear(scope[names.0], in: dim, out: hidden), fc2: Linear(scope[names.1], in: hidden, out: dim),
                      activation: activation)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(activation(fc1(x))) }

    public var parameters: [Tensor] { fc1.parameters + fc2.parameters }
}

import ELIPTensor

/// Where a layer's parameters go: an arena plus a dotted name prefix, so parameter names come
/// out exactly as in the PyTorch state_dict (`visual_encoder.blocks.3.attn.qkv.weight`).
public struct Scope {
    public let arena: ParameterArena
    public let prefix: String

    public init(arena: ParameterArena, prefix: String = "") {
        self.arena = arena
        self.prefix = prefix
    }

    /// A nested scope: `scope["blocks"][3]["attn"]`.
    public subscript(_ component: String) -> Scope {
        Scope(arena: arena, prefix: prefix.isEmpty ? component : "\(prefix).\(component)")
    }

    public subscript(_ index: Int) -> Scope { self[String(index)] }

    /// Full name of a parameter in this scope.
    public func name(_ leaf: String) -> String { prefix.isEmpty ? leaf : "\(prefix).\(leaf)" }

    /// Adds a parameter called `leaf` to the arena, initialised by `initializer` when the model is
    /// initialised randomly.
    public func parameter(_ leaf: String, _ shape: [Int], init initializer: ParameterInit) throws -> Tensor {
        try arena.add(name(leaf), shape: shape, init: initializer)
    }

    /// Declares `leaf` in this scope as another name of `parameter` (weight tying).
    public func tie(_ leaf: String, to parameter: Tensor) throws {
        try arena.tie(name(leaf), to: parameter)
    }

    /// Ties every parameter in `parameters` (named under `source`'s prefix) to the same relative
    /// name under this scope: `source.X` gets the second name `self.X`.
    public func tie(_ parameters: [Tensor], from source: Scope) throws {
        for p in parameters {
            guard let n = p.name, n.hasPrefix(source.prefix + ".") else {
                throw TensorError.invalidArgument(op: "Scope.tie", reason: "\(p.name ?? "?") is not named under \(source.prefix)")
            }
            try arena.tie(name(String(n.dropFirst(source.prefix.count + 1))), to: p)
        }
    }
}

/// The initialisation the official code gives weights it does not load: N(0, 0.02) truncated at
/// two standard deviations (timm's trunc_normal_; BERT's N(0, 0.02) is within float noise of it).
public let defaultWeightInit = ParameterInit.truncatedNormal(std: 0.02)

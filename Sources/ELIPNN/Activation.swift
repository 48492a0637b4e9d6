import ELIPTensor

/// The non-linearity of a feed-forward block.
public enum Activation: String, Sendable, CaseIterable {
    /// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): BERT, timm's ViT.
    case gelu
    /// x sigmoid(1.702 x): OpenAI's CLIP.
    case quickGELU = "quick_gelu"

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .gelu: return x.gelu()
        case .quickGELU: return x.quickGELU()
        }
    }
}

/// Dropout settings for one forward pass: a probability per kind and a seed stream, drawn in the
/// order the layers run. `nil` in a forward means evaluation mode (no dropout).
public final class DropoutStream {
    public let hidden: Float
    public let attention: Float
    private var generator: SeededGenerator

    public init(hidden: Float, attention: Float, seed: UInt64) {
        self.hidden = hidden
        self.attention = attention
        generator = SeededGenerator(seed: seed)
    }

    /// The seed of the next dropout mask.
    public func nextSeed() -> UInt64 { generator.next() }

    /// Attention-probability dropout for the next attention call.
    public func nextAttention() -> (p: Float, seed: UInt64) { (attention, nextSeed()) }

    /// Hidden dropout applied to `x` with the next seed.
    public func hiddenDropout(_ x: Tensor) throws -> Tensor { try x.dropout(hidden, seed: nextSeed()) }
}

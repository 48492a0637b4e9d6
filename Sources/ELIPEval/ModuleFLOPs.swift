/// The GEMM FLOPs of one training step by module: vision encoder, text encoder, fusion, other
/// (the paper's Figure 2(b); issue 18 part 2), from the profiler's per-section counts.
///
/// A section path belongs to the module its first `vision`, `text` or `fusion` component names:
/// `vision/look-ahead` and `momentum/vision` are vision-encoder work, `momentum/text` text
/// encoder, `fusion` the cross-attending layers (ALBEF's fusion BERT; BLIP's image-grounded
/// encoder and decoder; METER's co-attention stack, both streams). Anything else (contrastive loss, projections outside those sections)
/// is `other`. Backward FLOPs are charged to the module of the forward op they differentiate.
public struct ModuleFLOPs: Equatable {
    public static let modules = ["vision", "text", "fusion", "other"]
    /// Sections of the step that are not forward computation (the bench's own phases).
    public static let nonForwardSections: Set<String> = ["backward", "optimizer", "zero-grad"]

    /// Forward GEMM FLOPs per module.
    public var forward: [String: Double] = [:]
    /// Backward GEMM FLOPs per module.
    public var backward: [String: Double] = [:]
    /// Forward FLOPs of the pruning's scoring passes (look-ahead or inline; part of vision).
    public var scoring = 0.0
    /// Forward FLOPs of the momentum model (no gradient; part of vision, text and fusion).
    public var momentum = 0.0

    /// The module of a section path ("" outside every section: other).
    public static func module(ofSection path: String) -> String {
        path.split(separator: "/").lazy.map(String.init).first { ["vision", "text", "fusion"].contains($0) } ?? "other"
    }

    public init(sectionFlops: [String: Double], backwardFlops: [String: Double]) {
        for (path, f) in sectionFlops {
            let top = path.split(separator: "/").first.map(String.init) ?? ""
            guard !Self.nonForwardSections.contains(top) else { continue }
            forward[Self.module(ofSection: path), default: 0] += f
            if path.hasSuffix("look-ahead") || path.hasSuffix("inline-scoring") { scoring += f }
            // The momentum encoders, and ALBEF's momentum fusion pass for MLM distillation.
            if top == "momentum" || path.split(separator: "/").contains("teacher") { momentum += f }
        }
        for (path, f) in backwardFlops { backward[Self.module(ofSection: path), default: 0] += f }
    }

    public var forwardTotal: Double { forward.values.reduce(0, +) }
    public var trainingTotal: Double { forwardTotal + backward.values.reduce(0, +) }

    /// Share of the forward FLOPs in `module` (0 when there are none).
    public func forwardShare(_ module: String) -> Double {
        forwardTotal > 0 ? (forward[module] ?? 0) / forwardTotal : 0
    }

    /// Share of the forward+backward FLOPs in `module`.
    public func trainingShare(_ module: String) -> Double {
        trainingTotal > 0 ? ((forward[module] ?? 0) + (backward[module] ?? 0)) / trainingTotal : 0
    }

    /// Element-wise median over steps (each module's count on its own).
    public static func median(_ steps: [ModuleFLOPs]) -> ModuleFLOPs {
        func med(_ xs: [Double]) -> Double {
            let s = xs.sorted()
            guard !s.isEmpty else { return 0 }
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        var m = ModuleFLOPs(sectionFlops: [:], backwardFlops: [:])
        for k in modules {
            m.forward[k] = med(steps.map { $0.forward[k] ?? 0 })
            m.backward[k] = med(steps.map { $0.backward[k] ?? 0 })
        }
        m.scoring = med(steps.map(\.scoring))
        m.momentum = med(steps.map(\.momentum))
        return m
    }
}

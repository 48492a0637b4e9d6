import CKernels
import ELIPTensor

/// A momentum ("EMA") copy of some of a model's parameters (ALBEF, BLIP): every momentum
/// parameter is paired with its online twin by name, and `update()` sets
/// `p_m = m p_m + (1 - m) p` over all pairs. The pairs are merged into runs of contiguous memory
/// in both arenas, so the update is a few vector passes.
public final class MomentumTwin {
    public let online: ParameterArena
    public let momentum: ParameterArena
    public let coefficient: Float
    /// (online offset, momentum offset, count) runs, padding included.
    public let runs: [(online: Int, momentum: Int, count: Int)]

    /// ALBEF/BLIP naming: `visual_encoder_m.X` is the twin of `visual_encoder.X`.
    public static func suffixMTwin(_ momentumName: String) -> String? {
        let parts = momentumName.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, parts[0].hasSuffix("_m") else { return nil }
        return "\(parts[0].dropLast(2)).\(parts[1])"
    }

    /// Pairs every parameter of `momentum` with the online parameter named `twin(name)`; a
    /// momentum parameter without a twin of the same size is an error.
    public init(online: ParameterArena, momentum: ParameterArena, coefficient: Float,
                twin: (String) -> String? = MomentumTwin.suffixMTwin) throws {
        self.online = online
        self.momentum = momentum
        self.coefficient = coefficient
        var runs: [(online: Int, momentum: Int, count: Int)] = []
        for e in momentum.entries {
            guard let twinName = twin(e.name), let t = online.tensor(twinName), let i = t.parameterIndex,
                  online.entries[i].count == e.count else {
                throw TensorError.invalidArgument(op: "momentum pairing", reason: "no online twin of the same size for \(e.name)")
            }
            let o = online.entries[i].offset
            // Alignment padding (zero in both arenas) is included so that neighbours merge.
            let n = e.paddedCount
            if let last = runs.last, last.online + last.count == o, last.momentum + last.count == e.offset {
                runs[runs.count - 1].count += n
            } else {
                runs.append((o, e.offset, n))
            }
        }
        self.runs = runs
    }

    /// `p_m = m p_m + (1 - m) p` over all pairs (no gradient).
    public func update() {
        let m = coefficient
        guard let src = online.values.baseAddress, let dst = momentum.values.baseAddress else { return }
        for r in runs {
            Threads.parallelFor(r.count, grain: 1 << 16) { c in
                elip_ema(dst + r.momentum + c.lowerBound, src + r.online + c.lowerBound, Int64(c.count), m)
            }
        }
    }

    /// Copies the online weights into the momentum twins (ALBEF's copy_params at the start).
    public func copyOnlineToMomentum() {
        let src = online.values, dst = momentum.values
        for r in runs { for i in 0..<r.count { dst[r.momentum + i] = src[r.online + i] } }
    }
}

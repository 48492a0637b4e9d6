import CKernels
import ELIPModel
import ELIPTensor
import Foundation

/// AdamW over a whole parameter arena: torch.optim.AdamW (ALBEF, BLIP) or transformers.AdamW
/// (METER), with per-parameter weight decay and learning-rate multipliers (the model's rules).
///
/// Which parameters take weight decay is the model's rule (`TrainableModel.decays`; ALBEF's
/// create_optimizer: not 1-D tensors and not names ending in ".bias", the 0-D temperature
/// included). The moment buffers have the arena's layout, so a step is one loop; checkpoints
/// store them per parameter name.
public final class AdamW {
    public struct Hyperparameters: Codable, Equatable, Sendable {
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var eps: Float = 1e-8
        public var weightDecay: Float = 0.02
        public init() {}
    }

    public let hyper: Hyperparameters
    public let arena: ParameterArena
    public let variant: AdamWVariant
    /// First and second moments, arena layout.
    public private(set) var exp_avg: [Float]
    public private(set) var exp_avg_sq: [Float]
    /// Steps taken (bias correction).
    public private(set) var step = 0
    /// Contiguous arena runs sharing one weight decay (0 or weightDecay) and one lr multiplier,
    /// covering the arena.
    private var runs: [(start: Int, count: Int, decay: Float, lrMultiplier: Double)] = []

    /// `decays` and `lrMultiplier` are the model's rules by parameter name (and shape);
    /// `variant` the official code's AdamW.
    public init(arena: ParameterArena, hyper: Hyperparameters = Hyperparameters(),
                decays: (String, [Int]) -> Bool = AdamW.decays, lrMultiplier: (String) -> Double = { _ in 1 },
                variant: AdamWVariant = .torch) {
        self.arena = arena
        self.hyper = hyper
        self.variant = variant
        exp_avg = [Float](repeating: 0, count: arena.used)
        exp_avg_sq = [Float](repeating: 0, count: arena.used)
        // Each entry's run reaches to the next entry (alignment padding is zero and stays zero).
        let entries = arena.entries.sorted { $0.offset < $1.offset }
        for (i, e) in entries.enumerated() {
            let end = i + 1 < entries.count ? entries[i + 1].offset : arena.used
            let wd: Float = decays(e.name, e.shape) ? hyper.weightDecay : 0
            let mult = lrMultiplier(e.name)
            if let last = runs.last, last.decay == wd, last.lrMultiplier == mult, last.start + last.count == e.offset {
                runs[runs.count - 1].count += end - e.offset
            } else {
                runs.append((e.offset, end - e.offset, wd, mult))
            }
        }
    }

    /// timm's rule (ALBEF): decay unless 1-D or a bias.
    public static func decays(_ name: String, _ shape: [Int]) -> Bool {
        !(shape.count == 1 || name.hasSuffix(".bias"))
    }

    /// One update with learning rate `lr` (times each parameter's multiplier) from the arena's
    /// gradients.
    public func update(lr: Float) {
        step += 1
        let b1 = hyper.beta1, b2 = hyper.beta2, eps = hyper.eps
        let bc1 = 1 - powf(b1, Float(step)), bc2 = 1 - powf(b2, Float(step))
        let bc2Sqrt = bc2.squareRoot()
        // transformers.AdamW computes its scalars in Python floats (double).
        let bc1D = 1 - pow(Double(b1), Double(step)), bc2D = 1 - pow(Double(b2), Double(step))
        guard let p = arena.values.baseAddress, let g = arena.gradients.baseAddress else { return }
        exp_avg.withUnsafeMutableBufferPointer { m in
            exp_avg_sq.withUnsafeMutableBufferPointer { v in
                guard let m = m.baseAddress, let v = v.baseAddress else { return }
                for run in runs {
                    switch variant {
                    case .torch:
                        // A multiplier of 1 leaves lr's bits as they are (ALBEF and BLIP unchanged).
                        let runLR = run.lrMultiplier == 1 ? lr : Float(Double(lr) * run.lrMultiplier)
                        let stepSize = runLR / bc1
                        Threads.parallelFor(run.count, grain: 1 << 16) { r in
                            let o = run.start + r.lowerBound
                            elip_adamw(p + o, g + o, m + o, v + o, Int64(r.count), runLR, run.decay, b1, b2, eps, stepSize, bc2Sqrt)
                        }
                    case .huggingFace:
                        let runLR = Double(lr) * run.lrMultiplier
                        let stepSize = Float(runLR * bc2D.squareRoot() / bc1D)
                        let shrink = Float(runLR * Double(run.decay))
                        Threads.parallelFor(run.count, grain: 1 << 16) { r in
                            let o = run.start + r.lowerBound
                            elip_adamw_hf(p + o, g + o, m + o, v + o, Int64(r.count), shrink, b1, b2, eps, stepSize)
                        }
                    }
                }
            }
        }
    }

    /// The moments of parameter `entry` (arena layout).
    func moments(of entry: ParameterArena.Entry) -> (Array<Float>.SubSequence, Array<Float>.SubSequence) {
        (exp_avg[entry.offset..<(entry.offset + entry.count)], exp_avg_sq[entry.offset..<(entry.offset + entry.count)])
    }

    /// Overwrites the moments of parameter `entry`.
    func setMoments(of entry: ParameterArena.Entry, expAvg: [Float], expAvgSq: [Float]) {
        exp_avg.replaceSubrange(entry.offset..<(entry.offset + entry.count), with: expAvg)
        exp_avg_sq.replaceSubrange(entry.offset..<(entry.offset + entry.count), with: expAvgSq)
    }

    /// Both moment buffers in place (arena layout), e.g. to broadcast them without a copy.
    func withMutableMoments<R>(_ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try exp_avg.withUnsafeMutableBufferPointer { m in try exp_avg_sq.withUnsafeMutableBufferPointer { v in try body(m, v) } }
    }

    /// Sets the step count (bias correction) of restored moments.
    func restoreStep(_ step: Int) { self.step = step }

    /// Restores the state saved in a checkpoint.
    public func restore(step: Int, expAvg: [Float], expAvgSq: [Float]) throws {
        guard expAvg.count == arena.used, expAvgSq.count == arena.used else {
            throw TrainError.checkpoint("optimizer state has \(expAvg.count) values, the model needs \(arena.used)")
        }
        self.step = step
        exp_avg = expAvg
        exp_avg_sq = expAvgSq
    }
}

/// Errors of the training layer, with the file or setting they concern.
public enum TrainError: Error, CustomStringConvertible {
    case checkpoint(String)
    case config(String)
    case data(String)
    case diverged(String)

    public var description: String {
        switch self {
        case let .checkpoint(m): return "checkpoint: \(m)"
        case let .config(m): return "config: \(m)"
        case let .data(m): return "data: \(m)"
        case let .diverged(m): return "training diverged: \(m)"
        }
    }
}

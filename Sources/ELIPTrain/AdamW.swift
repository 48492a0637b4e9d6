import ELIPTensor
import Foundation

/// AdamW (torch.optim.AdamW semantics) over a whole parameter arena.
///
/// Parameter groups follow ALBEF's create_optimizer (timm): no weight decay on 1-D tensors and
/// on names ending in ".bias"; everything else (including the 0-D temperature, as in the
/// official code) decays. The moment buffers have the arena's layout, so a step is one loop.
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
    /// First and second moments, arena layout.
    public private(set) var exp_avg: [Float]
    public private(set) var exp_avg_sq: [Float]
    /// Steps taken (bias correction).
    public private(set) var step = 0
    /// Per-float weight decay factor (0 or weightDecay), arena layout.
    private var decay: [Float]

    public init(arena: ParameterArena, hyper: Hyperparameters = Hyperparameters()) {
        self.arena = arena
        self.hyper = hyper
        exp_avg = [Float](repeating: 0, count: arena.used)
        exp_avg_sq = [Float](repeating: 0, count: arena.used)
        decay = [Float](repeating: 0, count: arena.used)
        for e in arena.entries where AdamW.decays(name: e.name, shape: e.shape) {
            for i in e.offset..<(e.offset + e.count) { decay[i] = hyper.weightDecay }
        }
    }

    /// True when the parameter takes weight decay (timm's rule: not 1-D, not a bias).
    public static func decays(name: String, shape: [Int]) -> Bool {
        !(shape.count == 1 || name.hasSuffix(".bias"))
    }

    /// One update with learning rate `lr` from the arena's gradients.
    public func update(lr: Float) {
        step += 1
        let b1 = hyper.beta1, b2 = hyper.beta2, eps = hyper.eps
        let bc1 = 1 - powf(b1, Float(step)), bc2 = 1 - powf(b2, Float(step))
        let stepSize = lr / bc1, bc2Sqrt = bc2.squareRoot()
        let p = arena.values, g = arena.gradients
        exp_avg.withUnsafeMutableBufferPointer { m in
            exp_avg_sq.withUnsafeMutableBufferPointer { v in
                decay.withUnsafeBufferPointer { wd in
                    Threads.parallelFor(p.count, grain: 1 << 15) { r in
                        for i in r {
                            p[i] *= 1 - lr * wd[i]
                            m[i] = b1 * m[i] + (1 - b1) * g[i]
                            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                            p[i] -= stepSize * m[i] / (v[i].squareRoot() / bc2Sqrt + eps)
                        }
                    }
                }
            }
        }
    }

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

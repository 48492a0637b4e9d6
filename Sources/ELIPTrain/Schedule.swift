import Foundation

/// ALBEF's learning-rate schedule (Pretrain.py with timm's CosineLRScheduler), reproduced
/// exactly, including how the scheduler's "epoch" counter is driven:
/// - in epoch 0, every `stepSize` (100) iterations up to `warmupEpochs * stepSize`, the
///   scheduler is stepped to t = iteration / stepSize: linear warm-up from `warmupLR` to `lr`
///   over t in [0, warmupEpochs);
/// - at the start of epoch e >= 1 it is stepped to t = e + warmupEpochs;
/// - for t >= warmupEpochs: cosine from `lr` to `minLR` over t in [0, epochs) — note t counts
///   from 0, not from the end of warm-up (timm's warmup_prefix=False) — and `minLR` once
///   t >= epochs (cycle_limit 1).
/// So with ALBEF's settings (20 warm-up units, 30 epochs) the rate drops at iteration 2000 from
/// ~9.6e-5 to the cosine's value at t = 20, and reaches min_lr at epoch 10. That is the official
/// behaviour; `warmupEpochs` and `epochs` can be set to taste.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public var lr: Double = 1e-4
    public var minLR: Double = 1e-5
    public var warmupLR: Double = 1e-5
    /// Warm-up length in scheduler units (`stepSize` iterations each).
    public var warmupEpochs: Int = 20
    public var epochs: Int = 30
    public var stepSize: Int = 100

    public init() {}

    /// The scheduler's t after the last step taken before iteration `iteration` of `epoch`.
    public func schedulerTime(epoch: Int, iteration: Int) -> Int {
        if epoch == 0 {
            let last = min(iteration, warmupEpochs * stepSize)
            return last / stepSize
        }
        return epoch + warmupEpochs
    }

    /// timm CosineLRScheduler value at scheduler time t.
    public func value(at t: Int) -> Double {
        if t < warmupEpochs { return warmupLR + Double(t) * (lr - warmupLR) / Double(max(warmupEpochs, 1)) }
        if t >= epochs { return minLR }
        return minLR + 0.5 * (lr - minLR) * (1 + cos(Double.pi * Double(t) / Double(epochs)))
    }

    /// Learning rate used at (epoch, iteration within the epoch).
    public func learningRate(epoch: Int, iteration: Int) -> Double {
        value(at: schedulerTime(epoch: epoch, iteration: iteration))
    }
}

/// BLIP's learning-rate schedule (pretrain.py with utils.py's `warmup_lr_schedule` and
/// `step_lr_schedule`), set by hand every iteration as the official loop does: in epoch 0,
/// `min(init_lr, warmup_lr + (init_lr - warmup_lr) * i / warmup_steps)` before iteration i; from
/// epoch 1 on, `max(min_lr, init_lr * decay_rate ** epoch)` for the whole epoch.
public struct StepDecaySchedule: Codable, Equatable, Sendable {
    public var initLR: Double = 3e-4
    public var minLR: Double = 1e-6
    public var warmupLR: Double = 1e-6
    public var warmupSteps: Int = 3000
    public var decayRate: Double = 0.9
    public var epochs: Int = 20

    public init() {}

    public func learningRate(epoch: Int, iteration: Int) -> Double {
        if epoch == 0 {
            guard warmupSteps > 0 else { return initLR }
            return min(initLR, warmupLR + (initLR - warmupLR) * Double(iteration) / Double(warmupSteps))
        }
        return max(minLR, initLR * pow(decayRate, Double(epoch)))
    }
}

/// METER's schedule (meter_utils.set_schedule: transformers' get_polynomial_decay_schedule_with_warmup,
/// stepped after every optimizer step): before update s (0-based), the factor is s / warmup while
/// s < warmup, then (lr - endLR) (1 - (s - warmup) / (maxSteps - warmup))^power + endLR, and endLR
/// past maxSteps. The first update therefore uses lr 0, as officially.
public struct PolynomialDecaySchedule: Codable, Equatable, Sendable {
    public var lr: Double = 1e-5
    public var endLR: Double = 0
    public var power: Double = 1
    public var warmupSteps: Int = 10_000
    public var maxSteps: Int = 100_000

    public init() {}

    /// METER's `warmup_steps` given as a float: that fraction of `maxSteps`, truncated (int()).
    public static func warmup(fraction: Double, maxSteps: Int) -> Int { Int(fraction * Double(maxSteps)) }

    /// The learning rate of optimizer update `step` (0 = the first).
    public func learningRate(step: Int) -> Double {
        if step < warmupSteps { return lr * Double(step) / Double(max(warmupSteps, 1)) }
        if step > maxSteps { return endLR }
        let remaining = 1 - Double(step - warmupSteps) / Double(max(maxSteps - warmupSteps, 1))
        return (lr - endLR) * pow(remaining, power) + endLR
    }
}

import Foundation

/// Seeded randomness. Everything random in training (dropout, masking, negatives, augmentation)
/// draws from explicit generators so a step can be replayed and a checkpoint can store the state.

/// SplitMix64: small, fast, full 64-bit state that is trivially saved in a checkpoint.
public struct SeededGenerator: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return CounterRandom.mix(state)
    }

    /// Uniform float in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// Stateless randomness indexed by (seed, counter): element i of a dropout mask is the same
/// whichever thread computes it, so parallel kernels stay deterministic.
public enum CounterRandom {
    @inline(__always)
    public static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform float in [0, 1) for element `index` of the stream `seed`.
    @inline(__always)
    public static func uniform(seed: UInt64, index: Int) -> Float {
        let z = mix(seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15)
        return Float(z >> 40) * (1.0 / 16_777_216.0)
    }
}


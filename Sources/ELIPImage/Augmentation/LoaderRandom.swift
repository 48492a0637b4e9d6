/// The loader's random numbers: SplitMix64 streams keyed by (seed, purpose, a, b, ...), so every
/// draw is a pure function of its key. Nothing depends on thread count, prefetch order or on
/// what was drawn before for another sample, which is what makes `batch(epoch:index:)` resumable
/// and bitwise reproducible.
///
/// The uniform and bounded draws are written out here (not taken from the standard library's
/// `random(in:using:)`) so the streams stay the same across toolchain versions.
public struct LoaderRandom: RandomNumberGenerator, Sendable, Equatable {
    public private(set) var state: UInt64

    public init(state: UInt64) { self.state = state }

    /// Purposes (domain separation between streams that share a seed).
    public enum Stream: UInt64, Sendable {
        case shuffle = 0x5348_5546      // per (rank, epoch): order of the rank's records
        case sample = 0x5341_4D50       // per (epoch, global sample index): caption + augmentation
        case test = 0x5445_5354
    }

    /// A stream keyed by the seed, its purpose and up to three integers.
    public init(seed: UInt64, stream: Stream, _ a: UInt64 = 0, _ b: UInt64 = 0, _ c: UInt64 = 0) {
        var h = LoaderRandom.mix(seed ^ 0x243F_6A88_85A3_08D3)
        h = LoaderRandom.mix(h ^ stream.rawValue)
        h = LoaderRandom.mix(h &+ a &* 0x9E37_79B9_7F4A_7C15)
        h = LoaderRandom.mix(h ^ (b &* 0xC2B2_AE3D_27D4_EB4F))
        h = LoaderRandom.mix(h &+ (c &* 0x1656_67B1_9E37_79F9))
        state = h
    }

    /// SplitMix64's output function (a bijective 64-bit mixer).
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return LoaderRandom.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double {
        a + (b - a) * uniform()
    }

    /// Uniform integer in 0..<n (n <= 0 gives 0). Unbiased (rejection on the multiply-high method).
    public mutating func below(_ n: Int) -> Int {
        guard n > 1 else { return 0 }
        let bound = UInt64(n)
        let threshold = (0 &- bound) % bound
        while true {
            let (hi, lo) = next().multipliedFullWidth(by: bound)
            if lo >= threshold { return Int(hi) }
        }
    }
}

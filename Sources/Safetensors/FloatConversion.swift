/// Exact conversions between Float and the narrow float formats, on bit patterns.
///
/// Done by hand rather than with Swift's `Float16` because that type does not exist on every
/// platform we build on (macOS on Intel); the results are identical to IEEE conversions with
/// round-to-nearest-even, and NaNs stay NaN (quiet, with the top payload bits kept).
public enum FloatConversion {
    /// IEEE binary16 -> binary32. Exact (every half is representable as a float).
    @inline(__always)
    public static func float(fromF16 h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {  // inf or NaN; the half quiet bit lands on the float quiet bit
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {  // zero or subnormal: mantissa * 2^-24, exact in a float
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// binary32 -> binary16, round to nearest even; overflow gives infinity.
    @inline(__always)
    static func f16(from f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x7F_FFFF
        if exponent == 0xFF {
            if mantissa == 0 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: mantissa >> 13)
        }
        if exponent >= 113 {  // result is normal (or rounds up to infinity)
            let halfExponent = exponent - 112
            if halfExponent >= 31 { return sign | 0x7C00 }
            var result = UInt32(halfExponent) << 10 | (mantissa >> 13)
            let rest = mantissa & 0x1FFF
            if rest > 0x1000 || (rest == 0x1000 && (result & 1) == 1) { result += 1 }  // carry may reach inf: correct
            return sign | UInt16(result)
        }
        // Subnormal half (or zero): value = M * 2^(exponent-150), in units of 2^-24 that is M >> (126 - exponent).
        let shift = 126 - exponent
        if shift > 24 { return sign }  // below half of the smallest subnormal (float subnormals included)
        let full = mantissa | 0x80_0000
        var q = full >> UInt32(shift)
        let rest = full & ((1 << UInt32(shift)) - 1)
        let halfway: UInt32 = 1 << UInt32(shift - 1)
        if rest > halfway || (rest == halfway && (q & 1) == 1) { q += 1 }  // may become the smallest normal: correct
        return sign | UInt16(q)
    }

    /// bfloat16 -> binary32. Exact.
    @inline(__always)
    public static func float(fromBF16 b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// binary32 -> bfloat16, round to nearest even; NaN stays NaN.
    @inline(__always)
    static func bf16(from f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(x >> 16) | 0x0040 }
        let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
        return UInt16(rounded >> 16)
    }

    /// F8_E5M2 is the top byte of a binary16, so it converts through that. Exact.
    @inline(__always)
    static func float(fromF8E5M2 b: UInt8) -> Float {
        float(fromF16: UInt16(b) << 8)
    }

    /// F8_E4M3 ("fn": bias 7, no infinities, S.1111.111 is NaN) -> binary32. Exact.
    @inline(__always)
    static func float(fromF8E4M3 b: UInt8) -> Float {
        let negative = b & 0x80 != 0
        let exponent = Int((b >> 3) & 0xF)
        let mantissa = Int(b & 0x7)
        let magnitude: Float
        if exponent == 0xF && mantissa == 0x7 {
            magnitude = .nan
        } else if exponent == 0 {
            magnitude = Float(mantissa) * 0x1p-9
        } else {
            magnitude = Float(8 + mantissa) * Float(sign: .plus, exponent: exponent - 10, significand: 1)
        }
        return negative ? -magnitude : magnitude
    }
}

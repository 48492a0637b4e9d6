/// GPT-2's byte-to-unicode table (`bytes_to_unicode` in GPT-2 / RoBERTa): every byte gets a
/// printable character so BPE tokens are strings without whitespace or control characters.
/// Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 + n in byte order
/// (so space 0x20 is "Ġ" U+0120 and newline 0x0A is "Ċ" U+010A).
public enum ByteLevelAlphabet {
    /// `scalarForByte[b]` is the character standing for byte b.
    public static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!  // 256..<324: always valid scalars
                next += 1
            }
        }
        return table
    }()

    /// The byte a byte-level character stands for, or nil for any other scalar.
    public static func byte(for scalar: Unicode.Scalar) -> UInt8? { byteForScalar[scalar] }

    private static let byteForScalar: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (b, s) in scalarForByte.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    /// The byte-level string of some UTF-8 bytes.
    public static func string<C: Collection>(ofBytes bytes: C) -> String where C.Element == UInt8 {
        var view = String.UnicodeScalarView()
        for b in bytes { view.append(scalarForByte[Int(b)]) }
        return String(view)
    }
}

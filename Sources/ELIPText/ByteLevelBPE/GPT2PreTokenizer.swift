/// GPT-2's pre-tokenisation, the regex
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// as Python's `regex` module runs it, written as a scanner over Unicode scalars (not grapheme
/// clusters: a combining mark is "other", never part of its letter's chunk).
///
/// Classes: \p{L} = general category L*, \p{N} = N*, \s = Unicode White_Space (25 code points;
/// not U+001C..U+001F, U+200B or U+FEFF). The optional prefix is U+0020 only, and the
/// contractions are lowercase only.
public enum GPT2PreTokenizer {
    enum ScalarClass { case letter, number, space, other }

    @inline(__always)
    static func scalarClass(_ s: Unicode.Scalar) -> ScalarClass {
        let v = s.value
        if v < 0x80 {
            if (0x61...0x7A).contains(v) || (0x41...0x5A).contains(v) { return .letter }
            if (0x30...0x39).contains(v) { return .number }
            if v == 0x20 || (0x09...0x0D).contains(v) { return .space }
            return .other
        }
        if isWhiteSpace(v) { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// The Unicode White_Space property (what `regex`'s `\s` matches in a str pattern).
    @inline(__always)
    static func isWhiteSpace(_ v: UInt32) -> Bool {
        switch v {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// The chunks of `scalars` in order, as index ranges; they cover the input without gaps.
    public static func chunks(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        let n = scalars.count
        while i < n {
            let end = chunkEnd(scalars, from: i)
            out.append(i..<end)
            i = end
        }
        return out
    }

    /// End of the regex match that starts at `i` (the alternatives tried in the regex's order).
    static func chunkEnd(_ s: [Unicode.Scalar], from i: Int) -> Int {
        let n = s.count
        // 's 't 're 've 'm 'll 'd
        if s[i] == "'" && i + 1 < n {
            switch s[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r", "v" where i + 2 < n && s[i + 2] == "e": return i + 3
            case "l" where i + 2 < n && s[i + 2] == "l": return i + 3
            default: break
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space joins a following run of
        // the same class; the class of the first non-prefix scalar decides the alternative.
        var runStart = i
        if s[i] == " " && i + 1 < n && scalarClass(s[i + 1]) != .space { runStart = i + 1 }
        let cls = scalarClass(s[runStart])
        if cls != .space {
            var j = runStart + 1
            while j < n && scalarClass(s[j]) == cls { j += 1 }
            return j
        }
        // `\s+(?!\S)` then `\s+`: a whitespace run that reaches the end is taken whole; one
        // followed by a non-space gives back its last scalar (that scalar then prefixes the next
        // word if it is U+0020) unless it is a single scalar, which `\s+` takes.
        var k = i + 1
        while k < n && scalarClass(s[k]) == .space { k += 1 }
        if k == n { return n }
        return k - i >= 2 ? k - 1 : k
    }
}

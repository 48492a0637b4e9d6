// Character classes and string transforms with the exact semantics of Python / HuggingFace's BERT
// tokenizer. Everything works on Unicode scalars (Python code points); Swift `Character`s and
// `String ==` (canonical equivalence) would silently differ from Python.

import Foundation

enum TextUnicode {
    /// HF `_is_whitespace`: space, \t, \n, \r, or category Zs.
    @inline(__always)
    static func isBertWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x20, 0x09, 0x0A, 0x0D: return true
        case 0..<0x80: return false
        default: return s.properties.generalCategory == .spaceSeparator
        }
    }

    /// HF `_is_control`: category C* except \t \n \r (those count as whitespace).
    @inline(__always)
    static func isBertControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09, 0x0A, 0x0D: return false
        case 0..<0x20, 0x7F: return true
        case 0x20..<0x7F: return false
        default:
            switch s.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        }
    }

    /// HF `_is_punctuation`: all non-alphanumeric printable ASCII, or category P*.
    @inline(__always)
    static func isBertPunctuation(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 33...47, 58...64, 91...96, 123...126: return true
        case 0..<0x80: return false
        default:
            switch s.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                return true
            default: return false
            }
        }
    }

    /// HF `_is_chinese_char`: the CJK ideograph blocks (not Hangul, kana, or CJK punctuation).
    @inline(__always)
    static func isChineseCharacter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }

    /// Python `str.isspace()`, which is what `str.split()` and `re`'s `\s` use: bidi class WS, B
    /// or S, or category Zs. Wider than BERT's whitespace (adds \v \f, U+001C-001F, U+0085,
    /// U+2028, U+2029).
    @inline(__always)
    static func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029,
             0x202F, 0x205F, 0x3000:
            return true
        default: return false
        }
    }

    @inline(__always)
    static func asciiLowercased(_ s: Unicode.Scalar) -> Unicode.Scalar {
        (0x41...0x5A).contains(s.value) ? Unicode.Scalar(UInt8(truncatingIfNeeded: s.value + 0x20)) : s
    }

    /// Python `str.lower()`: full lowercase mapping (SpecialCasing's unconditional entries, e.g.
    /// U+0130 -> "i\u{307}") plus the Final_Sigma rule for U+03A3, evaluated over `text`.
    static func pythonLowercased<C: RandomAccessCollection>(_ text: C) -> [Unicode.Scalar]
    where C.Element == Unicode.Scalar, C.Index == Int {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for i in text.indices {
            let s = text[i]
            if s.isASCII {
                out.append(asciiLowercased(s))
            } else if s.value == 0x3A3 {
                out.append(isFinalSigma(text, at: i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    /// CPython's `handle_capital_sigma`: cased letter, then case-ignorables, then Σ, and no
    /// (case-ignorables, cased letter) after it.
    private static func isFinalSigma<C: RandomAccessCollection>(_ text: C, at i: Int) -> Bool
    where C.Element == Unicode.Scalar, C.Index == Int {
        var j = i - 1
        while j >= text.startIndex, text[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= text.startIndex, text[j].properties.isCased else { return false }
        var k = i + 1
        while k < text.endIndex, text[k].properties.isCaseIgnorable { k += 1 }
        return k == text.endIndex || !text[k].properties.isCased
    }

    static func nfc<C: Collection>(_ text: C) -> [Unicode.Scalar] where C.Element == Unicode.Scalar {
        Array(string(text).precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    static func nfd<C: Collection>(_ text: C) -> [Unicode.Scalar] where C.Element == Unicode.Scalar {
        Array(string(text).decomposedStringWithCanonicalMapping.unicodeScalars)
    }

    /// Builds a String from scalars via UTF-8 bytes (much faster than appending to a
    /// `String.UnicodeScalarView`, which is not specialized).
    static func string<C: Collection>(_ scalars: C) -> String where C.Element == Unicode.Scalar {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scalars.count)
        for s in scalars {
            if s.isASCII { bytes.append(UInt8(truncatingIfNeeded: s.value)) }
            else { UTF8.encode(s) { bytes.append($0) } }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

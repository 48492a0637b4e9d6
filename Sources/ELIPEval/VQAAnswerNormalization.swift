/// The answer normalisation of the official VQA evaluation (`vqaEval.py` as ALBEF ships it),
/// on Unicode scalars as Python's `str` works on code points (Swift's `String` equality would
/// treat canonically equivalent spellings as equal; Python does not).
public enum VQAAnswerNormalization {
    /// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
    static func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// Python's `\d` on `str` patterns: a decimal digit of any script (category Nd).
    static func isDigit(_ s: Unicode.Scalar) -> Bool { s.properties.generalCategory == .decimalNumber }

    /// `processPunctuation`. For each character of the table, in order: if the ORIGINAL text
    /// holds it followed or preceded by a space, or anywhere digit-comma-digit, every occurrence
    /// is deleted, else replaced by a space. Then each `.` not followed by a digit is deleted, at
    /// most 32 of them (`re.UNICODE` = 32 passed as `re.sub`'s count).
    public static func punctuation(_ text: String) -> String {
        let original = Array(text.unicodeScalars)
        var digitCommaDigit = false
        if original.count >= 3 {
            for i in 1..<(original.count - 1) where original[i] == "," && isDigit(original[i - 1]) && isDigit(original[i + 1]) {
                digitCommaDigit = true
                break
            }
        }
        var out = original
        for p in VQANormalizationTables.punctuation {
            var touchesSpace = false
            for i in original.indices where original[i] == p {
                if (i + 1 < original.count && original[i + 1] == " ") || (i > 0 && original[i - 1] == " ") {
                    touchesSpace = true
                    break
                }
            }
            if touchesSpace || digitCommaDigit {
                out.removeAll { $0 == p }
            } else {
                out = out.map { $0 == p ? " " : $0 }
            }
        }
        var result: [Unicode.Scalar] = []
        var removed = 0
        for (i, s) in out.enumerated() {
            if s == ".", removed < 32, !(i + 1 < out.count && isDigit(out[i + 1])) {
                removed += 1
                continue
            }
            result.append(s)
        }
        return String(String.UnicodeScalarView(result))
    }

    /// `processDigitArticle`: lower-case, split on whitespace runs, number words to digits,
    /// articles dropped, contractions mapped, joined with single spaces.
    public static func digitsAndArticles(_ text: String) -> String {
        let lower = Array(text.lowercased().unicodeScalars)
        var words: [String] = []
        var current: [Unicode.Scalar] = []
        for s in lower + [" "] {
            if isPythonSpace(s) {
                if !current.isEmpty { words.append(String(String.UnicodeScalarView(current))) }
                current = []
            } else {
                current.append(s)
            }
        }
        // The tables are ASCII; a lookup by a non-ASCII word could only match through Swift's
        // canonical equivalence, which Python's dictionaries do not have.
        func lookup(_ table: [String: String], _ w: String) -> String? { w.unicodeScalars.allSatisfy(\.isASCII) ? table[w] : nil }
        return words
            .map { lookup(VQANormalizationTables.numberWords, $0) ?? $0 }
            .filter { !($0.unicodeScalars.allSatisfy(\.isASCII) && VQANormalizationTables.articles.contains($0)) }
            .map { lookup(VQANormalizationTables.contractions, $0) ?? $0 }
            .joined(separator: " ")
    }

    /// A result's answer as compared: newlines and tabs to spaces, surrounding whitespace
    /// stripped, then `punctuation`, then `digitsAndArticles`.
    public static func result(_ answer: String) -> String {
        var scalars = answer.unicodeScalars.map { $0 == "\n" || $0 == "\t" ? " " : $0 }
        while let f = scalars.first, isPythonSpace(f) { scalars.removeFirst() }
        while let l = scalars.last, isPythonSpace(l) { scalars.removeLast() }
        return digitsAndArticles(punctuation(String(String.UnicodeScalarView(scalars))))
    }

    /// The human answers as compared: unchanged when all are identical, else each through
    /// `punctuation` only.
    public static func humans(_ answers: [String]) -> [String] {
        let distinct = Set(answers.map { $0.unicodeScalars.map(\.value) })
        return distinct.count > 1 ? answers.map(punctuation) : answers
    }

    /// Python's string equality (code points, no canonical equivalence).
    static func same(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }
}

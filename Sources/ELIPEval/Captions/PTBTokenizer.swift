import Foundation

/// The tokenisation pycocoevalcap applies to every reference and candidate caption before BLEU
/// and CIDEr: Stanford's Java `PTBTokenizer -preserveLines -lowerCase` (CoreNLP 3.4.1), then its
/// filter that drops punctuation tokens. Scores depend on it token for token (`it's` is two
/// words, `(` survives as the word `-lrb-`), so it is reproduced here rather than approximated.
///
/// PTB is a large lexer; these rules reproduce it exactly on the characters captions use: ASCII
/// letters and digits, Latin letters with diacritics, space/tab/newline, `. , ; : ! ? " ( ) [ ] {
/// } - '` and U+2019 U+201C U+201D, as these characters occur in captions (checked against the
/// Java tokenizer on the reference case). PTB does more and this does not follow it there:
/// abbreviations keeping their period (`mr.`, `u.s.`, a lone `a.`), `cannot` -> `can not`,
/// `gonna` -> `gon na`, `50%`, `$20`, U+2013/U+2014 -> `--`, U+2026 -> `...`; and, with the
/// characters above, `'` used as a quote (`'stop'` -> `stop`, `dog'` -> `dog`), punctuation
/// inside a word (`x,y` -> `x y`, `a-` -> `a`, `x'y` -> `x y`) and `'tis` -> `'t is`, where this
/// keeps the chunk whole. A `\r` or U+2028 splits a caption into two lines for Java (shifting
/// every later caption onto the wrong image); here it is whitespace like any other.
public enum PTBTokenizer {
    /// pycocoevalcap's `PUNCTUATIONS`: tokens dropped after PTB, compared exactly and after
    /// lower-casing, so `-LRB-` (now `-lrb-`) is never dropped while `''` and `...` are.
    static let droppedTokens: Set<String> = ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                                             ".", "?", "!", ",", ":", "-", "--", "...", ";"]

    /// The caption as pycocoevalcap's tokenizer returns it: lower-cased words joined by single
    /// spaces, `""` for a caption of punctuation only.
    public static func tokenize(_ caption: String) -> String {
        tokens(caption).joined(separator: " ")
    }

    /// The words of the tokenized caption (what BLEU and CIDEr split it into).
    public static func tokens(_ caption: String) -> [String] {
        ptbTokens(caption).map { $0.lowercased() }.filter { !droppedTokens.contains($0) }
    }

    /// PTB's tokens before lower-casing and the punctuation filter (`-LRB-`, `''`, `ca`, `n't`).
    static func ptbTokens(_ caption: String) -> [String] {
        var tokens: [String] = []
        // Unicode scalars, not Characters: Swift joins "\r\n" or a letter and a combining accent
        // into one Character, Java sees separate code points.
        var chunk: [Unicode.Scalar] = []
        for s in caption.unicodeScalars {
            if s.properties.isWhitespace {
                if !chunk.isEmpty { appendChunk(chunk, to: &tokens) }
                chunk.removeAll(keepingCapacity: true)
            } else {
                chunk.append(s)
            }
        }
        if !chunk.isEmpty { appendChunk(chunk, to: &tokens) }
        return tokens
    }

    private static let rightSingleQuote: Unicode.Scalar = "\u{2019}"
    private static let leftDoubleQuote: Unicode.Scalar = "\u{201C}"
    private static let rightDoubleQuote: Unicode.Scalar = "\u{201D}"

    /// The tokens of one whitespace-free chunk: openers peeled off the front, closers and final
    /// punctuation off the back, then the clitic split of what remains.
    private static func appendChunk(_ raw: [Unicode.Scalar], to tokens: inout [String]) {
        var rest = raw.map { $0 == rightSingleQuote ? "'" : $0 }
        let text = String(String.UnicodeScalarView(rest))
        if text == "-" || text == "--" {
            tokens.append(text)
            return
        }
        // Openers, front to back.
        var start = 0
        while start < rest.count, let opener = openerToken(rest[start]) {
            tokens.append(opener)
            start += 1
        }
        rest.removeFirst(start)
        // Closers and final punctuation, collected back to front.
        var trailing: [String] = []
        while let (token, length) = trailingToken(rest) {
            trailing.append(token)
            rest.removeLast(length)
        }
        if !rest.isEmpty { tokens += splitClitic(rest) }
        tokens += trailing.reversed()
    }

    private static func openerToken(_ s: Unicode.Scalar) -> String? {
        switch s {
        case "\"", leftDoubleQuote: return "``"
        case "(": return "-LRB-"
        case "[": return "-LSB-"
        case "{": return "-LCB-"
        default: return nil
        }
    }

    /// The token at the end of `chars` that PTB separates from the word before it, and its
    /// length in scalars: a closer, `...`, one of `, ; : .`, or a whole run of `!`/`?` (`?!` is
    /// one token). Nil when the chunk ends in a word character.
    private static func trailingToken(_ chars: [Unicode.Scalar]) -> (String, Int)? {
        guard let last = chars.last else { return nil }
        switch last {
        case "\"", rightDoubleQuote: return ("''", 1)
        case ")": return ("-RRB-", 1)
        case "]": return ("-RSB-", 1)
        case "}": return ("-RCB-", 1)
        case ".":
            if chars.count >= 3 && chars[chars.count - 3] == "." && chars[chars.count - 2] == "." { return ("...", 3) }
            return (".", 1)
        case ",", ";", ":": return (String(last), 1)
        case "!", "?":
            let run = chars.reversed().prefix { $0 == "!" || $0 == "?" }.count
            return (String(String.UnicodeScalarView(chars.suffix(run))), run)
        default: return nil
        }
    }

    /// Clitics PTB splits off a word (matched case-insensitively): `can't` -> `ca n't`.
    private static let clitics: [String] = ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"]

    /// A word split before a clitic (`It's` -> `It 's`) or before the apostrophe of a plural
    /// possessive (`kids'` -> `kids '`); otherwise whole (`o'clock`, `T-shirt`, `1,000`, `12:30`).
    private static func splitClitic(_ word: [Unicode.Scalar]) -> [String] {
        func string(_ s: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(s)) }
        for clitic in clitics {
            let suffix = Array(clitic.unicodeScalars)
            guard word.count > suffix.count else { continue }
            let tail = word.suffix(suffix.count)
            if zip(tail, suffix).allSatisfy({ asciiLowercase($0) == $1 }) {
                return [string(word.dropLast(suffix.count)), string(tail)]
            }
        }
        if word.count >= 2 && word[word.count - 1] == "'" && asciiLowercase(word[word.count - 2]) == "s" {
            return [string(word.dropLast()), "'"]
        }
        return [string(word[...])]
    }

    private static func asciiLowercase(_ s: Unicode.Scalar) -> Unicode.Scalar {
        ("A"..."Z").contains(s) ? Unicode.Scalar(s.value + 32) ?? s : s
    }
}

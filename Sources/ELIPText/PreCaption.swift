/// ALBEF's caption cleaning, `pre_caption(caption, max_words)` in dataset/utils.py:
/// Python `lower()`; delete each of , . ' ! ? " ( ) * # : ; ~; '-' and '/' become spaces;
/// "<person>" becomes "person"; runs of 2+ whitespace (`re`'s `\s`, i.e. Python `isspace`)
/// become one space; trailing "\n"s and surrounding spaces are stripped; words (split on single
/// spaces) past `maxWords` are dropped. A lone tab or newline inside the text survives, as in
/// Python.
public func preCaption(_ caption: String, maxWords: Int = 30) -> String {
    // Lowercase, delete, and replace '-' '/' in one pass: the character sets are disjoint.
    var text: [Unicode.Scalar] = []
    text.reserveCapacity(caption.utf8.count)
    for s in TextUnicode.pythonLowercased(Array(caption.unicodeScalars)) {
        switch s {
        case ",", ".", "'", "!", "?", "\"", "(", ")", "*", "#", ":", ";", "~": continue
        case "-", "/": text.append(" ")
        default: text.append(s)
        }
    }
    text = replacingPerson(text)

    return collapsedStrippedTruncated(text, maxWords: maxWords)
}

/// The tail both `pre_caption`s share: `re.sub(r"\s{2,}", " ")`, `rstrip("\n")`, `strip(" ")`,
/// then `split(" ")` (empty words kept, like Python) and the first `maxWords` words.
private func collapsedStrippedTruncated(_ text: [Unicode.Scalar], maxWords: Int) -> String {
    var collapsed: [Unicode.Scalar] = []
    collapsed.reserveCapacity(text.count)
    var i = 0
    while i < text.count {
        guard TextUnicode.isPythonSpace(text[i]) else { collapsed.append(text[i]); i += 1; continue }
        var j = i + 1
        while j < text.count && TextUnicode.isPythonSpace(text[j]) { j += 1 }
        if j - i >= 2 { collapsed.append(" ") } else { collapsed.append(text[i]) }
        i = j
    }
    var end = collapsed.count
    while end > 0 && collapsed[end - 1] == "\n" { end -= 1 }
    while end > 0 && collapsed[end - 1] == " " { end -= 1 }
    var start = 0
    while start < end && collapsed[start] == " " { start += 1 }
    let stripped = collapsed[start..<end]
    let words = stripped.split(separator: " ", omittingEmptySubsequences: false)
    guard words.count > maxWords else { return TextUnicode.string(stripped) }
    // Python slice words[:maxWords], negative counts included.
    let keep = maxWords >= 0 ? maxWords : max(0, words.count + maxWords)
    return words.prefix(keep).map { TextUnicode.string($0) }.joined(separator: " ")
}

private let personTag: [Unicode.Scalar] = Array("<person>".unicodeScalars)
private let personWord: [Unicode.Scalar] = Array("person".unicodeScalars)

/// Python `str.replace("<person>", "person")`: non-overlapping, left to right.
private func replacingPerson(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
    guard text.contains("<") else { return text }
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(text.count)
    var i = 0
    while i < text.count {
        if text[i] == "<", text.count - i >= personTag.count,
           text[i..<(i + personTag.count)].elementsEqual(personTag) {
            out.append(contentsOf: personWord)
            i += personTag.count
        } else {
            out.append(text[i])
            i += 1
        }
    }
    return out
}

/// BLIP's caption cleaning, `pre_caption(caption, max_words)` in BLIP's data/utils.py (SPEC-BLIP
/// §8): Python `lower()`; each of . ! " ( ) * # : ; ~ becomes ONE space (`, ' ? - /` and
/// "<person>" are kept, unlike ALBEF's); runs of 2+ whitespace become one space; trailing "\n"s
/// and surrounding spaces are stripped; words past `maxWords` are dropped.
public func preCaptionBLIP(_ caption: String, maxWords: Int = 30) -> String {
    var text: [Unicode.Scalar] = []
    text.reserveCapacity(caption.utf8.count)
    for s in TextUnicode.pythonLowercased(Array(caption.unicodeScalars)) {
        switch s {
        case ".", "!", "\"", "(", ")", "*", "#", ":", ";", "~": text.append(" ")
        default: text.append(s)
        }
    }
    return collapsedStrippedTruncated(text, maxWords: maxWords)
}

/// How a model's captions become token ids: the cleaning rule, the framing, the token limit and
/// whether batches are padded to it (BLIP) or to their longest caption (ALBEF).
public struct CaptionStyle: Sendable, Equatable {
    /// `none`: the caption as given (METER: no cleaning, no lowercasing); `question`: VQA's
    /// `pre_question` (vqa_dataset.py).
    public enum Cleaning: String, Sendable { case albef, blip, none, question }
    public var cleaning: Cleaning
    public var framing: TextFraming
    /// Token limit, special tokens included.
    public var maxLength: Int
    public var padToMaxLength: Bool
    public var maxWords = 30

    public init(cleaning: Cleaning, framing: TextFraming, maxLength: Int, padToMaxLength: Bool, maxWords: Int = 30) {
        self.cleaning = cleaning
        self.framing = framing
        self.maxLength = maxLength
        self.padToMaxLength = padToMaxLength
        self.maxWords = maxWords
    }

    /// ALBEF: `pre_caption`, `[CLS] tokens`, at most 25 tokens, padded to the longest.
    public static func albef(maxLength: Int = 25) -> CaptionStyle {
        CaptionStyle(cleaning: .albef, framing: .albef, maxLength: maxLength, padToMaxLength: false)
    }

    /// BLIP: its `pre_caption`, `[CLS] tokens [SEP]`, padded to `max_length` (30).
    public static func blip(maxLength: Int = 30) -> CaptionStyle {
        CaptionStyle(cleaning: .blip, framing: .bert, maxLength: maxLength, padToMaxLength: true)
    }

    /// METER: the caption as given, `<s> tokens </s>`, padded to `max_text_len` (50).
    public static func meter(maxLength: Int = 50) -> CaptionStyle {
        CaptionStyle(cleaning: .none, framing: .bert, maxLength: maxLength, padToMaxLength: true)
    }

    /// The caption as the model's dataset cleans it.
    public func clean(_ caption: String) -> String {
        switch cleaning {
        case .albef: return preCaption(caption, maxWords: maxWords)
        case .blip: return preCaptionBLIP(caption, maxWords: maxWords)
        case .none: return caption
        case .question: return preQuestion(caption, maxWords: maxWords)
        }
    }
}

/// BERT's pre-tokenizer, matching HuggingFace's Python `BasicTokenizer`: clean the text, space
/// out CJK ideographs, NFC, split on whitespace, then per word lowercase, strip accents (NFD,
/// drop Mn) and split punctuation into single-scalar words.
public struct BasicTokenizer: Sendable {
    public let lowercase: Bool
    /// Strip accents; HF's default (nil there) follows `lowercase`.
    public let stripAccents: Bool
    public let tokenizeChineseCharacters: Bool
    /// Whitespace-separated words kept whole (HF's `never_split`, the special tokens).
    public let neverSplit: Set<[Unicode.Scalar]>
    /// Cheap pre-checks so ordinary words skip hashing: length range and first scalars.
    private let neverSplitLengths: Range<Int>
    private let neverSplitFirstScalars: [Unicode.Scalar]

    public init(lowercase: Bool = true, stripAccents: Bool? = nil,
                tokenizeChineseCharacters: Bool = true, neverSplit: [String] = []) {
        self.lowercase = lowercase
        self.stripAccents = stripAccents ?? lowercase
        self.tokenizeChineseCharacters = tokenizeChineseCharacters
        self.neverSplit = Set(neverSplit.map { Array($0.unicodeScalars) })
        let lengths = self.neverSplit.map(\.count)
        self.neverSplitLengths = (lengths.min() ?? 0)..<((lengths.max() ?? -1) + 1)  // empty if none
        self.neverSplitFirstScalars = Array(Set(self.neverSplit.compactMap(\.first)))
    }

    /// The words of `text` as strings (for inspection and tests; the encoder uses `forEachWord`).
    public func words(in text: String) -> [String] {
        var out: [String] = []
        forEachWord(in: Array(text.unicodeScalars)[...]) { out.append(TextUnicode.string($0)) }
        return out
    }

    /// Calls `body` with each word, in order. Words are never empty.
    func forEachWord(in text: ArraySlice<Unicode.Scalar>, _ body: (ArraySlice<Unicode.Scalar>) -> Void) {
        // 1. HF `_clean_text` and `_tokenize_chinese_chars` in one pass.
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(text.count + 8)
        for s in text {
            if s.value == 0 || s.value == 0xFFFD || TextUnicode.isBertControl(s) { continue }
            if TextUnicode.isBertWhitespace(s) {
                cleaned.append(" ")
            } else if tokenizeChineseCharacters && TextUnicode.isChineseCharacter(s) {
                cleaned.append(" "); cleaned.append(s); cleaned.append(" ")
            } else {
                cleaned.append(s)
            }
        }
        // 2. Python `str.split()`; after cleaning only ' ', U+2028 and U+2029 can still split.
        var scratch: [Unicode.Scalar] = []  // reused across words to avoid an allocation each
        var start = 0
        for i in 0...cleaned.count {
            if i == cleaned.count || TextUnicode.isPythonSpace(cleaned[i]) {
                if i > start { processWord(cleaned[start..<i], &scratch, body) }
                start = i + 1
            }
        }
    }

    private func processWord(_ raw: ArraySlice<Unicode.Scalar>, _ word: inout [Unicode.Scalar],
                             _ body: (ArraySlice<Unicode.Scalar>) -> Void) {
        if raw.allSatisfy(\.isASCII) {
            // Fast path: NFC, NFD and Python's lower() are trivial on ASCII.
            if isNeverSplit(raw) { body(raw); return }
            word.removeAll(keepingCapacity: true)
            if lowercase {
                for s in raw { word.append(TextUnicode.asciiLowercased(s)) }
            } else {
                word.append(contentsOf: raw)
            }
        } else {
            // HF applies NFC to the whole text before splitting; per word is equivalent because
            // nothing composes across the (starter) separators.
            word = TextUnicode.nfc(raw)
            if isNeverSplit(word[...]) { body(word[...]); return }
            if lowercase { word = TextUnicode.pythonLowercased(word) }
            if stripAccents {
                word = TextUnicode.nfd(word).filter { $0.properties.generalCategory != .nonspacingMark }
            }
        }
        // HF `_run_split_on_punc`: each punctuation scalar is its own word.
        var start = 0
        for i in word.indices where TextUnicode.isBertPunctuation(word[i]) {
            if i > start { emit(word[start..<i], body) }
            emit(word[i...i], body)
            start = i + 1
        }
        if start < word.count { emit(word[start...], body) }
    }

    /// HF re-splits the joined words on whitespace at the end; lowercasing and NFD never create
    /// whitespace, so this only guards the invariant.
    @inline(__always)
    private func emit(_ word: ArraySlice<Unicode.Scalar>, _ body: (ArraySlice<Unicode.Scalar>) -> Void) {
        var start = word.startIndex
        for i in word.indices where TextUnicode.isPythonSpace(word[i]) {
            if i > start { body(word[start..<i]) }
            start = i + 1
        }
        if start < word.endIndex { body(word[start...]) }
    }

    private func isNeverSplit(_ word: ArraySlice<Unicode.Scalar>) -> Bool {
        guard neverSplitLengths.contains(word.count), let first = word.first,
              neverSplitFirstScalars.contains(first) else { return false }
        return neverSplit.contains(Array(word))
    }
}

/// How a single text is wrapped in special tokens.
public enum TextFraming: String, Sendable, CaseIterable {
    /// `[CLS] tokens`, no [SEP]: ALBEF's tokenizer (models/tokenization_bert.py).
    case albef
    /// `[CLS] tokens [SEP]`: standard BERT.
    case bert

    /// Special tokens added around the text; truncation keeps room for them.
    public var specialTokenCount: Int {
        switch self {
        case .albef: return 1
        case .bert: return 2
        }
    }
}

/// Ids of BERT's special tokens, looked up by name in the vocabulary.
public struct SpecialTokenIds: Sendable, Equatable {
    public static let padToken = "[PAD]", unknownToken = "[UNK]", clsToken = "[CLS]"
    public static let sepToken = "[SEP]", maskToken = "[MASK]"
    public static let all = [padToken, unknownToken, clsToken, sepToken, maskToken]

    public let pad: Int32
    public let unknown: Int32
    public let cls: Int32
    public let sep: Int32
    public let mask: Int32

    public init(vocabulary: Vocabulary) throws {
        func lookup(_ token: String) throws -> Int32 {
            guard let id = vocabulary.id(for: token) else {
                throw TokenizerError.missingSpecialToken(path: vocabulary.source, token: token)
            }
            return id
        }
        pad = try lookup(Self.padToken)
        unknown = try lookup(Self.unknownToken)
        cls = try lookup(Self.clsToken)
        sep = try lookup(Self.sepToken)
        mask = try lookup(Self.maskToken)
    }
}

/// The uncased BERT WordPiece tokenizer with the output of HuggingFace's Python `BertTokenizer`
/// (do_lower_case, tokenize_chinese_chars, strip accents), including its handling of special
/// tokens written literally in the text ("a [MASK] b" -> a, [MASK], b).
///
/// Immutable and thread-safe; a class so that encoding never copies the vocabulary tables.
public final class BertTokenizer: Sendable {
    /// ALBEF's caption length for pre-training (text encoder input, [CLS] included).
    public static let albefMaxLength = 25

    public let vocabulary: Vocabulary
    public let specialIds: SpecialTokenIds
    public let basic: BasicTokenizer
    public let wordPiece: WordPieceTokenizer
    /// Keep special tokens written in the text whole, as HF does by default. When false they
    /// are ordinary text: "[MASK]" -> "[", "mask", "]".
    public let recognizesSpecialTokens: Bool
    private let specialTokenScalars: [(scalars: [Unicode.Scalar], id: Int32)]

    public init(vocabulary: Vocabulary, recognizesSpecialTokens: Bool = true) throws {
        self.vocabulary = vocabulary
        self.recognizesSpecialTokens = recognizesSpecialTokens
        self.specialIds = try SpecialTokenIds(vocabulary: vocabulary)
        self.basic = BasicTokenizer(neverSplit: recognizesSpecialTokens ? SpecialTokenIds.all : [])
        self.wordPiece = try WordPieceTokenizer(vocabulary: vocabulary,
                                                unknownToken: SpecialTokenIds.unknownToken)
        // Longest first, so the first match at a position is the longest.
        self.specialTokenScalars = SpecialTokenIds.all
            .compactMap { t in vocabulary.id(for: t).map { (Array(t.unicodeScalars), $0) } }
            .sorted { $0.0.count > $1.0.count }
    }

    public convenience init(vocabularyFile path: String, recognizesSpecialTokens: Bool = true) throws {
        try self.init(vocabulary: Vocabulary(contentsOfFile: path),
                      recognizesSpecialTokens: recognizesSpecialTokens)
    }

    /// Token ids of `text` without special tokens or truncation.
    public func tokenIds(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        appendTokenIds(text, to: &ids)
        return ids
    }

    /// WordPiece tokens of `text` (HF `tokenize`).
    public func tokenize(_ text: String) -> [String] {
        tokenIds(text).map { vocabulary.tokens[Int($0)] }
    }

    /// `text` framed and truncated: ALBEF `[CLS] tokens`, BERT `[CLS] tokens [SEP]`; with
    /// `maxLength`, text tokens are cut from the end so the result (specials included) fits.
    public func encode(_ text: String, framing: TextFraming, maxLength: Int? = nil) throws -> [Int32] {
        if let maxLength = maxLength, maxLength < framing.specialTokenCount {
            throw TokenizerError.maxLengthTooSmall(maxLength: maxLength,
                                                   minimum: framing.specialTokenCount,
                                                   framing: framing.rawValue)
        }
        var ids: [Int32] = [specialIds.cls]
        appendTokenIds(text, to: &ids)
        if let maxLength = maxLength {
            let keep = maxLength - (framing.specialTokenCount - 1)  // room for a trailing [SEP]
            if ids.count > keep { ids.removeSubrange(keep...) }
        }
        if framing == .bert { ids.append(specialIds.sep) }
        return ids
    }

    /// Encodes and pads a batch to its longest sequence (HF `padding="longest"`).
    public func encodeBatch(_ texts: [String], framing: TextFraming, maxLength: Int? = nil) throws -> TokenBatch {
        TokenBatch(sequences: try texts.map { try encode($0, framing: framing, maxLength: maxLength) },
                   padId: specialIds.pad)
    }

    /// Captions in a model's style: cleaned (unless `cleaned`), framed, cut to the style's
    /// limit, padded to the longest or to the limit.
    public func encodeBatch(_ captions: [String], style: CaptionStyle, cleaned: Bool = false) throws -> TokenBatch {
        let texts = cleaned ? captions : captions.map(style.clean)
        return TokenBatch(sequences: try texts.map { try encode($0, framing: style.framing, maxLength: style.maxLength) },
                          padId: specialIds.pad, padTo: style.padToMaxLength ? style.maxLength : nil)
    }

    private func appendTokenIds(_ text: String, to ids: inout [Int32]) {
        let scalars = Array(text.unicodeScalars)
        var start = 0
        if recognizesSpecialTokens {
            var i = 0
            while i < scalars.count {
                if scalars[i] == "[", let (length, id) = specialToken(in: scalars, at: i) {
                    appendWordPieces(scalars[start..<i], to: &ids)
                    ids.append(id)
                    i += length
                    start = i
                } else {
                    i += 1
                }
            }
        }
        appendWordPieces(scalars[start...], to: &ids)
    }

    private func specialToken(in scalars: [Unicode.Scalar], at i: Int) -> (Int, Int32)? {
        for (token, id) in specialTokenScalars
        where scalars.count - i >= token.count && scalars[i..<(i + token.count)].elementsEqual(token) {
            return (token.count, id)
        }
        return nil
    }

    private func appendWordPieces(_ text: ArraySlice<Unicode.Scalar>, to ids: inout [Int32]) {
        guard !text.isEmpty else { return }
        basic.forEachWord(in: text) { wordPiece.appendIds(of: $0, to: &ids) }
    }
}

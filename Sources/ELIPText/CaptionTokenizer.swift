/// Special-token ids a model's masking and framing need, whatever the tokenizer calls them
/// (WordPiece: [PAD] [UNK] [CLS] [SEP] [MASK]; RoBERTa: <pad> <unk> <s> </s> <mask>).
public struct CaptionSpecialIds: Equatable, Sendable {
    public var pad: Int, unknown: Int, cls: Int, sep: Int, mask: Int
    public init(pad: Int, unknown: Int, cls: Int, sep: Int, mask: Int) {
        self.pad = pad
        self.unknown = unknown
        self.cls = cls
        self.sep = sep
        self.mask = mask
    }
}

/// What the data pipeline needs from a tokenizer: captions in a model's style to padded ids,
/// the special ids, and how many word-embedding rows the ids need. WordPiece (ALBEF, BLIP) and
/// RoBERTa's byte-level BPE (METER) both conform.
public protocol CaptionTokenizer: AnyObject, Sendable {
    /// Captions cleaned (unless `cleaned`), framed, cut to `style.maxLength`, padded.
    func encodeBatch(_ captions: [String], style: CaptionStyle, cleaned: Bool) throws -> TokenBatch
    var captionSpecialIds: CaptionSpecialIds { get }
    /// Largest id + 1.
    var idCount: Int { get }
}

extension BertTokenizer: CaptionTokenizer {
    public var captionSpecialIds: CaptionSpecialIds {
        CaptionSpecialIds(pad: Int(specialIds.pad), unknown: Int(specialIds.unknown), cls: Int(specialIds.cls), sep: Int(specialIds.sep), mask: Int(specialIds.mask))
    }
    public var idCount: Int { vocabulary.tokens.count }
}

extension RobertaTokenizer: CaptionTokenizer {
    /// `<s> tokens </s>` cut to `style.maxLength` (METER's framing whatever `style.framing` says:
    /// RoBERTa has one), padded with `<pad>` to it when the style pads.
    public func encodeBatch(_ captions: [String], style: CaptionStyle, cleaned: Bool) throws -> TokenBatch {
        let texts = cleaned ? captions : captions.map(style.clean)
        return TokenBatch(sequences: try texts.map { try encode($0, maxLength: style.maxLength) }, padId: specialIds.pad,
                          padTo: style.padToMaxLength ? style.maxLength : nil)
    }

    public var captionSpecialIds: CaptionSpecialIds {
        CaptionSpecialIds(pad: Int(specialIds.pad), unknown: Int(specialIds.unknown), cls: Int(specialIds.bos), sep: Int(specialIds.eos), mask: Int(specialIds.mask))
    }

    public var idCount: Int { Int(vocabulary.tokensById.keys.max() ?? -1) + 1 }
}

import Foundation

/// RoBERTa's special tokens, looked up by their strings (roberta-base: 0, 1, 2, 3, 50264).
public struct RobertaSpecialIds: Sendable, Equatable {
    public static let bosToken = "<s>", padToken = "<pad>", eosToken = "</s>", unknownToken = "<unk>"
    public static let maskToken = "<mask>"
    public static let all = [bosToken, padToken, eosToken, unknownToken, maskToken]

    public let bos: Int32, pad: Int32, eos: Int32, unknown: Int32, mask: Int32

    init(vocabulary: BPEVocabulary) throws {
        func lookup(_ token: String) throws -> Int32 {
            guard let id = vocabulary.id(for: token) else {
                throw BPEFileError.missingSpecialToken(path: vocabulary.vocabularyPath, token: token)
            }
            return id
        }
        bos = try lookup(Self.bosToken)
        pad = try lookup(Self.padToken)
        eos = try lookup(Self.eosToken)
        unknown = try lookup(Self.unknownToken)
        mask = try lookup(Self.maskToken)
    }
}

/// A text encoded METER's way: `<s> tokens </s>` padded to a fixed length.
public struct RobertaPaddedEncoding: Sendable, Equatable {
    public let ids: [Int32]
    public let attentionMask: [Int32]
    /// 1 on `<s>`, `</s>` and pads; 0 on text tokens (even a `<mask>` written in the text).
    public let specialTokensMask: [Int32]
}

/// RoBERTa's byte-level BPE tokenizer with the output of HuggingFace's Python `RobertaTokenizer`
/// (transformers 4.30, add_prefix_space False):
/// - special tokens written in the text (`<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`, exact case)
///   become their ids; `<mask>` also strips all whitespace before it (Python `str.rstrip()`);
/// - the rest is split by GPT-2's pre-tokenisation regex (`GPT2PreTokenizer`), each chunk's UTF-8
///   bytes become byte-level symbols, and BPE merges the lowest-ranked adjacent pair (every
///   occurrence, left to right) until no pair is a merge.
///
/// Thread-safe; BPE results are cached per chunk, so repeated words cost one dictionary lookup.
public final class RobertaTokenizer: @unchecked Sendable {
    public let vocabulary: BPEVocabulary
    public let specialIds: RobertaSpecialIds
    private let specialTokens: [(scalars: [Unicode.Scalar], id: Int32, stripsWhitespaceBefore: Bool)]
    private var cache: [[UInt8]: [Int32]] = [:]
    private let cacheLock = NSLock()
    /// Bounds the cache's memory on unbounded input; it is cleared when full.
    private static let cacheCapacity = 1 << 20

    public init(vocabulary: BPEVocabulary) throws {
        self.vocabulary = vocabulary
        self.specialIds = try RobertaSpecialIds(vocabulary: vocabulary)
        let ids = specialIds
        specialTokens = [
            (Array(RobertaSpecialIds.bosToken.unicodeScalars), ids.bos, false),
            (Array(RobertaSpecialIds.padToken.unicodeScalars), ids.pad, false),
            (Array(RobertaSpecialIds.eosToken.unicodeScalars), ids.eos, false),
            (Array(RobertaSpecialIds.unknownToken.unicodeScalars), ids.unknown, false),
            // RoBERTa declares <mask> as AddedToken(lstrip=True).
            (Array(RobertaSpecialIds.maskToken.unicodeScalars), ids.mask, true),
        ]
    }

    public convenience init(vocabularyJSON: String, merges: String) throws {
        try self.init(vocabulary: BPEVocabulary(vocabularyJSON: vocabularyJSON, merges: merges))
    }

    /// Smallest `maxLength` that fits `<s>`, one text token and `</s>`: at 2, HuggingFace's Python
    /// tokenizer logs an error and returns the ids untruncated, so that case is refused here.
    public static let minimumMaxLength = 3

    /// Token ids of `text` without `<s>`/`</s>` or truncation (HF `add_special_tokens=False`).
    public func tokenIds(_ text: String) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 2)
        var pendingText = 0..<0  // text before the current special token
        var i = 0, start = 0
        while i < scalars.count {
            if scalars[i] == "<", let special = specialToken(in: scalars, at: i) {
                pendingText = start..<i
                var end = pendingText.upperBound
                if special.stripsWhitespaceBefore {
                    while end > pendingText.lowerBound && TextUnicode.isPythonSpace(scalars[end - 1]) { end -= 1 }
                }
                appendBPE(scalars[pendingText.lowerBound..<end], to: &ids)
                ids.append(special.id)
                i += special.length
                start = i
            } else {
                i += 1
            }
        }
        appendBPE(scalars[start...], to: &ids)
        return ids
    }

    /// The BPE tokens of `text` (HF `tokenize`).
    public func tokenize(_ text: String) -> [String] { tokenIds(text).map { token(for: $0) } }

    /// The token string of an id of this vocabulary.
    public func token(for id: Int32) -> String { vocabulary.token(for: id) ?? "<id \(id)>" }

    /// `<s> tokens </s>`; with `maxLength`, text tokens are cut from the end so the result fits
    /// (HF `truncation=True, max_length=N`: `[<s>] + ids[:N-2] + [</s>]`).
    public func encode(_ text: String, maxLength: Int? = nil) throws -> [Int32] {
        if let maxLength, maxLength < Self.minimumMaxLength {
            throw TokenizerError.maxLengthTooSmall(maxLength: maxLength, minimum: Self.minimumMaxLength, framing: "roberta")
        }
        var body = tokenIds(text)
        if let maxLength, body.count > maxLength - 2 { body.removeSubrange((maxLength - 2)...) }
        return [specialIds.bos] + body + [specialIds.eos]
    }

    /// METER's text input: `encode` truncated to `maxLength` and padded to it with `<pad>`
    /// (HF `padding="max_length", truncation=True, return_special_tokens_mask=True`).
    public func encodePadded(_ text: String, maxLength: Int) throws -> RobertaPaddedEncoding {
        var ids = try encode(text, maxLength: maxLength)
        let real = ids.count
        ids += [Int32](repeating: specialIds.pad, count: maxLength - real)
        var special = [Int32](repeating: 1, count: maxLength)
        for k in 1..<(real - 1) { special[k] = 0 }
        return RobertaPaddedEncoding(
            ids: ids,
            attentionMask: (0..<maxLength).map { $0 < real ? 1 : 0 },
            specialTokensMask: special)
    }

    /// Captions as METER feeds them: each `<s> tokens </s>` cut to `maxLength` and padded to it
    /// with `<pad>` (attention mask 0 on pads).
    public func encodeBatch(_ texts: [String], maxLength: Int) throws -> TokenBatch {
        TokenBatch(sequences: try texts.map { try encode($0, maxLength: maxLength) }, padId: specialIds.pad, padTo: maxLength)
    }

    private func specialToken(in s: [Unicode.Scalar], at i: Int) -> (length: Int, id: Int32, stripsWhitespaceBefore: Bool)? {
        for t in specialTokens where s.count - i >= t.scalars.count && s[i..<(i + t.scalars.count)].elementsEqual(t.scalars) {
            return (t.scalars.count, t.id, t.stripsWhitespaceBefore)
        }
        return nil
    }

    private func appendBPE(_ text: ArraySlice<Unicode.Scalar>, to ids: inout [Int32]) {
        guard !text.isEmpty else { return }
        let scalars = Array(text)
        for chunk in GPT2PreTokenizer.chunks(scalars) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(chunk.count)
            for s in scalars[chunk] { UTF8.encode(s) { bytes.append($0) } }
            ids.append(contentsOf: bpe(bytes))
        }
    }

    /// BPE of one chunk's bytes, cached.
    func bpe(_ bytes: [UInt8]) -> [Int32] {
        cacheLock.lock()
        let cached = cache[bytes]
        cacheLock.unlock()
        if let cached { return cached }
        let result = Self.mergeAll(bytes.map { vocabulary.byteIds[Int($0)] }, merges: vocabulary.merges)
        cacheLock.lock()
        if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = result
        cacheLock.unlock()
        return result
    }

    /// GPT-2's `bpe`: while some adjacent pair is a merge, merge every occurrence of the
    /// lowest-ranked one, scanning left to right.
    static func mergeAll(_ start: [Int32], merges: [UInt64: (rank: Int32, merged: Int32)]) -> [Int32] {
        var word = start
        while word.count > 1 {
            var best: (rank: Int32, left: Int32, right: Int32, merged: Int32)?
            for k in 0..<(word.count - 1) {
                if let m = merges[key(word[k], word[k + 1])], best == nil || m.rank < best!.rank {
                    best = (m.rank, word[k], word[k + 1], m.merged)
                }
            }
            guard let b = best else { break }
            var next: [Int32] = []
            next.reserveCapacity(word.count)
            var k = 0
            while k < word.count {
                if k + 1 < word.count && word[k] == b.left && word[k + 1] == b.right {
                    next.append(b.merged)
                    k += 2
                } else {
                    next.append(word[k])
                    k += 1
                }
            }
            word = next
        }
        return word
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }
}

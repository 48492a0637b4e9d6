import Foundation

extension BertTokenizer {
    /// Text of token ids as HuggingFace's `decode(ids, skip_special_tokens=True)` gives it: special
    /// tokens ([PAD] [UNK]... and ids past the vocabulary, i.e. tokens a model added such as BLIP's
    /// [DEC]/[ENC]) dropped, word pieces joined ("##" continues a word), then
    /// `clean_up_tokenization` (no space before . ? ! , and inside n't 'm 's 've 're).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        let special: Set<Int32> = [specialIds.pad, specialIds.unknown, specialIds.cls, specialIds.sep, specialIds.mask]
        var pieces: [String] = []
        for id in ids {
            guard id >= 0, id <= Int(Int32.max) else { continue }
            let i = Int32(id)
            if skipSpecialTokens && special.contains(i) { continue }
            guard let token = vocabulary.token(for: i) else { continue }  // an added token: special
            pieces.append(token)
        }
        var text = pieces.joined(separator: " ").replacingOccurrences(of: " ##", with: "")
        text = text.trimmingCharacters(in: .whitespaces)
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                           (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            text = text.replacingOccurrences(of: from, with: to)
        }
        return text
    }
}

import ELIPText
import XCTest

/// `decode` against HuggingFace's `decode(ids, skip_special_tokens=True)` rules.
final class DetokenizeTests: XCTestCase {
    private let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "'", "s", "ball", ".", "play", "##ing",
                          "don", "t", "n't", "?", ",", "!", "it", "'re", "we"]

    private func tokenizer() throws -> BertTokenizer { try BertTokenizer(vocabulary: Vocabulary(tokens: tokens, source: "tiny")) }

    private func ids(_ words: [String]) -> [Int] { words.map { tokens.firstIndex(of: $0)! } }

    func testWordPiecesJoinAndPunctuationAttaches() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.decode(ids(["a", "dog", "play", "##ing", "."])), "a dog playing.")
        XCTAssertEqual(t.decode(ids(["a", "dog", "'", "s", "ball", "?", "!", ","])), "a dog's ball?!,")
        XCTAssertEqual(t.decode(ids(["it", "'re", "we", "n't"])), "it're wen't")
    }

    func testSpecialAndAddedTokensAreDropped() throws {
        let t = try tokenizer()
        // [DEC]/[ENC]-style ids past the vocabulary are added special tokens: dropped, as HF does.
        let withSpecials = [tokens.count, 2] + ids(["a", "dog"]) + [3, 0, 0, tokens.count + 1, -5]
        XCTAssertEqual(t.decode(withSpecials), "a dog")
        XCTAssertEqual(t.decode([2] + ids(["dog"]) + [3], skipSpecialTokens: false), "[CLS] dog [SEP]")
        XCTAssertEqual(t.decode([]), "")
    }

    /// Encoding a cleaned caption then decoding gives it back (for text whose words are in the vocabulary).
    func testRoundTripOfCleanText() throws {
        let t = try tokenizer()
        for text in ["a dog playing.", "a dog's ball", "we play, it ball!"] {
            let encoded = t.tokenIds(text).map(Int.init)
            XCTAssertFalse(encoded.contains(1), "\(text): every word is in the vocabulary")
            XCTAssertEqual(t.decode(encoded), text)
        }
        // An unknown word is [UNK], a special token: gone from the text.
        XCTAssertEqual(t.decode(t.tokenIds("a cat").map(Int.init)), "a")
    }
}

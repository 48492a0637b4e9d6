import ELIPJSON
import Foundation
import XCTest
@testable import ELIPText

/// RoBERTa byte-level BPE: the pre-tokeniser and BPE on hand-made cases, every line of
/// shared/reference/text/bpe/bpe_cases.jsonl (HuggingFace's Python RobertaTokenizer), and one
/// test per class of broken vocab.json / merges.txt.
final class RobertaTokenizerTests: XCTestCase {
    // MARK: - pre-tokenisation

    private func chunks(_ text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        return GPT2PreTokenizer.chunks(s).map { TextUnicode.string(s[$0]) }
    }

    func testPreTokenizerFollowsTheGPT2Regex() {
        XCTAssertEqual(chunks("Hello world"), ["Hello", " world"])
        XCTAssertEqual(chunks("   x"), ["  ", " x"])  // \s+(?!\S) gives back one space
        XCTAssertEqual(chunks("\n\n\nx"), ["\n\n", "\n", "x"])
        XCTAssertEqual(chunks("a \tb"), ["a", " ", "\t", "b"])
        XCTAssertEqual(chunks("end  "), ["end", "  "])  // a run reaching the end is whole
        XCTAssertEqual(chunks("I'm they'll it's 'S"), ["I", "'m", " they", "'ll", " it", "'s", " '", "S"])
        XCTAssertEqual(chunks("x1234 56!?"), ["x", "1234", " 56", "!?"])
        XCTAssertEqual(chunks(" ...hi"), [" ...", "hi"])
        // A combining mark (Mn) is not \p{L}: it splits its letter's chunk.
        XCTAssertEqual(chunks("e\u{301}t\u{e9}"), ["e", "\u{301}", "t\u{e9}"])
        // U+3000 is \s but not the optional prefix; U+001F is not \s.
        XCTAssertEqual(chunks("a\u{3000}b"), ["a", "\u{3000}", "b"])
        XCTAssertEqual(chunks("a\u{1F}b"), ["a", "\u{1F}", "b"])
        XCTAssertEqual(chunks("\u{b2}\u{bd}x"), ["\u{b2}\u{bd}", "x"])  // No is \p{N}
        XCTAssertEqual(chunks(""), [])
    }

    func testByteAlphabetIsGPT2s() {
        XCTAssertEqual(ByteLevelAlphabet.scalarForByte[0x20], "\u{120}")  // Ġ
        XCTAssertEqual(ByteLevelAlphabet.scalarForByte[0x0A], "\u{10A}")  // Ċ
        XCTAssertEqual(ByteLevelAlphabet.scalarForByte[0x41], "A")
        XCTAssertEqual(ByteLevelAlphabet.scalarForByte[0xAD], "\u{143}")  // soft hyphen: last unprintable
        XCTAssertEqual(Set(ByteLevelAlphabet.scalarForByte).count, 256)
        XCTAssertEqual(ByteLevelAlphabet.byte(for: "\u{120}"), 0x20)
    }

    // MARK: - a tiny vocabulary

    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("elip-bpe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let folder { try? FileManager.default.removeItem(at: folder) }
    }

    private static let tinyMerges = ["Ġ t", "h e", "Ġt he", "l o", "lo w", "e r"]

    /// Specials, the 256 byte symbols, then each merge's result; returns (vocab.json, merges.txt).
    private func writeTiny(vocabulary vocabText: String? = nil, merges mergesText: String? = nil,
                           dropping: Set<String> = []) throws -> (String, String) {
        var tokens = RobertaSpecialIds.all.filter { $0 != RobertaSpecialIds.maskToken }
        tokens += ByteLevelAlphabet.scalarForByte.map { String($0) }
        tokens += Self.tinyMerges.map { $0.replacingOccurrences(of: " ", with: "") }
        tokens.append(RobertaSpecialIds.maskToken)
        tokens = tokens.filter { !dropping.contains($0) }
        let body = tokens.enumerated().map { "  \(JSONText.quote($0.element)): \($0.offset)" }.joined(separator: ",\n")
        let vocab = folder.appendingPathComponent("vocab.json"), merges = folder.appendingPathComponent("merges.txt")
        try (vocabText ?? "{\n\(body)\n}\n").write(to: vocab, atomically: true, encoding: .utf8)
        try (mergesText ?? "#version: 0.2\n" + Self.tinyMerges.joined(separator: "\n") + "\n").write(to: merges, atomically: true, encoding: .utf8)
        return (vocab.path, merges.path)
    }

    func testMergesByRankOnATinyVocabulary() throws {
        let (v, m) = try writeTiny()
        let t = try RobertaTokenizer(vocabularyJSON: v, merges: m)
        XCTAssertEqual(t.tokenize("the lower"), ["t", "he", "Ġ", "low", "er"])
        XCTAssertEqual(t.tokenize(" the"), ["Ġthe"])
        XCTAssertEqual(t.tokenize("é"), ["\u{c3}", "\u{a9}"])  // two byte symbols
        let sp = t.specialIds
        XCTAssertEqual([sp.bos, sp.pad, sp.eos, sp.unknown, sp.mask], [0, 1, 2, 3, 3 + 256 + 6 + 1])
        let ids = try t.encode(" the lower")
        XCTAssertEqual(ids.first, 0)
        XCTAssertEqual(ids.last, 2)
        XCTAssertEqual(ids.count, 2 + 4)
        // <mask> strips the whitespace before it; <s> does not.
        XCTAssertEqual(t.tokenize("the \t<mask> <s> x"), ["t", "he", "<mask>", "Ġ", "<s>", "Ġ", "x"])
        XCTAssertEqual(t.tokenize("<MASK>").count, 6)
        // Truncation keeps <s> and </s>; padding fills with <pad>.
        XCTAssertEqual(try t.encode(" the lower", maxLength: 4).count, 4)
        let padded = try t.encodePadded("the", maxLength: 6)
        XCTAssertEqual(padded.ids, [0, t.vocabulary.id(for: "t")!, t.vocabulary.id(for: "he")!, 2, 1, 1])
        XCTAssertEqual(padded.attentionMask, [1, 1, 1, 1, 0, 0])
        XCTAssertEqual(padded.specialTokensMask, [1, 0, 0, 1, 1, 1])
        XCTAssertThrowsError(try t.encode("x", maxLength: 2))
        let batch = try t.encodeBatch(["the", " the lower"], maxLength: 5)
        XCTAssertEqual(batch.length, 5)
        XCTAssertEqual(Array(batch.ids(row: 0)), padded.ids.prefix(5).map { $0 })
        XCTAssertEqual(Array(batch.mask(row: 0)), [1, 1, 1, 1, 0])
        XCTAssertEqual(Array(batch.ids(row: 1)), try t.encode(" the lower", maxLength: 5))
    }

    // MARK: - broken files

    private func assertLoadError(_ vocab: String, _ merges: String, contains parts: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try RobertaTokenizer(vocabularyJSON: vocab, merges: merges), file: file, line: line) { error in
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "\(text) lacks \(p)", file: file, line: line) }
        }
    }

    func testMalformedVocabularyJSONNamesFileAndLine() throws {
        var (v, m) = try writeTiny(vocabulary: "{\n  \"a\": 0,\n  \"b\" 1\n}\n")
        assertLoadError(v, m, contains: [v, "line 3", "':'"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": 0,\n\"b\": 1.5}")
        assertLoadError(v, m, contains: [v, "line 2", "not an integer"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": -1}")
        assertLoadError(v, m, contains: [v, "line 1", "negative"])
        (v, m) = try writeTiny(vocabulary: "[\"a\"]")
        assertLoadError(v, m, contains: [v, "line 1", "object"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": 0, \"\\ud800\": 1}")
        assertLoadError(v, m, contains: [v, "surrogate"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": 0}\n{")
        assertLoadError(v, m, contains: [v, "line 2", "after the JSON value"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": 0,\n\"a\": 1}")
        assertLoadError(v, m, contains: [v, "line 2", "already appears on line 1"])
        (v, m) = try writeTiny(vocabulary: "{\"a\": 0,\n\"b\": 0}")
        assertLoadError(v, m, contains: [v, "line 2", "id 0"])
        (v, m) = try writeTiny(vocabulary: "")
        assertLoadError(v, m, contains: [v, "empty"])
    }

    func testVocabularyWithoutSpecialsOrByteSymbolsIsRefused() throws {
        var (v, m) = try writeTiny(dropping: [RobertaSpecialIds.maskToken])
        assertLoadError(v, m, contains: [v, "<mask>"])
        (v, m) = try writeTiny(dropping: ["\u{120}"])
        assertLoadError(v, m, contains: [v, "byte symbol", "0x20"])
    }

    func testBrokenMergesNameFileAndLine() throws {
        var (v, m) = try writeTiny(merges: "Ġ t\nh e\n")
        assertLoadError(v, m, contains: [m, "line 1", "#version"])
        (v, m) = try writeTiny(merges: "#version: 0.2\nĠ t\n\nh e\n")
        assertLoadError(v, m, contains: [m, "line 3", "empty line"])
        (v, m) = try writeTiny(merges: "#version: 0.2\nĠ t\nh e r\n")
        assertLoadError(v, m, contains: [m, "line 3", "3 parts"])
        (v, m) = try writeTiny(merges: "#version: 0.2\nĠ t\nq <zz>\n")
        assertLoadError(v, m, contains: [m, "line 3", "<zz>", v])
        (v, m) = try writeTiny(merges: "#version: 0.2\nĠ t\nq u\n")  // "qu" is not a token
        assertLoadError(v, m, contains: [m, "line 3", "\"qu\""])
        (v, m) = try writeTiny(merges: "#version: 0.2\nĠ t\nh e\nĠ t\n")
        assertLoadError(v, m, contains: [m, "line 4", "line 2"])
        (v, m) = try writeTiny(merges: "")
        assertLoadError(v, m, contains: [m, "empty"])
        (v, _) = try writeTiny()
        assertLoadError(v, folder.appendingPathComponent("nope.txt").path, contains: ["nope.txt", "not found"])
    }

    func testJSONStringLines() throws {
        XCTAssertEqual(try parseJSONStringLine(Array(#" "a\nb\u00e9\ud83d\ude00\"" "#.utf8)), "a\nb\u{e9}\u{1F600}\"")
        XCTAssertThrowsError(try parseJSONStringLine(Array("abc".utf8)))
        XCTAssertThrowsError(try parseJSONStringLine(Array(#""a" "b""#.utf8)))
        XCTAssertThrowsError(try parseJSONStringLine(Array(#""\x""#.utf8)))
        XCTAssertEqual(JSONText.quote("a\"\\\n\u{1}\u{2028}Ġ"), #""a\"\\\n\u0001\u2028Ġ""#)
    }

    // MARK: - reference

    static func sharedBPE(_ name: String) throws -> String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = ProcessInfo.processInfo.environment["ELIP_SHARED"].map { URL(fileURLWithPath: $0) }
            ?? repo.deletingLastPathComponent().appendingPathComponent("shared")
        let path = shared.appendingPathComponent("reference/text/bpe").appendingPathComponent(name).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("needs ../shared/reference/text/bpe (or ELIP_SHARED): \(path) not found")
        }
        return path
    }

    func testEveryReferenceCase() throws {
        let tokenizer = try RobertaTokenizer(vocabularyJSON: Self.sharedBPE("vocab.json"), merges: Self.sharedBPE("merges.txt"))
        let text = try String(contentsOfFile: Self.sharedBPE("bpe_cases.jsonl"), encoding: .utf8)
        var checked = 0, truncated = 0
        for (n, line) in text.split(separator: "\n").enumerated() {
            // JSONDecoder, not JSONSerialization: the latter drops a raw U+FEFF inside a string.
            let c = try JSONDecoder().decode(BPECase.self, from: Data(line.utf8))
            let where_ = "line \(n + 1) (\(c.kind)): \(JSONText.quote(c.text))"
            XCTAssertEqual(tokenizer.tokenize(c.text), c.tokens, where_)
            XCTAssertEqual(tokenizer.tokenIds(c.text).map(Int.init), c.ids_no_special, where_)
            XCTAssertEqual(try tokenizer.encode(c.text).map(Int.init), c.ids, where_)
            if let maxLength = c.max_length {
                XCTAssertEqual(try tokenizer.encode(c.text, maxLength: maxLength).map(Int.init), c.truncated_ids, where_)
                let padded = try tokenizer.encodePadded(c.text, maxLength: maxLength)
                XCTAssertEqual(padded.ids.map(Int.init), c.padded_ids, where_)
                XCTAssertEqual(padded.attentionMask.map(Int.init), c.attention_mask, where_)
                XCTAssertEqual(padded.specialTokensMask.map(Int.init), c.special_tokens_mask, where_)
                truncated += 1
            }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 184)
        XCTAssertGreaterThan(truncated, 0)
    }

    // swiftlint:disable identifier_name
    struct BPECase: Decodable {
        let kind: String
        let text: String
        let tokens: [String]
        let ids: [Int]
        let ids_no_special: [Int]
        let max_length: Int?
        let truncated_ids: [Int]?
        let padded_ids: [Int]?
        let attention_mask: [Int]?
        let special_tokens_mask: [Int]?
    }
}

import ELIPText
import Foundation
import XCTest

/// Tokenizer and caption cleaning: hand-written cases on a tiny vocabulary (no shared/ needed),
/// then every case of shared/reference/text/tokenizer_cases.jsonl (HuggingFace's Python output).
final class TokenizerTests: XCTestCase {

    // MARK: tiny in-memory vocabulary

    private static let tinyTokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",              // 0-4
        "un", "##aff", "##able", "a", "##b", "##c", "abc",         // 5-11
        "dog", ".", ",", "!", "cafe", "naive", "中", "国",          // 12-19
        "the", "x", "##x", "'", "s", "ο", "##δ", "##ος", "##σ", "-", // 20-29
        "i", "aa", "##a", "##aa", "##\u{20DD}",                    // 30-34
    ]

    private func tiny() throws -> BertTokenizer {
        try BertTokenizer(vocabulary: Vocabulary(tokens: Self.tinyTokens, source: "tiny"))
    }

    private func ids(_ t: BertTokenizer, _ tokens: [String]) -> [Int32] {
        tokens.map { t.vocabulary.id(for: $0) ?? -1 }
    }

    func testSpecialIdsAreReadFromTheVocabulary() throws {
        let t = try tiny()
        XCTAssertEqual([t.specialIds.pad, t.specialIds.unknown, t.specialIds.cls, t.specialIds.sep,
                        t.specialIds.mask], [0, 1, 2, 3, 4])
    }

    func testGreedyLongestMatchFirst() throws {
        let t = try tiny()
        XCTAssertEqual(t.tokenize("unaffable"), ["un", "##aff", "##able"])
        // "abc" is a whole token: longest match wins over "a" + "##b" + "##c".
        XCTAssertEqual(t.tokenize("abc"), ["abc"])
        XCTAssertEqual(t.tokenize("ab"), ["a", "##b"])
        XCTAssertEqual(t.tokenize("aaaaa"), ["aa", "##aa", "##a"])
    }

    func testUnknownWords() throws {
        let t = try tiny()
        // No piece matches at some position: the whole word is one [UNK], partial pieces dropped.
        XCTAssertEqual(t.tokenize("abz dog"), ["[UNK]", "dog"])
        XCTAssertEqual(t.tokenize("zzz"), ["[UNK]"])
        // 100 scalars is still tokenized, 101 is one [UNK].
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 100)),
                       ["x"] + Array(repeating: "##x", count: 99))
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 101)), ["[UNK]"])
        // The limit counts scalars after accent stripping: "x" + U+0301 (Mn) loses its mark...
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 99) + "x\u{301}"),
                       ["x"] + Array(repeating: "##x", count: 99))
        // ...but U+20DD (Me) stays: 51 x 2 scalars is over 100, though only 51 Characters.
        let circled = "x\u{20DD}"
        XCTAssertEqual(t.tokenize(String(repeating: circled, count: 50)).count, 100)
        XCTAssertEqual(t.tokenize(String(repeating: circled, count: 51)), ["[UNK]"])
    }

    func testPunctuationSplit() throws {
        let t = try tiny()
        XCTAssertEqual(t.tokenize("dog.dog,dog!"), ["dog", ".", "dog", ",", "dog", "!"])
        XCTAssertEqual(t.tokenize("the dog's"), ["the", "dog", "'", "s"])
        // ASCII symbols that are not Unicode punctuation still split ('$' is Sc).
        XCTAssertEqual(t.basic.words(in: "a$b^c`d"), ["a", "$", "b", "^", "c", "`", "d"])
        // Unicode punctuation (Pd, Pi, Pf) splits; symbols (So) do not.
        XCTAssertEqual(t.basic.words(in: "a\u{2014}b \u{201C}x\u{201D} a\u{00A9}b"),
                       ["a", "\u{2014}", "b", "\u{201C}", "x", "\u{201D}", "a\u{00A9}b"])
    }

    func testLowercaseAndAccents() throws {
        let t = try tiny()
        XCTAssertEqual(t.tokenize("CAFÉ Naïve"), ["cafe", "naive"])
        // Decomposed input gives the same result.
        XCTAssertEqual(t.tokenize("Cafe\u{301} nai\u{308}ve"), ["cafe", "naive"])
        // Python lower(): U+0130 -> "i" + U+0307, and the combining dot is then stripped.
        XCTAssertEqual(t.tokenize("\u{130}"), ["i"])
        // Final sigma, as Python's str.lower(): "ΟΔΟΣ" -> "οδος" (ς at the end, σ inside).
        XCTAssertEqual(t.tokenize("ΟΔΟΣ"), ["ο", "##δ", "##ος"])
        XCTAssertEqual(t.basic.words(in: "ΟΔΟΣ ΟΣΟ Σ"), ["οδος", "οσο", "σ"])
        // A lone combining mark vanishes entirely.
        XCTAssertEqual(t.basic.words(in: "a \u{301} b"), ["a", "b"])
    }

    func testBasicTokenizerOptions() {
        XCTAssertEqual(BasicTokenizer().words(in: "[MASK] Héllo, World"),
                       ["[", "mask", "]", "hello", ",", "world"])
        XCTAssertEqual(BasicTokenizer(lowercase: false).words(in: "Héllo"), ["Héllo"])
        XCTAssertEqual(BasicTokenizer(lowercase: false, stripAccents: true).words(in: "Héllo"), ["Hello"])
        XCTAssertEqual(BasicTokenizer(lowercase: true, stripAccents: false).words(in: "HÉllo"), ["héllo"])
        XCTAssertEqual(BasicTokenizer(tokenizeChineseCharacters: false).words(in: "a中国b"), ["a中国b"])
    }

    func testChineseCharactersAreSpacedOut() throws {
        let t = try tiny()
        XCTAssertEqual(t.tokenize("中国dog"), ["中", "国", "dog"])
        // Kana and Hangul are not in the CJK ideograph ranges: they stay one word.
        XCTAssertEqual(t.basic.words(in: "タワー한국中"), ["タワー한국", "中"])
        // CJK compatibility ideographs (U+F900...) are spaced too, then NFC maps them to the
        // unified ideograph.
        XCTAssertEqual(t.basic.words(in: "a\u{F900}b").map { $0.unicodeScalars.map(\.value) },
                       [[0x61], [0x8C48], [0x62]])
    }

    func testControlAndWhitespaceCharacters() throws {
        let t = try tiny()
        // NUL, U+FFFD, Cc, and Cf (zero-width space, soft hyphen) are dropped and do not split.
        XCTAssertEqual(t.tokenize("d\u{0}o\u{FFFD}g\u{7} d\u{200B}o\u{AD}g"), ["dog", "dog"])
        // \t \n \r and Zs split.
        XCTAssertEqual(t.tokenize("dog\tdog\ndog\r\ndog\u{A0}dog\u{3000}dog"),
                       Array(repeating: "dog", count: 6))
        // U+2028 is not BERT whitespace, but Python's split() breaks words on it.
        XCTAssertEqual(t.basic.words(in: "dog\u{2028}dog"), ["dog", "dog"])
        XCTAssertEqual(t.tokenIds(""), [])
        XCTAssertEqual(t.tokenIds(" \t\n "), [])
    }

    func testLiteralSpecialTokens() throws {
        let t = try tiny()
        XCTAssertEqual(t.tokenize("the [MASK] dog"), ["the", "[MASK]", "dog"])
        XCTAssertEqual(t.tokenize("x[MASK]x"), ["x", "[MASK]", "x"])
        // Only the exact, case-sensitive form: "[mask]" is ordinary text.
        XCTAssertEqual(t.tokenize("[mask]"), ["[UNK]", "[UNK]", "[UNK]"])
        // After cleaning, a whole word equal to a special token is kept (HF never_split).
        XCTAssertEqual(t.tokenize("[MA\u{0}SK]"), ["[MASK]"])
        let plain = try BertTokenizer(vocabulary: t.vocabulary, recognizesSpecialTokens: false)
        XCTAssertEqual(plain.tokenize("x[MASK]x"), ["x", "[UNK]", "[UNK]", "[UNK]", "x"])
        XCTAssertEqual(plain.tokenize("[MASK]"), ["[UNK]", "[UNK]", "[UNK]"])
    }

    func testFramingAndTruncation() throws {
        let t = try tiny()
        let words = "un dog the dog abc"  // 5 words, one piece each
        let body = t.tokenIds(words)
        XCTAssertEqual(body.count, 5)
        XCTAssertEqual(try t.encode(words, framing: .albef), [2] + body)
        XCTAssertEqual(try t.encode(words, framing: .bert), [2] + body + [3])
        // ALBEF: [CLS] + first 3 tokens; BERT: [CLS] + first 2 + [SEP].
        XCTAssertEqual(try t.encode(words, framing: .albef, maxLength: 4), [2] + body.prefix(3))
        XCTAssertEqual(try t.encode(words, framing: .bert, maxLength: 4), [2] + body.prefix(2) + [3])
        // Exactly at the limit: nothing cut.
        XCTAssertEqual(try t.encode(words, framing: .albef, maxLength: 6), [2] + body)
        XCTAssertEqual(try t.encode(words, framing: .bert, maxLength: 7), [2] + body + [3])
        // Minimum lengths keep only the special tokens.
        XCTAssertEqual(try t.encode(words, framing: .albef, maxLength: 1), [2])
        XCTAssertEqual(try t.encode(words, framing: .bert, maxLength: 2), [2, 3])
        XCTAssertThrowsError(try t.encode(words, framing: .bert, maxLength: 1))
        XCTAssertThrowsError(try t.encode(words, framing: .albef, maxLength: 0))
        XCTAssertEqual(try t.encode("", framing: .albef), [2])
        XCTAssertEqual(try t.encode("", framing: .bert), [2, 3])
    }

    func testBatchPaddingAndMask() throws {
        let t = try tiny()
        let batch = try t.encodeBatch(["dog", "the dog dog", ""], framing: .bert)
        XCTAssertEqual(batch.batchSize, 3)
        XCTAssertEqual(batch.length, 5)
        XCTAssertEqual(batch.inputIds, [2, 12, 3, 0, 0,
                                        2, 20, 12, 12, 3,
                                        2, 3, 0, 0, 0])
        XCTAssertEqual(batch.attentionMask, [1, 1, 1, 0, 0,
                                             1, 1, 1, 1, 1,
                                             1, 1, 0, 0, 0])
        XCTAssertEqual(Array(batch.ids(row: 1)), [2, 20, 12, 12, 3])
        XCTAssertEqual((0..<3).map(batch.sequenceLength(row:)), [3, 5, 2])

        let albef = try t.encodeBatch(["dog dog dog", "dog"], framing: .albef, maxLength: 3)
        XCTAssertEqual(albef.length, 3)
        XCTAssertEqual(albef.inputIds, [2, 12, 12, 2, 12, 0])
        XCTAssertEqual(albef.attentionMask, [1, 1, 1, 1, 1, 0])

        let empty = try t.encodeBatch([], framing: .albef)
        XCTAssertEqual(empty.batchSize, 0)
        XCTAssertEqual(empty.length, 0)
        XCTAssertEqual(empty.inputIds, [])
    }

    // MARK: vocabulary loading

    private func writeTemp(_ contents: String) throws -> String {
        let path = NSTemporaryDirectory() + "elip-vocab-\(UUID().uuidString).txt"
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func assertVocabError(_ path: String, contains fragments: [String],
                                  file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try BertTokenizer(vocabularyFile: path), file: file, line: line) { error in
            let message = "\(error)"
            for f in fragments {
                XCTAssertTrue(message.contains(f), "\(message) should mention \(f)", file: file, line: line)
            }
        }
    }

    func testVocabularyLoading() throws {
        let path = try writeTemp(Self.tinyTokens.joined(separator: "\r\n") + "\r\n")
        let v = try Vocabulary(contentsOfFile: path)
        XCTAssertEqual(v.count, Self.tinyTokens.count)
        XCTAssertEqual(v.id(for: "##aff"), 6)
        XCTAssertEqual(v.token(for: 6), "##aff")
        XCTAssertNil(v.token(for: 1000))
        XCTAssertNil(v.token(for: -1))
        // No trailing newline: the last line still counts.
        XCTAssertEqual(try Vocabulary(contentsOfFile: try writeTemp("a\nb")).tokens, ["a", "b"])
    }

    func testVocabularyLookupIsScalarExact() throws {
        // Canonically equivalent but different scalars are different tokens (as in Python).
        let v = try Vocabulary(tokens: ["\u{E9}", "e\u{301}"])
        XCTAssertEqual(v.id(for: "\u{E9}"), 0)
        XCTAssertEqual(v.id(for: "e\u{301}"), 1)
    }

    func testVocabularyErrorsNameTheFile() throws {
        let missing = NSTemporaryDirectory() + "no-such-vocab-\(UUID().uuidString).txt"
        assertVocabError(missing, contains: [missing, "not found"])
        let empty = try writeTemp("")
        assertVocabError(empty, contains: [empty, "empty"])
        let duplicated = try writeTemp("[PAD]\n[UNK]\ndog\n[CLS]\ndog\n")
        assertVocabError(duplicated, contains: [duplicated, "\"dog\"", "line 5", "line 3"])
        let blankLine = try writeTemp("[PAD]\n\n[UNK]\n")
        assertVocabError(blankLine, contains: [blankLine, "line 2"])
        let noMask = try writeTemp("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
        assertVocabError(noMask, contains: [noMask, "[MASK]"])
        let notUTF8 = NSTemporaryDirectory() + "elip-vocab-\(UUID().uuidString).txt"
        try Data([0x61, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: notUTF8))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: notUTF8) }
        assertVocabError(notUTF8, contains: [notUTF8, "UTF-8"])
    }

    // MARK: pre_caption

    func testPreCaption() {
        XCTAssertEqual(preCaption("A man, riding a horse!"), "a man riding a horse")
        XCTAssertEqual(preCaption("  Two dogs   play.\n"), "two dogs play")
        XCTAssertEqual(preCaption("well-known black/white photo"), "well known black white photo")
        XCTAssertEqual(preCaption("<PERSON> holds a <person>'s cat"), "person holds a persons cat")
        // Deletion happens before the <person> replacement; '-' is replaced before it.
        XCTAssertEqual(preCaption("<per.son> <per-son>"), "person <per son>")
        XCTAssertEqual(preCaption("\"quoted\" (x) *y* #z: a; b~ c?"), "quoted x y z a b c")
        // A single tab or newline survives; runs of 2+ whitespace of any kind become one space.
        XCTAssertEqual(preCaption("tabs\tand\nnewline"), "tabs\tand\nnewline")
        XCTAssertEqual(preCaption("a\t\tb \u{A0}c\u{2028}\u{2029}d"), "a b c d")
        // Trailing newlines are stripped before spaces; leading ones are kept.
        XCTAssertEqual(preCaption("\nabc\n"), "\nabc")
        XCTAssertEqual(preCaption("abc \n"), "abc")
        XCTAssertEqual(preCaption("... !!!"), "")
        XCTAssertEqual(preCaption("ΟΔΟΣ ΚΑΛΟΣ"), "οδος καλος")
    }

    func testPreCaptionTruncatesWords() {
        let words = (1...40).map { "w\($0)" }
        XCTAssertEqual(preCaption(words.joined(separator: " ")),
                       words.prefix(30).joined(separator: " "))
        XCTAssertEqual(preCaption("a b c", maxWords: 2), "a b")
        XCTAssertEqual(preCaption("a b c", maxWords: 3), "a b c")
        XCTAssertEqual(preCaption("a b c", maxWords: 0), "")
        // Python's words[:-1].
        XCTAssertEqual(preCaption("a b c", maxWords: -1), "a b")
        // Words are split on single spaces only; a tab does not separate words.
        XCTAssertEqual(preCaption("a\tb c d", maxWords: 2), "a\tb c")
    }

    // MARK: real vocabulary

    func testRealVocabularyKnownCases() throws {
        let t = try BertTokenizer(vocabularyFile: try Self.vocabularyPath())
        XCTAssertEqual(t.vocabulary.count, 30522)
        XCTAssertEqual([t.specialIds.pad, t.specialIds.unknown, t.specialIds.cls, t.specialIds.sep,
                        t.specialIds.mask], [0, 100, 101, 102, 103])
        XCTAssertEqual(try t.encode("Hello, world!", framing: .bert), [101, 7592, 1010, 2088, 999, 102])
        XCTAssertEqual(t.tokenize("unaffable"), ["una", "##ffa", "##ble"])
        XCTAssertEqual(t.tokenize("A dog is running on the grass."),
                       ["a", "dog", "is", "running", "on", "the", "grass", "."])
        XCTAssertEqual(try t.encode(preCaption("A dog is running on the grass."), framing: .albef),
                       [101, 1037, 3899, 2003, 2770, 2006, 1996, 5568])
        XCTAssertEqual(t.tokenize("a [MASK] dog"), ["a", "[MASK]", "dog"])
        XCTAssertEqual(t.tokenize(String(repeating: "a", count: 120)), ["[UNK]"])
        let long = Array(repeating: "dog", count: 40).joined(separator: " ")
        XCTAssertEqual(try t.encode(long, framing: .albef, maxLength: 25),
                       [101] + Array(repeating: 3899, count: 24))
        XCTAssertEqual(try t.encode(long, framing: .bert, maxLength: 30),
                       [101] + Array(repeating: 3899, count: 28) + [102])
    }

    /// Edge cases the shared reference file lacks (it has no C0 controls, no embedded line
    /// breaks, no 120-letter word); expected ids from HuggingFace's Python BertTokenizer.
    func testRealVocabularyEdgeCases() throws {
        let t = try BertTokenizer(vocabularyFile: try Self.vocabularyPath())
        let cases: [(String, [Int32])] = [
            ("x\u{0}y\u{FFFD}z\u{7}w", [1060, 2100, 2480, 2860]),
            ("newlines\nand\r\nCRLF\tmixed", [2047, 12735, 1998, 13675, 10270, 3816]),
            ("ΟΔΟΣ", [1169, 29722, 15297]),              // ο ##δ ##ος: final sigma
            ("[MA\u{0}SK] z", [103, 1062]),
            ("line\u{2028}sep", [2240, 19802]),
            ("İstanbul", [9960]),
            ("Ǆemal ﬁsh", [100, 1984, 4095]),
            ("\u{212B}ngstr\u{F6}m", [17076, 15687]),  // ANGSTROM SIGN: NFC, then lower
            ("x[MASK]y [mask]", [1060, 103, 1061, 1031, 7308, 1033]),
            ("日本語のテキスト", [1864, 1876, 1950, 1671, 30239, 30227, 30233, 30240]),
            (String(repeating: "a", count: 100), [13360] + Array(repeating: 11057, count: 48) + [2050]),
            (String(repeating: "a", count: 101), [100]),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try t.encode(text, framing: .bert), [101] + expected + [102], text.debugDescription)
        }
    }

    // MARK: reference cases (HuggingFace Python BertTokenizer, ALBEF pre_caption)

    private struct ReferenceCase: Decodable {
        let text: String
        let bert_tokens: [String]
        let bert_ids: [Int32]
        let pre_caption: String
        let albef_ids: [Int32]
    }

    func testReferenceCases() throws {
        let casesPath = try Self.sharedPath("reference/text/tokenizer_cases.jsonl")
        let t = try BertTokenizer(vocabularyFile: try Self.vocabularyPath())
        let lines = try String(contentsOfFile: casesPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: true)
        XCTAssertGreaterThan(lines.count, 100, "\(casesPath) looks truncated")
        var checked = 0
        for (n, line) in lines.enumerated() {
            let c = try JSONDecoder().decode(ReferenceCase.self, from: Data(line.utf8))
            let where_ = "\(casesPath):\(n + 1) \(c.text.debugDescription)"
            // Compare scalars: String == would accept canonically equivalent results.
            XCTAssertEqual(t.tokenize(c.text).map(Self.scalars), c.bert_tokens.map(Self.scalars),
                           "bert_tokens, \(where_)")
            XCTAssertEqual(try t.encode(c.text, framing: .bert), c.bert_ids, "bert_ids, \(where_)")
            let cleaned = preCaption(c.text)
            XCTAssertEqual(Self.scalars(cleaned), Self.scalars(c.pre_caption), "pre_caption, \(where_)")
            XCTAssertEqual(try t.encode(cleaned, framing: .albef, maxLength: BertTokenizer.albefMaxLength),
                           c.albef_ids, "albef_ids, \(where_)")
            checked += 1
        }
        XCTAssertEqual(checked, lines.count)
    }

    /// The same reference cases as one padded ALBEF batch (the training loader's path).
    func testReferenceCasesAsBatch() throws {
        let casesPath = try Self.sharedPath("reference/text/tokenizer_cases.jsonl")
        let t = try BertTokenizer(vocabularyFile: try Self.vocabularyPath())
        let cases = try String(contentsOfFile: casesPath, encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(ReferenceCase.self, from: Data($0.utf8)) }
        let batch = try t.encodeBatch(cases.map { preCaption($0.text) }, framing: .albef,
                                      maxLength: BertTokenizer.albefMaxLength)
        XCTAssertEqual(batch.length, cases.map(\.albef_ids.count).max())
        for (b, c) in cases.enumerated() {
            let n = c.albef_ids.count
            XCTAssertEqual(Array(batch.ids(row: b)),
                           c.albef_ids + Array(repeating: 0, count: batch.length - n))
            XCTAssertEqual(Array(batch.mask(row: b)),
                           Array(repeating: 1, count: n) + Array(repeating: 0, count: batch.length - n))
        }
    }

    // MARK: locating shared/

    private static func scalars(_ s: String) -> [UInt32] { s.unicodeScalars.map(\.value) }

    private static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `$ELIP_SHARED/<relative>` or `<repo>/../shared/<relative>`; skips when absent.
    private static func sharedPath(_ relative: String) throws -> String {
        let shared = ProcessInfo.processInfo.environment["ELIP_SHARED"].map { URL(fileURLWithPath: $0) }
            ?? repoRoot.deletingLastPathComponent().appendingPathComponent("shared")
        let path = shared.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("needs ../shared/reference (or ELIP_SHARED): \(path) not found")
        }
        return path
    }

    /// shared/data's vocabulary, else the one `make setup` puts in assets/; skips when neither.
    private static func vocabularyPath() throws -> String {
        if let p = try? sharedPath("data/bert-base-uncased-vocab.txt") { return p }
        let assets = repoRoot.appendingPathComponent("assets/bert-base-uncased-vocab.txt").path
        guard FileManager.default.fileExists(atPath: assets) else {
            throw XCTSkip("needs ../shared/data/bert-base-uncased-vocab.txt (or ELIP_SHARED), or run `make setup` for \(assets)")
        }
        return assets
    }
}

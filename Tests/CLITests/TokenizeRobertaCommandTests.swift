import Foundation
import XCTest

/// `elip tokenize --style roberta`: every line of shared/reference/text/bpe/bpe_cases.jsonl through
/// the binary (--jsonl input), truncation and padding, and the errors for bad files and lines.
final class TokenizeRobertaCommandTests: XCTestCase {
    private struct BPECase: Decodable {
        let text: String
        let tokens: [String]
        let ids: [Int]
        let max_length: Int?
        let truncated_ids: [Int]?
        let padded_ids: [Int]?
        let attention_mask: [Int]?
        let special_tokens_mask: [Int]?
    }

    private struct Output: Decodable {
        let ids: [Int]
        let tokens: [String]
        let attention_mask: [Int]?
        let special_tokens_mask: [Int]?
    }

    /// A JSON string literal of `text` with every non-ASCII scalar escaped (a form the command
    /// must accept as well as raw UTF-8).
    private func jsonLine(_ text: String) -> String {
        let data = try! JSONEncoder().encode([text])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    private func cases() throws -> (vocab: String, merges: String, cases: [BPECase]) {
        let vocab = try CLI.shared("reference/text/bpe/vocab.json")
        let merges = try CLI.shared("reference/text/bpe/merges.txt")
        let text = try String(contentsOfFile: try CLI.shared("reference/text/bpe/bpe_cases.jsonl"), encoding: .utf8)
        let cases = try text.split(separator: "\n").map { try JSONDecoder().decode(BPECase.self, from: Data($0.utf8)) }
        return (vocab, merges, cases)
    }

    private func outputs(_ r: ElipRun) throws -> [Output] {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try r.stdout.split(separator: "\n").map { try JSONDecoder().decode(Output.self, from: Data($0.utf8)) }
    }

    func testEveryReferenceLineThroughTheBinary() throws {
        let (vocab, merges, cases) = try cases()
        let input = cases.map { jsonLine($0.text) }.joined(separator: "\n") + "\n"
        let out = try outputs(CLI.run(["tokenize", "--style", "roberta", "--vocab-json", vocab, "--merges", merges, "--jsonl"], stdin: input))
        XCTAssertEqual(out.count, cases.count)
        for (c, o) in zip(cases, out) {
            XCTAssertEqual(o.ids, c.ids, c.text)
            XCTAssertEqual(o.tokens, ["<s>"] + c.tokens + ["</s>"], c.text)
        }
        XCTAssertGreaterThanOrEqual(cases.count, 184)
    }

    func testTruncationAndPaddingMatchTheReference() throws {
        let (vocab, merges, cases) = try cases()
        let limited = cases.filter { $0.max_length != nil }
        XCTAssertFalse(limited.isEmpty)
        // One run per length and mode (the binary loads the vocabulary each time).
        for (n, group) in Dictionary(grouping: limited, by: { $0.max_length! }) {
            let base = ["tokenize", "--style", "roberta", "--vocab-json", vocab, "--merges", merges, "--jsonl", "--max-length", String(n)]
            let input = group.map { jsonLine($0.text) }.joined(separator: "\n") + "\n"
            let cut = try outputs(CLI.run(base, stdin: input))
            let padded = try outputs(CLI.run(base + ["--pad"], stdin: input))
            XCTAssertEqual(cut.count, group.count)
            XCTAssertEqual(padded.count, group.count)
            for (k, c) in group.enumerated() where k < cut.count && k < padded.count {
                XCTAssertEqual(cut[k].ids, c.truncated_ids, c.text)
                XCTAssertEqual(padded[k].ids, c.padded_ids, c.text)
                XCTAssertEqual(padded[k].attention_mask, c.attention_mask, c.text)
                XCTAssertEqual(padded[k].special_tokens_mask, c.special_tokens_mask, c.text)
            }
        }
    }

    func testBadInputIsAClearError() throws {
        let (vocab, merges, _) = try cases()
        let base = ["tokenize", "--style", "roberta", "--vocab-json", vocab, "--merges", merges]
        // A line that is not a JSON string: error naming the line, earlier lines written.
        var r = try CLI.run(base + ["--jsonl"], stdin: "\"ok\"\nnot json\n\"later\"\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("line 2"), r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1)
        // Options that do not fit.
        r = try CLI.run(["tokenize", "--style", "roberta", "--vocab-json", vocab], stdin: "x\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--merges"), r.stderr)
        r = try CLI.run(base + ["--max-length", "2"], stdin: "x\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("at least 3"), r.stderr)
        r = try CLI.run(base + ["--pad"], stdin: "x\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--max-length"), r.stderr)
        // A merges file from another vocabulary: names the file and the line.
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let other = dir.appendingPathComponent("merges.txt")
        try "#version: 0.2\nĠ t\nzz qq\n".write(to: other, atomically: true, encoding: .utf8)
        r = try CLI.run(["tokenize", "--style", "roberta", "--vocab-json", vocab, "--merges", other.path], stdin: "x\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(other.path) && r.stderr.contains("line 3"), r.stderr)
        XCTAssertEqual(r.stdout, "")
    }

    func testRawLinesWithoutJsonl() throws {
        let (vocab, merges, _) = try cases()
        let r = try CLI.run(["tokenize", "--style", "roberta", "--vocab-json", vocab, "--merges", merges], stdin: "a b\n\n")
        let out = try outputs(r)
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(out[1].ids, [0, 2])  // an empty line is an empty text
        XCTAssertEqual(out[0].tokens.first, "<s>")
    }

    /// --jsonl works for the WordPiece styles too: the JSON string gives the same ids as the raw line.
    func testJsonlInputForBertStyle() throws {
        let vocab = Tiny.vocab
        let raw = try CLI.run(["tokenize", "--vocab", vocab, "--style", "bert"], stdin: "a square\n")
        let json = try CLI.run(["tokenize", "--vocab", vocab, "--style", "bert", "--jsonl"], stdin: "\"a squ\\u0061re\"\n")
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertEqual(json.stdout, raw.stdout)
        XCTAssertFalse(raw.stdout.isEmpty)
        let bad = try CLI.run(["tokenize", "--vocab", vocab, "--style", "bert", "--jsonl"], stdin: "\"ok\"\n\"unterminated\n")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("line 2"), bad.stderr)
    }

    /// Options of one style given to another are refused, not ignored.
    func testRobertaOptionsNeedRobertaStyle() throws {
        let r = try CLI.run(["tokenize", "--vocab", Tiny.vocab, "--merges", "m.txt"], stdin: "a\n")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--style roberta"), r.stderr)
        let (vocab, merges, _) = try cases()
        let w = try CLI.run(["tokenize", "--style", "roberta", "--vocab", Tiny.vocab, "--vocab-json", vocab, "--merges", merges], stdin: "a\n")
        XCTAssertNotEqual(w.status, 0)
        XCTAssertTrue(w.stderr.contains("--vocab-json"), w.stderr)
    }
}

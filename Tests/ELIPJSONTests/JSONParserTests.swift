import XCTest
import ELIPJSON

/// The shared reader's own contract; each user's wrapper (annotations, vocabularies, safetensors
/// headers) is tested in its module.
final class JSONParserTests: XCTestCase {
    private func parse(_ s: String, _ o: JSONParser.Options = .strict) throws -> JSONNode {
        try JSONParser.parse(Array(s.utf8), options: o)
    }

    private func error(_ bytes: [UInt8], _ o: JSONParser.Options = .strict) -> JSONParseError? {
        do { _ = try JSONParser.parse(bytes, options: o); return nil } catch { return error as? JSONParseError }
    }

    func testMembersKeepFileOrderRepeatsAndOffsets() throws {
        guard case let .object(m) = try parse(#"{"b": 1, "a": [true, null], "b": "x"}"#) else { return XCTFail() }
        XCTAssertEqual(m.map(\.key), ["b", "a", "b"])
        XCTAssertEqual(m.map(\.offset), [1, 9, 28])
        XCTAssertEqual(m[1].value, .array([.bool(true), .null]))
        XCTAssertEqual(m[2].value, .string("x"))
    }

    func testNumbersKeepTheirLiteral() throws {
        guard case let .array(items) = try parse("[0, -12, 3.5, 1e2, 99999999999999999999]") else { return XCTFail() }
        let numbers = items.compactMap { if case let .number(n) = $0 { return n } else { return nil } }
        XCTAssertEqual(numbers.map(\.text), ["0", "-12", "3.5", "1e2", "99999999999999999999"])
        XCTAssertEqual(numbers.map(\.integer), [0, -12, nil, nil, nil])
        XCTAssertEqual(numbers.map(\.value), [0, -12, 3.5, 100, 1e20])
    }

    func testStrictRejectsWhatLenientFlags() throws {
        let lone = #"["a\ud800b"]"#
        XCTAssertEqual(try parse(lone, .lenient), .array([.nonUnicodeString(offset: 1)]))
        XCTAssertTrue(error(Array(lone.utf8))?.message.contains("lone surrogate") ?? false)
        let badUTF8: [UInt8] = Array(#"["ok", ""#.utf8) + [0xFF] + Array(#""]"#.utf8)
        XCTAssertEqual(try JSONParser.parse(badUTF8, options: .lenient), .array([.string("ok"), .nonUnicodeString(offset: 7)]))
        let e = error(badUTF8)
        XCTAssertEqual(e?.offset, 8)
        XCTAssertTrue(e?.message.contains("not valid UTF-8 (bad byte 0xff)") ?? false, "\(String(describing: e))")
        // A BOM is skipped only when the options allow it.
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("[]".utf8)
        XCTAssertEqual(try JSONParser.parse(bom, options: .lenient), .array([]))
        XCTAssertEqual(error(bom)?.offset, 0)
        // Surrogate pairs join in both modes.
        XCTAssertEqual(try parse(#""\ud83d\ude00""#), .string("😀"))
    }

    func testErrorsGiveOffsetLineColumnAndDepthIsBounded() {
        let e = error(Array("{\n  \"a\": 1,\n  \"b\" 2}".utf8))
        XCTAssertEqual(e?.offset, 18)
        XCTAssertEqual(e?.line, 3)
        XCTAssertEqual(e?.column, 7)
        XCTAssertTrue(e?.message.contains("expected ':'") ?? false)
        let shallow = JSONParser.Options(maxDepth: 3, nonUnicodeStrings: .reject, skipsByteOrderMark: false)
        XCTAssertNoThrow(try parse("[[[1]]]", shallow))
        XCTAssertTrue(error(Array("[[[[1]]]]".utf8), shallow)?.message.contains("deeper than 3") ?? false)
        XCTAssertNotNil(error(Array(String(repeating: "[", count: 100_000).utf8)))
        XCTAssertEqual(error([])?.offset, 0)
    }

    func testLineIndexMatchesLineColumn() {
        let text = Array("a\nbb\n\nccc\n".utf8)
        text.withUnsafeBytes { raw in
            let index = JSONLineIndex(raw)
            for offset in 0...text.count {
                XCTAssertEqual(index.line(of: offset), JSONParser.lineColumn(of: offset, in: raw).line, "offset \(offset)")
            }
        }
    }

    func testQuoteRoundTripsAndKeepsOneLine() throws {
        for s in ["", "plain", "q\"\\/", "\u{0}\u{1f}\u{7f}\u{85}\u{2028}\u{2029}", "é😀\n\t\r"] {
            let q = JSONText.quote(s)
            XCTAssertFalse(q.contains("\n") || q.contains("\u{85}") || q.contains("\u{2028}"), q)
            XCTAssertEqual(try parse(q), .string(s))
        }
    }

    func testRandomBytesNeverTrap() {
        var state: UInt64 = 7
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        let alphabet = Array("[]{}\",:0123456789.eE+-truefalsnl \\u\n".utf8) + [0xFF, 0xC3, 0xEF, 0xBB, 0xBF]
        for _ in 0..<3000 {
            let bytes = (0..<Int(next() % 40)).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }
            _ = try? JSONParser.parse(bytes, options: .lenient)
            _ = try? JSONParser.parse(bytes, options: .strict)
        }
    }
}

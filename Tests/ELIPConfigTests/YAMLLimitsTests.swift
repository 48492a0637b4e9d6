import ELIPConfig
import XCTest

/// Issue 15, class 9: the alias expansion of a config is counted before the parser expands
/// anything, exactly (an alias counts as the node last anchored under its name), whatever
/// quoting, comments, line breaks or anchor re-definitions surround it.
final class YAMLLimitsTests: XCTestCase {
    func laughs(levels: Int, width: Int = 9) -> String {
        var text = "a0: &a0 [" + Array(repeating: "lol", count: width).joined(separator: ", ") + "]\n"
        for i in 1...levels { text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: width).joined(separator: ", ") + "]\n" }
        return text
    }

    func refuses(_ text: String, _ needle: String = "expand it to more than", line: UInt = #line) {
        let start = Date()
        XCTAssertThrowsError(try ConfigSection.parse(text, source: "bomb.yaml"), line: line) { e in
            XCTAssertTrue("\(e)".hasPrefix("bomb.yaml: ") && "\(e)".contains(needle), "\(e)", line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, line: line)
    }

    func testBombsAreRefusedBeforeExpansion() {
        refuses(laughs(levels: 9))
        refuses(laughs(levels: 9) + "? *a9\n: 1\n")                      // the alias as a mapping key (hashed in full)
        refuses(laughs(levels: 9) + "k: {[*a9, *a9]: 1}\n")              // inside a flow key
        refuses(laughs(levels: 9).replacingOccurrences(of: "\n", with: "\r"))
        refuses(laughs(levels: 9).replacingOccurrences(of: "\n", with: "\r\n"))
        refuses(laughs(levels: 9).replacingOccurrences(of: "\n", with: "\u{2028}"))
        refuses("\u{FEFF}" + laughs(levels: 9), "YAML syntax error")
        refuses(laughs(levels: 9).replacingOccurrences(of: ", ", with: ",\n  "))  // block-ish layout, aliases at line starts
        // Block style: anchored sequences, mappings and a scalar fanned out.
        var block = "a0: &a0\n" + String(repeating: "  - lol\n", count: 9)
        var blockMap = "a0: &a0\n" + (0..<9).map { "  k\($0): lol\n" }.joined()
        var scalar = "a0: &a0 lol\n"
        for i in 1...9 {
            block += "a\(i): &a\(i)\n" + String(repeating: "  - *a\(i - 1)\n", count: 9)
            blockMap += "a\(i): &a\(i)\n" + (0..<9).map { "  k\($0): *a\(i - 1)\n" }.joined()
        }
        for i in 1...12 { scalar += "a\(i): &a\(i) [*a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1)]\n" }
        refuses(block)
        refuses(blockMap)
        refuses(scalar)
        var merges = "m0: &m0 {x: 1, y: 2}\n"
        for i in 1...30 { merges += "m\(i): &m\(i) {<<: *m\(i - 1), p\(i): *m\(i - 1)}\n" }
        refuses(merges)
        // Quoted text that looks like an alias does not hide the real ones after it.
        refuses("q: \" *a0 \"\n" + laughs(levels: 9))
        // Re-defining an anchor: aliases inside the second node refer to the first one.
        var redefined = "x: &x [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...9 { redefined += "x\(i): &x [" + Array(repeating: "*x", count: 10).joined(separator: ", ") + "]\n" }
        refuses(redefined)
    }

    func testSmallAliasUseParses() throws {
        let s = try ConfigSection.parse("a: &lr 1e-3\nb: *lr\nc: \"*lr is text\"\n# *lr in a comment\nd: |\n  *lr in a block\n" + laughs(levels: 3),
                                        source: "ok.yaml")
        XCTAssertEqual(try s.double("b", in: 0...1), 1e-3)
        XCTAssertEqual(try s.string("c"), "*lr is text")
        XCTAssertEqual(try s.string("d"), "*lr in a block\n")
    }

    func testUndefinedAliasIsAnError() {
        XCTAssertThrowsError(try ConfigSection.parse("a: *nowhere\n", source: "u.yaml")) { e in
            XCTAssertTrue("\(e)".contains("u.yaml: "), "\(e)")
        }
    }

    func testLargeTextIsRefused() {
        let text = String(repeating: "# padding\n", count: (YAMLLimits.maxFileBytes / 10) + 1)
        XCTAssertThrowsError(try ConfigSection.parse(text, source: "big.yaml")) { e in
            XCTAssertTrue("\(e)".contains("a config may have at most \(YAMLLimits.maxFileBytes) bytes"), "\(e)")
        }
    }
}

import Foundation

/// A parsed JSON value (RFC 8259). Objects keep the last value of a repeated key (as Python does).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    /// A string whose content (after unescaping) is not valid UTF-8. JSON forbids it, but one bad
    /// caption should cost one record, not the whole annotation file: the reader keeps going and
    /// lets the caller reject the entry. `offset` is the byte offset of the opening quote.
    case invalidUTF8String(offset: Int)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        return nil
    }
}

/// Where and why JSON text is malformed. `offset` is a 0-based byte offset; line and column are
/// 1-based (column counts bytes).
public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String { "byte \(offset) (line \(line), column \(column)): \(message)" }
}

/// A strict, bounds-checked JSON reader over bytes that reports the byte offset of the first
/// error (Foundation's JSONSerialization only gives an approximate description on Linux). It
/// never traps: nesting is limited (`maxDepth`), numbers are validated against the JSON grammar,
/// strings must not contain raw control characters. A string value holding a lone UTF-16
/// surrogate escape (not valid Unicode) is `.invalidUTF8String`, so the caller rejects it by name
/// rather than storing a silently altered text (in object keys it becomes U+FFFD). A UTF-8
/// byte-order mark at the start is skipped.
///
/// `forEachElement(ofTopLevelArrayIn:)` streams the elements of a top-level array, so an
/// annotation file with millions of entries is never held as one giant value.
public enum JSONReader {
    public static let maxDepth = 256

    /// Parses a complete JSON document.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBufferPointer { buf in
            var p = Parser(buf)
            p.skipBOM()
            p.skipWhitespace()
            let v = try p.value(depth: 0)
            p.skipWhitespace()
            guard p.pos == buf.count else { throw p.error("unexpected data after the JSON value") }
            return v
        }
    }

    /// Calls `body(index, element)` for each element of a top-level array, in order. Throws a
    /// `JSONSyntaxError` for malformed text (elements before the error have been delivered) or
    /// when the top-level value is not an array; errors thrown by `body` propagate unchanged.
    public static func forEachElement(ofTopLevelArrayIn bytes: [UInt8],
                                      _ body: (Int, JSONValue) throws -> Void) throws {
        try bytes.withUnsafeBufferPointer { buf in
            var p = Parser(buf)
            p.skipBOM()
            p.skipWhitespace()
            guard p.pos < buf.count else { throw p.error("empty document (expected a JSON array)") }
            guard buf[p.pos] == UInt8(ascii: "[") else {
                throw p.error("the top-level value is not an array (expected '[')")
            }
            p.pos += 1
            p.skipWhitespace()
            var index = 0
            if p.peek() == UInt8(ascii: "]") {
                p.pos += 1
            } else {
                while true {
                    let v = try p.value(depth: 1)
                    try body(index, v)
                    index += 1
                    p.skipWhitespace()
                    guard let c = p.peek() else { throw p.error("unexpected end of data inside the top-level array") }
                    p.pos += 1
                    if c == UInt8(ascii: "]") { break }
                    guard c == UInt8(ascii: ",") else { p.pos -= 1; throw p.error("expected ',' or ']' after array element \(index - 1)") }
                    p.skipWhitespace()
                }
            }
            p.skipWhitespace()
            guard p.pos == buf.count else { throw p.error("unexpected data after the top-level array") }
        }
    }

    /// 1-based line and column (in bytes) of a byte offset.
    public static func lineColumn(of offset: Int, in bytes: UnsafeBufferPointer<UInt8>) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        let end = min(max(0, offset), bytes.count)
        var i = 0
        while i < end {
            if bytes[i] == 0x0A { line += 1; lineStart = i + 1 }
            i += 1
        }
        return (line, end - lineStart + 1)
    }

    struct Parser {
        let b: UnsafeBufferPointer<UInt8>
        var pos = 0
        /// Set by `stringBytes` when a \u escape was a lone surrogate (replaced by U+FFFD).
        var sawLoneSurrogate = false

        init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

        func error(_ message: String, at offset: Int? = nil) -> JSONSyntaxError {
            let o = offset ?? pos
            let (l, c) = JSONReader.lineColumn(of: o, in: b)
            return JSONSyntaxError(offset: o, line: l, column: c, message: message)
        }

        @inline(__always) func peek() -> UInt8? { pos < b.count ? b[pos] : nil }

        mutating func skipBOM() {
            if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { pos = 3 }
        }

        mutating func skipWhitespace() {
            while pos < b.count {
                switch b[pos] {
                case 0x20, 0x09, 0x0A, 0x0D: pos += 1
                default: return
                }
            }
        }

        func describe(_ c: UInt8) -> String {
            if c >= 0x20 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
            return String(format: "byte 0x%02X", c)
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard depth <= JSONReader.maxDepth else { throw error("nesting deeper than \(JSONReader.maxDepth) levels") }
            guard let c = peek() else { throw error("unexpected end of data (expected a value)") }
            switch c {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""):
                let start = pos
                sawLoneSurrogate = false
                let (bytes, _) = try stringBytes()
                if !sawLoneSurrogate, let s = String(validating: bytes, as: UTF8.self) { return .string(s) }
                return .invalidUTF8String(offset: start)
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("unexpected \(describe(c)) (expected a value)")
            }
        }

        mutating func literal(_ word: String) throws {
            let start = pos
            for ch in word.utf8 {
                guard pos < b.count, b[pos] == ch else { throw error("invalid literal (expected '\(word)')", at: start) }
                pos += 1
            }
        }

        mutating func number() throws -> JSONValue {
            let start = pos
            func digits() -> Int {
                var n = 0
                while pos < b.count, b[pos] >= 0x30, b[pos] <= 0x39 { pos += 1; n += 1 }
                return n
            }
            if peek() == UInt8(ascii: "-") { pos += 1 }
            guard let first = peek(), first >= 0x30, first <= 0x39 else { throw error("invalid number: expected a digit") }
            if first == 0x30 {
                pos += 1
                if let d = peek(), d >= 0x30, d <= 0x39 { throw error("invalid number: leading zero") }
            } else {
                _ = digits()
            }
            if peek() == UInt8(ascii: ".") {
                pos += 1
                guard digits() > 0 else { throw error("invalid number: expected a digit after '.'") }
            }
            if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
                pos += 1
                if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { pos += 1 }
                guard digits() > 0 else { throw error("invalid number: expected a digit in the exponent") }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<pos]), as: UTF8.self)
            guard let d = Double(text) else { throw error("invalid number", at: start) }
            return .number(d)
        }

        /// Reads a string starting at the opening quote; returns its unescaped bytes.
        mutating func stringBytes() throws -> ([UInt8], Int) {
            let open = pos
            pos += 1
            var out: [UInt8] = []
            var runStart = pos
            while true {
                guard pos < b.count else { throw error("unterminated string (opened at byte \(open))") }
                let c = b[pos]
                if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: b[runStart..<pos]))
                    pos += 1
                    return (out, open)
                }
                if c < 0x20 { throw error(String(format: "raw control character 0x%02X inside a string", c)) }
                if c != UInt8(ascii: "\\") { pos += 1; continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[runStart..<pos]))
                pos += 1
                guard pos < b.count else { throw error("unterminated escape sequence") }
                let e = b[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by \u + low surrogate to form a pair.
                        if pos + 1 < b.count, b[pos] == UInt8(ascii: "\\"), b[pos + 1] == UInt8(ascii: "u") {
                            let save = pos
                            pos += 2
                            let low = try hex4()
                            if (0xDC00...0xDFFF).contains(low) {
                                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                pos = save
                                scalar = 0xFFFD
                                sawLoneSurrogate = true
                            }
                        } else {
                            scalar = 0xFFFD
                            sawLoneSurrogate = true
                        }
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        scalar = 0xFFFD
                        sawLoneSurrogate = true
                    }
                    let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(s)).utf8))
                default:
                    throw error("invalid escape '\\\(describe(e))'", at: pos - 2)
                }
                runStart = pos
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= b.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[pos]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid hex digit in \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }

        mutating func array(depth: Int) throws -> JSONValue {
            pos += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard let c = peek() else { throw error("unexpected end of data inside an array") }
                if c == UInt8(ascii: "]") { pos += 1; return .array(items) }
                guard c == UInt8(ascii: ",") else { throw error("unexpected \(describe(c)) (expected ',' or ']')") }
                pos += 1
            }
        }

        mutating func object(depth: Int) throws -> JSONValue {
            pos += 1
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard let q = peek() else { throw error("unexpected end of data inside an object") }
                guard q == UInt8(ascii: "\"") else { throw error("unexpected \(describe(q)) (expected a string key)") }
                let (keyBytes, _) = try stringBytes()
                let key = String(decoding: keyBytes, as: UTF8.self)
                skipWhitespace()
                guard let colon = peek() else { throw error("unexpected end of data (expected ':')") }
                guard colon == UInt8(ascii: ":") else { throw error("unexpected \(describe(colon)) (expected ':')") }
                pos += 1
                skipWhitespace()
                members[key] = try value(depth: depth + 1)
                skipWhitespace()
                guard let c = peek() else { throw error("unexpected end of data inside an object") }
                if c == UInt8(ascii: "}") { pos += 1; return .object(members) }
                guard c == UInt8(ascii: ",") else { throw error("unexpected \(describe(c)) (expected ',' or '}')") }
                pos += 1
            }
        }
    }
}

/// Minimal JSON text writing helpers (stable output for files we write by hand).
public enum JSONText {
    /// A JSON string literal for `s` (escapes quotes, backslashes and control characters).
    public static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F || u.value == 0x2028 || u.value == 0x2029 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
        return out
    }
}

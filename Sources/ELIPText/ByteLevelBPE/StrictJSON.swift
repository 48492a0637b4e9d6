/// A small strict JSON reader for the two shapes the BPE tokenizer needs, a `{string: integer}`
/// object (vocab.json) and a single string (one input line), with errors that give the line.
/// Strings keep every code point as written (escapes included, surrogate pairs joined); lone
/// surrogates, raw control characters and bad escapes are errors, as are duplicate keys (Python's
/// json keeps the last one silently).
struct StrictJSONReader {
    struct Failure: Error {
        let line: Int
        let message: String
    }

    private let bytes: [UInt8]
    private var position = 0
    private(set) var line = 1

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Reads an object whose values are non-negative integers that fit in Int32.
    mutating func readStringToIntObject() throws -> [(key: String, value: Int32, line: Int)] {
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "an object '{'")
        var entries: [(key: String, value: Int32, line: Int)] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                skipWhitespace()
                let keyLine = line
                let key = try readString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':' after the key")
                skipWhitespace()
                let value = try readNonNegativeInt32(key: key)
                entries.append((key, value, keyLine))
                skipWhitespace()
                guard let c = peek() else { throw fail("unexpected end of file inside the object") }
                position += 1
                if c == UInt8(ascii: "}") { break }
                if c != UInt8(ascii: ",") { throw fail("expected ',' or '}' after a value, found \(describe(c))") }
            }
        }
        try expectEnd()
        return entries
    }

    /// Reads one JSON string value filling the whole input (surrounding whitespace allowed).
    mutating func readSingleString() throws -> String {
        skipWhitespace()
        let s = try readString()
        try expectEnd()
        return s
    }

    private mutating func expectEnd() throws {
        skipWhitespace()
        if let c = peek() { throw fail("unexpected \(describe(c)) after the JSON value") }
    }

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
            if c == 0x0A { line += 1 }
            position += 1
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard let c = peek() else { throw fail("unexpected end of file, expected \(what)") }
        guard c == byte else { throw fail("expected \(what), found \(describe(c))") }
        position += 1
    }

    private func fail(_ message: String) -> Failure { Failure(line: line, message: message) }

    private func describe(_ c: UInt8) -> String {
        (0x21...0x7E).contains(c) ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16, uppercase: true))"
    }

    private mutating func readNonNegativeInt32(key: String) throws -> Int32 {
        let start = position
        if peek() == UInt8(ascii: "-") { throw fail("the id of \(quoted(key)) is negative") }
        var value: Int64 = 0
        while let c = peek(), (0x30...0x39).contains(c) {
            value = value * 10 + Int64(c - 0x30)
            if value > Int64(Int32.max) { throw fail("the id of \(quoted(key)) is larger than \(Int32.max)") }
            position += 1
        }
        if position == start { throw fail("the value of \(quoted(key)) is not an integer id") }
        if position - start > 1 && bytes[start] == 0x30 { throw fail("the id of \(quoted(key)) has a leading zero") }
        if let c = peek(), c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            throw fail("the id of \(quoted(key)) is not an integer")
        }
        return Int32(value)
    }

    private func quoted(_ key: String) -> String { "\"\(key)\"" }

    private mutating func readString() throws -> String {
        try expect(UInt8(ascii: "\""), "a string '\"'")
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw fail("unexpected end of file inside a string") }
            position += 1
            switch c {
            case UInt8(ascii: "\""):
                // The input was validated as UTF-8 and escapes add whole scalars.
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek() else { throw fail("unexpected end of file after '\\'") }
                position += 1
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
                    var v = try readHex4()
                    if (0xDC00...0xDFFF).contains(v) { throw fail("lone low surrogate \\u\(hex(v)) in a string") }
                    if (0xD800...0xDBFF).contains(v) {
                        guard peek() == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u") else {
                            throw fail("lone high surrogate \\u\(hex(v)) in a string")
                        }
                        position += 2
                        let low = try readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else {
                            throw fail("high surrogate \\u\(hex(v)) is not followed by a low surrogate")
                        }
                        v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    }
                    UTF8.encode(Unicode.Scalar(v)!) { out.append($0) }  // surrogates excluded above
                default:
                    throw fail("invalid escape '\\\(describe(e))' in a string")
                }
            default:
                if c < 0x20 { throw fail("raw control character 0x\(String(c, radix: 16, uppercase: true)) inside a string (must be escaped)") }
                out.append(c)
            }
        }
    }

    private func hex(_ v: UInt32) -> String {
        let h = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    private mutating func readHex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek() else { throw fail("unexpected end of file in a \\u escape") }
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid hex digit \(describe(c)) in a \\u escape")
            }
            v = v * 16 + d
            position += 1
        }
        return v
    }
}

/// Writes `s` as a JSON string literal: UTF-8 kept, `"` `\` and control characters escaped.
public func jsonStringLiteral(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029 {
                // U+0085/2028/2029 escaped too, so a record stays on one physical line.
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Parses one line holding a JSON string (the `--jsonl` input of `elip tokenize`).
public func parseJSONStringLine(_ bytes: [UInt8]) throws -> String {
    var reader = StrictJSONReader(bytes)
    do {
        return try reader.readSingleString()
    } catch let f as StrictJSONReader.Failure {
        throw BPEFileError.badJSONString(reason: f.message)
    }
}

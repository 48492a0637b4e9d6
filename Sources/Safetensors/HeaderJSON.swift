/// Minimal JSON reader and writer for the safetensors header.
///
/// A hand parser rather than JSONSerialization because the header needs things that one cannot
/// give: object keys in file order (entries are listed as the file declares them), detection of
/// duplicate keys (JSONSerialization silently keeps one), exact integers, and byte offsets in
/// error messages. Nesting depth is bounded so that no input can exhaust the stack.
enum HeaderJSON {
    indirect enum Value {
        case object([Member])
        case array([Value])
        case string(String)
        case number(Number)
        case bool(Bool)
        case null

        /// Name of the JSON type, for error messages.
        var typeName: String {
            switch self {
            case .object: return "an object"
            case .array: return "an array"
            case .string: return "a string"
            case .number: return "a number"
            case .bool: return "a boolean"
            case .null: return "null"
            }
        }
    }

    struct Member {
        let key: String
        let value: Value
        /// Byte offset of the key inside the header, for error messages.
        let offset: Int
    }

    struct Number {
        /// The literal as written.
        let text: String
        /// The value if the literal is an integer without fraction or exponent that fits in Int.
        let integer: Int?
    }

    struct SyntaxError: Error {
        let offset: Int
        let message: String
    }

    static let maxDepth = 64

    /// Parses one JSON value followed only by whitespace (the writer pads the header with spaces).
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> Value {
        if let bad = firstInvalidUTF8(bytes) {
            throw SyntaxError(offset: bad, message: "header is not valid UTF-8 (bad byte 0x\(hex2(bytes[bad])))")
        }
        var parser = Parser(bytes: bytes)
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index < bytes.count {
            throw SyntaxError(offset: parser.index,
                              message: "unexpected \(describe(bytes[parser.index])) after the end of the JSON object")
        }
        return value
    }

    /// Offset of the first byte that is not part of a well-formed UTF-8 sequence, or nil.
    static func firstInvalidUTF8(_ b: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        let n = b.count
        func isCont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            j < n && b[j] >= lo && b[j] <= hi
        }
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var len = 0
            switch c {
            case 0xC2...0xDF: len = isCont(i + 1) ? 2 : 0
            case 0xE0: len = isCont(i + 1, 0xA0, 0xBF) && isCont(i + 2) ? 3 : 0
            case 0xE1...0xEC, 0xEE...0xEF: len = isCont(i + 1) && isCont(i + 2) ? 3 : 0
            case 0xED: len = isCont(i + 1, 0x80, 0x9F) && isCont(i + 2) ? 3 : 0
            case 0xF0: len = isCont(i + 1, 0x90, 0xBF) && isCont(i + 2) && isCont(i + 3) ? 4 : 0
            case 0xF1...0xF3: len = isCont(i + 1) && isCont(i + 2) && isCont(i + 3) ? 4 : 0
            case 0xF4: len = isCont(i + 1, 0x80, 0x8F) && isCont(i + 2) && isCont(i + 3) ? 4 : 0
            default: len = 0
            }
            if len == 0 { return i }
            i += len
        }
        return nil
    }

    static func hex2(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(hex2(byte))"
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        var depth = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        func error(_ message: String, at offset: Int? = nil) -> SyntaxError {
            SyntaxError(offset: offset ?? index, message: message)
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func parseValue() throws -> Value {
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of header, expected a value") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try parseObject()
            case UInt8(ascii: "["): return try parseArray()
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectLiteral("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
            default: throw error("unexpected \(describe(bytes[index])), expected a value")
            }
        }

        mutating func enter() throws {
            depth += 1
            if depth > HeaderJSON.maxDepth { throw error("JSON nested deeper than \(HeaderJSON.maxDepth) levels") }
        }

        mutating func parseObject() throws -> Value {
            try enter()
            index += 1  // '{'
            var members: [Member] = []
            skipWhitespace()
            if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
                index += 1
                depth -= 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of header inside an object") }
                guard bytes[index] == UInt8(ascii: "\"") else {
                    throw error("unexpected \(describe(bytes[index])), expected a string key")
                }
                let keyOffset = index
                let key = try parseString()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                    throw error(index < bytes.count ? "unexpected \(describe(bytes[index])), expected ':'"
                                                    : "unexpected end of header, expected ':'")
                }
                index += 1
                let value = try parseValue()
                members.append(Member(key: key, value: value, offset: keyOffset))
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of header inside an object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; break }
                throw error("unexpected \(describe(bytes[index])), expected ',' or '}'")
            }
            depth -= 1
            return .object(members)
        }

        mutating func parseArray() throws -> Value {
            try enter()
            index += 1  // '['
            var elements: [Value] = []
            skipWhitespace()
            if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
                index += 1
                depth -= 1
                return .array(elements)
            }
            while true {
                elements.append(try parseValue())
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of header inside an array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; break }
                throw error("unexpected \(describe(bytes[index])), expected ',' or ']'")
            }
            depth -= 1
            return .array(elements)
        }

        mutating func expectLiteral(_ word: StaticString) throws {
            let start = index
            let n = word.utf8CodeUnitCount
            guard bytes.count - index >= n else { throw error("invalid literal", at: start) }
            for k in 0..<n where bytes[index + k] != word.utf8Start[k] {
                throw error("invalid literal", at: start)
            }
            index += n
        }

        mutating func parseNumber() throws -> Number {
            let start = index
            var isInteger = true
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            func isDigit(_ i: Int) -> Bool {
                i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")
            }
            guard isDigit(index) else { throw error("invalid number", at: start) }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if isDigit(index) { throw error("invalid number (leading zero)", at: start) }
            } else {
                while isDigit(index) { index += 1 }
            }
            if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
                isInteger = false
                index += 1
                guard isDigit(index) else { throw error("invalid number (no digit after '.')", at: start) }
                while isDigit(index) { index += 1 }
            }
            if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
                isInteger = false
                index += 1
                if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
                    index += 1
                }
                guard isDigit(index) else { throw error("invalid number (no digit in exponent)", at: start) }
                while isDigit(index) { index += 1 }
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            return Number(text: text, integer: isInteger ? Int(text) : nil)
        }

        mutating func parseHex4() throws -> UInt32 {
            guard bytes.count - index >= 4 else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw error("invalid hex digit \(describe(c)) in \\u escape")
                }
                v = v << 4 | d
                index += 1
            }
            return v
        }

        mutating func parseString() throws -> String {
            let start = index
            index += 1  // opening quote
            var out: [UInt8] = []
            var runStart = index
            while true {
                guard index < bytes.count else { throw error("unterminated string", at: start) }
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                    index += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if c < 0x20 { throw error("unescaped control character \(describe(c)) in string") }
                if c != UInt8(ascii: "\\") { index += 1; continue }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                index += 1
                guard index < bytes.count else { throw error("unterminated string", at: start) }
                let e = bytes[index]
                index += 1
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
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                              bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("lone surrogate in \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("lone surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw error("lone surrogate in \\u escape")
                    }
                    // Not a surrogate, so always a valid scalar.
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(code)!)).utf8))
                default:
                    throw error("invalid escape \\\(describe(e).trimmingQuotes)")
                }
                runStart = index
            }
        }
    }

    // MARK: writing

    /// Appends `s` as a JSON string literal, escaping like serde_json (the official writer) so that
    /// the bytes we produce match Python's for the same tensors.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20: out.append(contentsOf: Array("\\u00\(hex2(c))".utf8))
            default: out.append(c)
            }
        }
        out.append(0x22)
    }

    static func appendInt(_ v: Int, to out: inout [UInt8]) {
        out.append(contentsOf: Array(String(v).utf8))
    }
}

private extension String {
    var trimmingQuotes: String {
        if hasPrefix("'") && hasSuffix("'") && count >= 2 { return String(dropFirst().dropLast()) }
        return self
    }
}

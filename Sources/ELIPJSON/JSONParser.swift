/// The project's one JSON reader: annotation files (ELIPShards), tokenizer vocabularies (ELIPText)
/// and safetensors headers all parse through it, each with its own strictness (`JSONParser.Options`).
///
/// Hand-written rather than Foundation's JSONSerialization because the callers need what that
/// cannot give: object members in file order with their byte offsets (duplicate keys are the
/// caller's decision, not silently merged), number literals as written (exact integers), the byte
/// offset, line and column of the first error, bounded nesting (no input can exhaust the stack),
/// and a choice between refusing or flagging strings that are not Unicode. It never traps.

/// A parsed JSON value. Objects keep their members in file order, repeated keys included.
public indirect enum JSONNode: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    /// A string whose content is not Unicode (invalid UTF-8 bytes or a lone surrogate escape);
    /// only produced with `Options.nonUnicodeStrings = .flag`. `offset` is the opening quote's.
    case nonUnicodeString(offset: Int)
    case array([JSONNode])
    case object([JSONMember])

    /// The JSON type's name, for error messages ("an object", "a string", ...).
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string, .nonUnicodeString: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

public struct JSONMember: Equatable, Sendable {
    public let key: String
    public let value: JSONNode
    /// Byte offset of the key's opening quote.
    public let offset: Int
}

/// A number literal as written, with its value.
public struct JSONNumber: Equatable, Sendable {
    public let text: String
    public let value: Double
    /// The literal's value if it has no fraction or exponent and fits in Int.
    public var integer: Int? {
        text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") })
            ? nil : Int(text)
    }
}

/// Where and why JSON text is malformed: 0-based byte offset, 1-based line and column (in bytes).
public struct JSONParseError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String { "byte \(offset) (line \(line), column \(column)): \(message)" }
}

public enum JSONParser {
    public struct Options: Sendable {
        public enum NonUnicodeStrings: Sendable {
            /// The document is malformed (invalid UTF-8 anywhere, or a lone surrogate escape).
            case reject
            /// The string becomes `.nonUnicodeString` so that one bad caption costs one record,
            /// not the whole file; in object keys invalid text becomes U+FFFD.
            case flag
        }
        public var maxDepth: Int
        public var nonUnicodeStrings: NonUnicodeStrings
        /// Skip a UTF-8 byte-order mark at the start.
        public var skipsByteOrderMark: Bool

        public init(maxDepth: Int, nonUnicodeStrings: NonUnicodeStrings, skipsByteOrderMark: Bool) {
            self.maxDepth = maxDepth
            self.nonUnicodeStrings = nonUnicodeStrings
            self.skipsByteOrderMark = skipsByteOrderMark
        }

        /// Files written by people and tools (annotations): BOM allowed, bad strings flagged.
        public static let lenient = Options(maxDepth: 256, nonUnicodeStrings: .flag, skipsByteOrderMark: true)
        /// Machine-written formats that must be exactly valid (vocabularies, headers).
        public static let strict = Options(maxDepth: 256, nonUnicodeStrings: .reject, skipsByteOrderMark: false)
    }

    /// Parses one complete JSON document (a value and surrounding whitespace only).
    public static func parse(_ bytes: UnsafeRawBufferPointer, options: Options) throws -> JSONNode {
        var p = try Parser(bytes, options)
        guard p.pos < bytes.count else { throw p.error("unexpected end of data (the document is empty)") }
        let v = try p.value(depth: 0)
        try p.expectEnd()
        return v
    }

    public static func parse(_ bytes: [UInt8], options: Options) throws -> JSONNode {
        try bytes.withUnsafeBytes { try parse($0, options: options) }
    }

    /// Calls `body(index, element)` for each element of a top-level array, in order, so that a
    /// file with millions of entries is never held as one value. Elements before a syntax error
    /// have been delivered; errors thrown by `body` propagate unchanged.
    public static func forEachElement(ofTopLevelArrayIn bytes: UnsafeRawBufferPointer, options: Options,
                                      _ body: (Int, JSONNode) throws -> Void) throws {
        var p = try Parser(bytes, options)
        guard let open = p.peek() else { throw p.error("empty document (expected a JSON array)") }
        guard open == UInt8(ascii: "[") else { throw p.error("the top-level value is not an array (expected '[')") }
        p.pos += 1
        p.skipWhitespace()
        if p.peek() == UInt8(ascii: "]") {
            p.pos += 1
        } else {
            var index = 0
            while true {
                p.skipWhitespace()
                try body(index, try p.value(depth: 1))
                index += 1
                p.skipWhitespace()
                guard let c = p.peek() else { throw p.error("unexpected end of data inside the top-level array") }
                if c == UInt8(ascii: "]") { p.pos += 1; break }
                guard c == UInt8(ascii: ",") else { throw p.error("unexpected \(describe(c)) (expected ',' or ']' after array element \(index - 1))") }
                p.pos += 1
            }
        }
        try p.expectEnd()
    }

    /// 1-based line and column (in bytes) of a byte offset.
    public static func lineColumn(of offset: Int, in bytes: UnsafeRawBufferPointer) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        let end = min(max(0, offset), bytes.count)
        for i in 0..<end where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return (line, end - lineStart + 1)
    }

    /// Offset of the first byte that is not part of a well-formed UTF-8 sequence, or nil.
    public static func firstInvalidUTF8(_ b: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        let n = b.count
        func isCont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool { j < n && b[j] >= lo && b[j] <= hi }
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

    /// A byte for a message: the character if printable ASCII, else its hex value.
    public static func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x\(hex(UInt32(c), digits: 2))"
    }

    static func hex(_ v: UInt32, digits: Int) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - h.count)) + h
    }

    struct Parser {
        let b: UnsafeRawBufferPointer
        let options: Options
        var pos = 0

        init(_ b: UnsafeRawBufferPointer, _ options: Options) throws {
            self.b = b
            self.options = options
            if options.nonUnicodeStrings == .reject, let bad = JSONParser.firstInvalidUTF8(b) {
                throw error("the text is not valid UTF-8 (bad byte 0x\(JSONParser.hex(UInt32(b[bad]), digits: 2)))", at: bad)
            }
            if options.skipsByteOrderMark, b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { pos = 3 }
            skipWhitespace()
        }

        func error(_ message: String, at offset: Int? = nil) -> JSONParseError {
            let o = offset ?? pos
            let (l, c) = JSONParser.lineColumn(of: o, in: b)
            return JSONParseError(offset: o, line: l, column: c, message: message)
        }

        @inline(__always) func peek() -> UInt8? { pos < b.count ? b[pos] : nil }

        mutating func skipWhitespace() {
            while pos < b.count, b[pos] == 0x20 || b[pos] == 0x09 || b[pos] == 0x0A || b[pos] == 0x0D { pos += 1 }
        }

        mutating func expectEnd() throws {
            skipWhitespace()
            if let c = peek() { throw error("unexpected \(JSONParser.describe(c)) after the JSON value") }
        }

        mutating func value(depth: Int) throws -> JSONNode {
            guard depth <= options.maxDepth else { throw error("JSON nested deeper than \(options.maxDepth) levels") }
            guard let c = peek() else { throw error("unexpected end of data (expected a value)") }
            switch c {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""):
                let start = pos
                let (bytes, loneSurrogate) = try stringBytes()
                // Under .reject the whole text was validated up front and lone surrogates throw.
                if !loneSurrogate, let s = String(validating: bytes, as: UTF8.self) { return .string(s) }
                return .nonUnicodeString(offset: start)
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error("unexpected \(JSONParser.describe(c)) (expected a value)")
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let start = pos
            for k in 0..<word.utf8CodeUnitCount {
                guard pos < b.count, b[pos] == word.utf8Start[k] else { throw error("invalid literal (expected '\(word)')", at: start) }
                pos += 1
            }
        }

        mutating func number() throws -> JSONNumber {
            let start = pos
            func isDigit() -> Bool { pos < b.count && b[pos] >= 0x30 && b[pos] <= 0x39 }
            func digits() -> Int {
                var n = 0
                while isDigit() { pos += 1; n += 1 }
                return n
            }
            if peek() == UInt8(ascii: "-") { pos += 1 }
            guard isDigit() else { throw error("invalid number: expected a digit") }
            if b[pos] == 0x30 {
                pos += 1
                if isDigit() { throw error("invalid number: leading zero") }
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
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<pos]), as: UTF8.self)
            guard let v = Double(text) else { throw error("invalid number", at: start) }
            return JSONNumber(text: text, value: v)
        }

        /// Reads the string at the opening quote: its unescaped bytes, and whether it held a lone
        /// surrogate escape (replaced by U+FFFD; only possible when the options flag such strings).
        mutating func stringBytes() throws -> ([UInt8], loneSurrogate: Bool) {
            let open = pos
            pos += 1
            var out: [UInt8] = []
            var runStart = pos
            var loneSurrogate = false
            while true {
                guard pos < b.count else { throw error("unterminated string (opened at byte \(open))") }
                let c = b[pos]
                if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[runStart..<pos]))
                    pos += 1
                    return (out, loneSurrogate)
                }
                if c < 0x20 { throw error("raw control character 0x\(JSONParser.hex(UInt32(c), digits: 2)) inside a string (must be escaped)") }
                if c != UInt8(ascii: "\\") { pos += 1; continue }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[runStart..<pos]))
                pos += 1
                guard let e = peek() else { throw error("unterminated escape sequence") }
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
                    let escape = pos - 2
                    var scalar = try hex4()
                    var lone = false
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by \u + a low surrogate.
                        if pos + 1 < b.count, b[pos] == UInt8(ascii: "\\"), b[pos + 1] == UInt8(ascii: "u") {
                            let save = pos
                            pos += 2
                            let low = try hex4()
                            if (0xDC00...0xDFFF).contains(low) {
                                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                pos = save
                                lone = true
                            }
                        } else {
                            lone = true
                        }
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        lone = true
                    }
                    if lone {
                        if options.nonUnicodeStrings == .reject {
                            throw error("lone surrogate \\u\(JSONParser.hex(scalar, digits: 4)) in a string", at: escape)
                        }
                        loneSurrogate = true
                        scalar = 0xFFFD
                    }
                    UTF8.encode(Unicode.Scalar(scalar) ?? "\u{FFFD}") { out.append($0) }
                default:
                    throw error("invalid escape '\\\(JSONParser.describe(e).trimmingQuotes)' in a string", at: pos - 2)
                }
                runStart = pos
            }
        }

        mutating func hex4() throws -> UInt32 {
            var v: UInt32 = 0
            for _ in 0..<4 {
                guard let c = peek() else { throw error("truncated \\u escape") }
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid hex digit \(JSONParser.describe(c)) in a \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }

        mutating func array(depth: Int) throws -> JSONNode {
            pos += 1
            var items: [JSONNode] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard let c = peek() else { throw error("unexpected end of data inside an array") }
                if c == UInt8(ascii: "]") { pos += 1; return .array(items) }
                guard c == UInt8(ascii: ",") else { throw error("unexpected \(JSONParser.describe(c)) (expected ',' or ']')") }
                pos += 1
            }
        }

        mutating func object(depth: Int) throws -> JSONNode {
            pos += 1
            var members: [JSONMember] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard let q = peek() else { throw error("unexpected end of data inside an object") }
                guard q == UInt8(ascii: "\"") else { throw error("unexpected \(JSONParser.describe(q)) (expected a string key)") }
                let keyOffset = pos
                let key = String(decoding: try stringBytes().0, as: UTF8.self)
                skipWhitespace()
                guard let colon = peek() else { throw error("unexpected end of data (expected ':')") }
                guard colon == UInt8(ascii: ":") else { throw error("unexpected \(JSONParser.describe(colon)) (expected ':')") }
                pos += 1
                skipWhitespace()
                members.append(JSONMember(key: key, value: try value(depth: depth + 1), offset: keyOffset))
                skipWhitespace()
                guard let c = peek() else { throw error("unexpected end of data inside an object") }
                if c == UInt8(ascii: "}") { pos += 1; return .object(members) }
                guard c == UInt8(ascii: ",") else { throw error("unexpected \(JSONParser.describe(c)) (expected ',' or '}')") }
                pos += 1
            }
        }
    }
}

/// Line numbers of many byte offsets of one document (one pass to index the newlines).
public struct JSONLineIndex {
    private var newlineOffsets: [Int] = []

    public init(_ bytes: UnsafeRawBufferPointer) {
        for i in 0..<bytes.count where bytes[i] == 0x0A { newlineOffsets.append(i) }
    }

    /// 1-based line of a byte offset.
    public func line(of offset: Int) -> Int {
        var lo = 0, hi = newlineOffsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if newlineOffsets[mid] < offset { lo = mid + 1 } else { hi = mid }
        }
        return lo + 1
    }
}

private extension String {
    var trimmingQuotes: String {
        if hasPrefix("'") && hasSuffix("'") && count >= 2 { return String(dropFirst().dropLast()) }
        return self
    }
}

import ELIPJSON

/// The safetensors header's JSON: read through the project's shared reader (ELIPJSON) with the
/// strictness the format needs (valid UTF-8, no lone surrogates, no byte-order mark, bounded
/// nesting; members in file order with their offsets, so that the validator names duplicates),
/// and written byte-exact with the reference implementation (serde_json's escaping).
enum HeaderJSON {
    typealias Value = JSONNode
    typealias SyntaxError = JSONParseError

    static let maxDepth = 64
    static let options = JSONParser.Options(maxDepth: maxDepth, nonUnicodeStrings: .reject, skipsByteOrderMark: false)

    /// Parses one JSON value followed only by whitespace (the writer pads the header with spaces).
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> Value {
        try JSONParser.parse(bytes, options: options)
    }

    static func hex2(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
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

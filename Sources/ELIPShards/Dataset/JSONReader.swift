import ELIPJSON

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

/// Where and why JSON text is malformed (the shared reader's error).
public typealias JSONSyntaxError = JSONParseError

/// JSON string writing (the shared writer), under the name this module's users know.
public typealias JSONText = ELIPJSON.JSONText

/// Annotation files through the shared reader (ELIPJSON) with its lenient options: a UTF-8 BOM
/// is skipped, and a string value that is not Unicode (invalid UTF-8 or a lone surrogate escape)
/// becomes `.invalidUTF8String` so that the caller rejects that entry by name rather than the
/// file, or storing a silently altered text. Objects keep the last value of a repeated key (as
/// Python does).
///
/// `forEachElement(ofTopLevelArrayIn:)` streams the elements of a top-level array, so an
/// annotation file with millions of entries is never held as one giant value.
public enum JSONReader {
    public static let options = JSONParser.Options.lenient

    /// Parses a complete JSON document.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        JSONValue(try JSONParser.parse(bytes, options: options))
    }

    /// Calls `body(index, element)` for each element of a top-level array, in order. Throws a
    /// `JSONSyntaxError` for malformed text (elements before the error have been delivered) or
    /// when the top-level value is not an array; errors thrown by `body` propagate unchanged.
    public static func forEachElement(ofTopLevelArrayIn bytes: [UInt8],
                                      _ body: (Int, JSONValue) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw in
            try JSONParser.forEachElement(ofTopLevelArrayIn: raw, options: options) { try body($0, JSONValue($1)) }
        }
    }
}

extension JSONValue {
    /// The dictionary form of a parsed node: numbers as Double, the last of repeated keys.
    init(_ node: JSONNode) {
        switch node {
        case .null: self = .null
        case let .bool(b): self = .bool(b)
        case let .number(n): self = .number(n.value)
        case let .string(s): self = .string(s)
        case let .nonUnicodeString(offset): self = .invalidUTF8String(offset: offset)
        case let .array(items): self = .array(items.map(JSONValue.init))
        case let .object(members):
            var o: [String: JSONValue] = [:]
            for m in members { o[m.key] = JSONValue(m.value) }
            self = .object(o)
        }
    }
}

import ELIPJSON

/// The two JSON shapes the BPE tokenizer reads, through the shared strict reader: the
/// `{token: id}` object of vocab.json and one string a line (`elip tokenize --jsonl`). Strings keep
/// every code point as written; invalid UTF-8, lone surrogates, raw control characters and bad
/// escapes are errors. Repeated keys are returned in order: the caller names both lines.
enum VocabularyJSON {
    struct Failure: Error {
        let line: Int
        let message: String
    }

    /// The entries of an object whose values are non-negative integers that fit in Int32, in
    /// file order, each with the line of its key.
    static func tokenIds(_ bytes: [UInt8]) throws -> [(key: String, value: Int32, line: Int)] {
        try bytes.withUnsafeBytes { raw in
            let root: JSONNode
            do {
                root = try JSONParser.parse(raw, options: .strict)
            } catch let e as JSONParseError {
                throw Failure(line: e.line, message: e.message)
            }
            guard case let .object(members) = root else {
                throw Failure(line: 1, message: "the top-level value is \(root.typeName), not an object")
            }
            let lines = JSONLineIndex(raw)
            return try members.map { m in
                let line = lines.line(of: m.offset)
                let key = JSONText.quote(m.key)
                guard case let .number(n) = m.value else {
                    throw Failure(line: line, message: "the value of \(key) is \(m.value.typeName), not an integer id")
                }
                guard !n.text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else {
                    throw Failure(line: line, message: "the id of \(key) (\(n.text)) is not an integer")
                }
                guard let id = n.integer else {
                    throw Failure(line: line, message: "the id of \(key) (\(n.text)) is outside 0...\(Int32.max)")
                }
                guard id >= 0 else { throw Failure(line: line, message: "the id of \(key) is negative") }
                guard id <= Int(Int32.max) else { throw Failure(line: line, message: "the id of \(key) is larger than \(Int32.max)") }
                return (m.key, Int32(id), line)
            }
        }
    }
}

/// Parses one line holding a JSON string (the `--jsonl` input of `elip tokenize`).
public func parseJSONStringLine(_ bytes: [UInt8]) throws -> String {
    let node: JSONNode
    do {
        node = try JSONParser.parse(bytes, options: .strict)
    } catch let e as JSONParseError {
        throw BPEFileError.badJSONString(reason: e.message)
    }
    guard case let .string(s) = node else { throw BPEFileError.badJSONString(reason: "the line holds \(node.typeName)") }
    return s
}

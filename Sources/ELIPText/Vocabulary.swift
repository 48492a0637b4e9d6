import Foundation

/// A WordPiece vocabulary: one token per line, the line index (0-based) is the id.
///
/// Tokens are compared scalar by scalar, as Python compares `str`s: Swift's `String ==` treats
/// canonically equivalent strings (e.g. "é" and "e\u{301}") as equal, which Python does not.
public struct Vocabulary: Sendable {
    /// Tokens in id order.
    public let tokens: [String]
    /// Where the tokens came from (a file path, or a label for in-memory vocabularies); used in
    /// error messages.
    public let source: String
    private let idsByScalars: [[Unicode.Scalar]: Int32]

    /// Builds a vocabulary from tokens in id order. Empty or duplicated tokens are errors.
    public init(tokens: [String], source: String = "<in-memory vocabulary>") throws {
        guard !tokens.isEmpty else { throw TokenizerError.vocabularyEmpty(path: source) }
        guard tokens.count <= Int(Int32.max) else {
            throw TokenizerError.vocabularyUnreadable(path: source, reason: "more than \(Int32.max) tokens")
        }
        var ids: [[Unicode.Scalar]: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, token) in tokens.enumerated() {
            let key = Array(token.unicodeScalars)
            if key.isEmpty { throw TokenizerError.emptyToken(path: source, line: i + 1) }
            if let first = ids[key] {
                throw TokenizerError.duplicateToken(path: source, token: token,
                                                    firstLine: Int(first) + 1, line: i + 1)
            }
            ids[key] = Int32(i)
        }
        self.tokens = tokens
        self.source = source
        self.idsByScalars = ids
    }

    /// Loads a `vocab.txt`. Lines end in \n, \r\n or \r (Python's universal newlines, as
    /// HuggingFace reads the file); a final newline does not add a token.
    public init(contentsOfFile path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TokenizerError.vocabularyMissing(path: path)
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.vocabularyUnreadable(path: path, reason: error.localizedDescription)
        }
        guard !data.isEmpty else { throw TokenizerError.vocabularyEmpty(path: path) }
        // Strict decoding: `String(decoding:as:)` would silently repair bad bytes.
        guard let text = String(validating: data, as: UTF8.self) else {
            throw TokenizerError.vocabularyNotUTF8(path: path)
        }
        try self.init(tokens: Vocabulary.splitLines(text), source: path)
    }

    public var count: Int { tokens.count }

    /// The id of `token`, matched scalar by scalar.
    public func id(for token: String) -> Int32? {
        idsByScalars[Array(token.unicodeScalars)]
    }

    func id(forScalars scalars: [Unicode.Scalar]) -> Int32? {
        idsByScalars[scalars]
    }

    /// The token with id `id`, or nil when out of range.
    public func token(for id: Int32) -> String? {
        tokens.indices.contains(Int(id)) ? tokens[Int(id)] : nil
    }

    static func splitLines(_ text: String) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var previousWasCR = false
        for s in text.unicodeScalars {
            if s == "\n" && previousWasCR { previousWasCR = false; continue }
            previousWasCR = (s == "\r")
            if s == "\n" || s == "\r" {
                lines.append(String(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }
}

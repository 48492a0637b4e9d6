import ELIPJSON
import Foundation

/// A byte-level BPE model read from `vocab.json` ({token: id}) and `merges.txt` (`#version`
/// header, then one merge `A B` a line in rank order), as GPT-2 and RoBERTa ship them.
///
/// BPE runs on ids: every merge's parts and result must be vocabulary tokens (checked when
/// loading), so the pair (id A, id B) determines the merged token's id.
public struct BPEVocabulary: Sendable {
    /// Token of each id (a dictionary: HF allows gaps, and a stray huge id must not allocate).
    public let tokensById: [Int32: String]
    /// The vocabulary file (for messages).
    public let vocabularyPath: String
    /// Id of the byte-level symbol of each byte.
    let byteIds: [Int32]
    /// (left id << 32 | right id) -> (rank, merged id).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    private let idsByScalars: [[Unicode.Scalar]: Int32]

    public var count: Int { idsByScalars.count }

    /// The id of `token`, compared scalar by scalar (as Python compares str).
    public func id(for token: String) -> Int32? { idsByScalars[Array(token.unicodeScalars)] }

    public func token(for id: Int32) -> String? {
        tokensById[id]
    }

    public init(vocabularyJSON vocabPath: String, merges mergesPath: String) throws {
        let vocabText = try Self.readText(vocabPath)
        let entries: [(key: String, value: Int32, line: Int)]
        do {
            entries = try VocabularyJSON.tokenIds(Array(vocabText.utf8))
        } catch let f as VocabularyJSON.Failure {
            throw BPEFileError.malformedJSON(path: vocabPath, line: f.line, reason: f.message)
        }
        if entries.isEmpty { throw BPEFileError.malformedJSON(path: vocabPath, line: 1, reason: "the object has no tokens") }
        var ids: [[Unicode.Scalar]: Int32] = [:]
        var lineOfToken: [[Unicode.Scalar]: Int] = [:]
        var tokens: [Int32: String] = [:]
        tokens.reserveCapacity(entries.count)
        for e in entries {
            let key = Array(e.key.unicodeScalars)
            if let first = lineOfToken[key] {
                throw BPEFileError.duplicateToken(path: vocabPath, token: e.key, firstLine: first, line: e.line)
            }
            if let other = tokens[e.value] {
                throw BPEFileError.duplicateId(path: vocabPath, id: e.value, firstToken: other, token: e.key, line: e.line)
            }
            ids[key] = e.value
            lineOfToken[key] = e.line
            tokens[e.value] = e.key
        }
        self.idsByScalars = ids
        self.tokensById = tokens
        self.vocabularyPath = vocabPath

        var byteIds: [Int32] = []
        for b in 0..<256 {
            let symbol = ByteLevelAlphabet.scalarForByte[b]
            guard let id = ids[[symbol]] else {
                throw BPEFileError.missingByteSymbol(path: vocabPath, byte: UInt8(b), symbol: String(symbol))
            }
            byteIds.append(id)
        }
        self.byteIds = byteIds
        self.merges = try Self.readMerges(mergesPath, vocabularyPath: vocabPath, ids: ids)
    }

    private static func readMerges(_ path: String, vocabularyPath: String,
                                   ids: [[Unicode.Scalar]: Int32]) throws -> [UInt64: (rank: Int32, merged: Int32)] {
        // Universal newlines, as Python's text-mode read gives HuggingFace.
        let lines = Vocabulary.splitLines(try readText(path))
        guard let header = lines.first, header.hasPrefix("#version") else {
            throw BPEFileError.missingVersionHeader(path: path, firstLine: lines.first ?? "")
        }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        merges.reserveCapacity(lines.count)
        var lineOfPair: [UInt64: Int] = [:]
        for (index, text) in lines.enumerated().dropFirst() {
            let lineNumber = index + 1
            // Python's str.split(): runs of whitespace separate the two parts.
            let parts = text.unicodeScalars.split(whereSeparator: TextUnicode.isPythonSpace).map { Array($0) }
            guard parts.count == 2 else {
                throw BPEFileError.malformedMerge(path: path, line: lineNumber,
                    reason: parts.isEmpty ? "empty line (one merge 'A B' a line expected)"
                                          : "\(parts.count) parts in \(JSONText.quote(text)) (one merge 'A B' a line expected)")
            }
            func lookup(_ scalars: [Unicode.Scalar]) throws -> Int32 {
                guard let id = ids[scalars] else {
                    throw BPEFileError.mergeTokenNotInVocabulary(path: path, line: lineNumber,
                                                                  token: TextUnicode.string(scalars), vocabularyPath: vocabularyPath)
                }
                return id
            }
            let left = try lookup(parts[0]), right = try lookup(parts[1])
            let merged = try lookup(parts[0] + parts[1])
            let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
            if let first = lineOfPair[key] {
                throw BPEFileError.duplicateMerge(path: path, line: lineNumber, firstLine: first)
            }
            lineOfPair[key] = lineNumber
            merges[key] = (Int32(index - 1), merged)
        }
        return merges
    }

    private static func readText(_ path: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw BPEFileError.missing(path: path) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BPEFileError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard !data.isEmpty else { throw BPEFileError.empty(path: path) }
        guard let text = String(validating: data, as: UTF8.self) else { throw BPEFileError.notUTF8(path: path) }
        return text
    }
}

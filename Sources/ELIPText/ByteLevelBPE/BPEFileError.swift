import ELIPJSON
import Foundation

/// Errors from loading a byte-level BPE vocabulary (vocab.json + merges.txt) or reading its
/// input. Each names the file and, where there is one, the line.
public enum BPEFileError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case missing(path: String)
    case unreadable(path: String, reason: String)
    case notUTF8(path: String)
    case empty(path: String)
    case malformedJSON(path: String, line: Int, reason: String)
    case duplicateToken(path: String, token: String, firstLine: Int, line: Int)
    case duplicateId(path: String, id: Int32, firstToken: String, token: String, line: Int)
    case missingSpecialToken(path: String, token: String)
    case missingByteSymbol(path: String, byte: UInt8, symbol: String)
    case missingVersionHeader(path: String, firstLine: String)
    case malformedMerge(path: String, line: Int, reason: String)
    case mergeTokenNotInVocabulary(path: String, line: Int, token: String, vocabularyPath: String)
    case duplicateMerge(path: String, line: Int, firstLine: Int)
    case badJSONString(reason: String)

    public var description: String {
        switch self {
        case .missing(let path): return "BPE file not found: \(path)"
        case .unreadable(let path, let reason): return "cannot read BPE file \(path): \(reason)"
        case .notUTF8(let path): return "BPE file \(path) is not valid UTF-8"
        case .empty(let path): return "BPE file \(path) is empty"
        case .malformedJSON(let path, let line, let reason):
            return "vocabulary \(path), line \(line): \(reason) (a JSON object {\"token\": id, ...} is expected)"
        case .duplicateToken(let path, let token, let firstLine, let line):
            return "vocabulary \(path), line \(line): token \(JSONText.quote(token)) already appears on line \(firstLine)"
        case .duplicateId(let path, let id, let firstToken, let token, let line):
            return "vocabulary \(path), line \(line): token \(JSONText.quote(token)) has id \(id), which \(JSONText.quote(firstToken)) already has"
        case .missingSpecialToken(let path, let token):
            return "vocabulary \(path) has no \(token) token (a RoBERTa/GPT-2 byte-level vocab.json is expected)"
        case .missingByteSymbol(let path, let byte, let symbol):
            return "vocabulary \(path) lacks the byte symbol \(JSONText.quote(symbol)) for byte 0x\(String(byte, radix: 16, uppercase: true)) (a byte-level BPE vocabulary has all 256)"
        case .missingVersionHeader(let path, let firstLine):
            return "merges file \(path), line 1: expected the '#version: ...' header, found \(JSONText.quote(firstLine)) (HuggingFace skips line 1 unread, so a file without it would lose its first merge)"
        case .malformedMerge(let path, let line, let reason):
            return "merges file \(path), line \(line): \(reason)"
        case .mergeTokenNotInVocabulary(let path, let line, let token, let vocabularyPath):
            return "merges file \(path), line \(line): token \(JSONText.quote(token)) is not in the vocabulary \(vocabularyPath) (mismatched vocab.json and merges.txt?)"
        case .duplicateMerge(let path, let line, let firstLine):
            return "merges file \(path), line \(line): the same merge is already on line \(firstLine)"
        case .badJSONString(let reason):
            return "not a JSON string: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

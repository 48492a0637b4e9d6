import Foundation

/// Errors from loading a vocabulary or configuring text encoding. Every message names the file
/// or the value at fault so a user can act on it.
public enum TokenizerError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case vocabularyMissing(path: String)
    case vocabularyUnreadable(path: String, reason: String)
    case vocabularyNotUTF8(path: String)
    case vocabularyEmpty(path: String)
    case emptyToken(path: String, line: Int)
    case duplicateToken(path: String, token: String, firstLine: Int, line: Int)
    case missingSpecialToken(path: String, token: String)
    case maxLengthTooSmall(maxLength: Int, minimum: Int, framing: String)

    public var description: String {
        switch self {
        case .vocabularyMissing(let path):
            return "vocabulary file not found: \(path)"
        case .vocabularyUnreadable(let path, let reason):
            return "cannot read vocabulary file \(path): \(reason)"
        case .vocabularyNotUTF8(let path):
            return "vocabulary file \(path) is not valid UTF-8"
        case .vocabularyEmpty(let path):
            return "vocabulary file \(path) is empty"
        case .emptyToken(let path, let line):
            return "vocabulary file \(path): line \(line) is empty (one token per line expected)"
        case .duplicateToken(let path, let token, let firstLine, let line):
            return "vocabulary file \(path): token \(debugToken(token)) on line \(line) duplicates line \(firstLine)"
        case .missingSpecialToken(let path, let token):
            return "vocabulary file \(path) has no \(token) token (a BERT WordPiece vocabulary is expected)"
        case .maxLengthTooSmall(let maxLength, let minimum, let framing):
            return "max length \(maxLength) is too small for \(framing) framing (minimum \(minimum))"
        }
    }

    public var errorDescription: String? { description }
}

/// Shows invisible or odd scalars in a token as \u{...} so duplicate reports are readable.
private func debugToken(_ token: String) -> String {
    var out = "\""
    for s in token.unicodeScalars {
        if s.isASCII, s.value >= 0x20, s.value != 0x7F { out.unicodeScalars.append(s) }
        else if !s.isASCII, s.properties.generalCategory != .format,
                s.properties.generalCategory != .control,
                s.properties.generalCategory != .spaceSeparator { out.unicodeScalars.append(s) }
        else { out += "\\u{\(String(s.value, radix: 16, uppercase: true))}" }
    }
    return out + "\""
}

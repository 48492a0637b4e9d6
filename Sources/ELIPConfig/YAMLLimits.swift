import Foundation
import Yams

/// Limits on a configuration file before the YAML library sees it.
///
/// YAML aliases let a few hundred bytes name gigabytes ("billion laughs": each anchor lists the
/// previous one nine times), and the parser expands them when it builds values (and hashes an
/// alias used as a mapping key in full), so a bound must be known before parsing. A FIFO or device
/// named as a config would block the read forever, and a huge file is not a config.
public enum YAMLLimits {
    /// Largest config file read (configs are a few KB; the largest shipped one is under 4 KB).
    public static let maxFileBytes = 4 << 20

    /// The UTF-8 text of a config file: a regular file (checked before opening, so a FIFO never
    /// blocks) of at most `maxFileBytes`.
    public static func readText(_ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ConfigError(file: path, message: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ConfigError(file: path, message: "not a regular file (a config must be a YAML or JSON file)")
        }
        guard Int(info.st_size) <= maxFileBytes else {
            throw ConfigError(file: path, message: "\(info.st_size) bytes; a config file may have at most \(maxFileBytes) bytes")
        }
        // O_NONBLOCK: should the path be swapped for a FIFO after the check, open does not wait.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(file: path, message: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else {
            throw ConfigError(file: path, message: "not a regular file (a config must be a YAML or JSON file)")
        }
        let data: Data
        do { data = try handle.read(upToCount: maxFileBytes + 1) ?? Data() } catch {
            throw ConfigError(file: path, message: "cannot read the file (\(error.localizedDescription))")
        }
        guard data.count <= maxFileBytes else {
            throw ConfigError(file: path, message: "more than \(maxFileBytes) bytes; a config file may have at most \(maxFileBytes) bytes")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, message: "not UTF-8 text")
        }
        return text
    }

    /// Refuses text that is too large or whose aliases would expand it past `maxExpandedNodes`.
    ///
    /// The expansion is measured on a copy in which every possible alias (`*name` at the start of
    /// a token, even inside quotes or comments) is replaced by a unique plain word: that copy has
    /// no aliases, so the YAML parser builds it in linear time, and its plain-word nodes are
    /// exactly the real aliases. Counting nodes in document order, each alias counts as the node
    /// last anchored under its name (as the parser resolves it), so the count is exact and no
    /// alias is ever expanded.
    public static func check(_ text: String, source: String) throws {
        guard text.utf8.count <= maxFileBytes else {
            throw ConfigError(file: source, message: "\(text.utf8.count) bytes; a config may have at most \(maxFileBytes) bytes")
        }
        let (sanitized, placeholders) = replacingAliases(in: text)
        guard !placeholders.isEmpty else { return }
        // Without a parsed copy the expansion is unknown, so the text is not handed to the
        // parser either (its syntax error is the copy's, positions aside).
        let parsed: Node?
        do { parsed = try Parser(yaml: sanitized).singleRoot() } catch {
            throw ConfigError(file: source, message: "YAML syntax error (aliases shown as placeholder words): \(error)")
        }
        guard let root = parsed else { return }
        var anchored: [String: Int] = [:]
        let nodes = try expandedNodeCount(root, placeholders: placeholders, anchors: anchorPositions(in: sanitized),
                                          anchored: &anchored, source: source)
        guard nodes <= maxExpandedNodes else {
            throw ConfigError(file: source, message: "its YAML aliases (*name) expand it to more than \(maxExpandedNodes) values (anchors nested like a 'billion laughs' document); write the values out instead")
        }
    }

    /// Largest number of values (scalars, lists, mappings) a document may have once its aliases
    /// are expanded (a config has a few hundred).
    public static let maxExpandedNodes = 100_000

    /// `text` with every `*name` that may be an alias replaced by a unique word, and the map from
    /// those words to the names.
    static func replacingAliases(in text: String) -> (String, [String: String]) {
        let bytes = Array(text.utf8)
        func isNameByte(_ b: UInt8) -> Bool {  // libyaml's anchor characters
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
        // Anything that may end the previous token (a superset is harmless: more words replaced).
        let tokenEnds = Set<UInt8>([0x20, 0x09, 0x0A, 0x0D, 0xBF] + Array("[]{},:?-\"'".utf8))
        let nonce = UUID().uuidString.replacingOccurrences(of: "-", with: "")
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var placeholders: [String: String] = [:]
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "*"), i == 0 || tokenEnds.contains(bytes[i - 1]) {
                var j = i + 1
                while j < bytes.count, isNameByte(bytes[j]) { j += 1 }
                if j > i + 1 {
                    let word = "elipalias\(placeholders.count)x\(nonce)"
                    placeholders[word] = String(decoding: bytes[(i + 1)..<j], as: UTF8.self)
                    out.append(contentsOf: word.utf8)
                    i = j
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return (String(decoding: out, as: UTF8.self), placeholders)
    }

    /// Where each possible anchor (`&name` at the start of a token) is, as the parser's marks
    /// count (line and column from 1, in characters): a node carrying an anchor starts there.
    static func anchorPositions(in text: String) -> [Position: String] {
        var found: [Position: String] = [:]
        let chars = Array(text.unicodeScalars)
        var line = 1, column = 1, i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "&", i == 0 || " \t\r\n[]{},:?-\u{FEFF}".unicodeScalars.contains(chars[i - 1]) {
                var j = i + 1
                while j < chars.count, chars[j].isASCII, chars[j].properties.isAlphabetic || ("0"..."9").contains(chars[j]) || chars[j] == "-" || chars[j] == "_" { j += 1 }
                if j > i + 1 { found[Position(line: line, column: column)] = String(String.UnicodeScalarView(chars[(i + 1)..<j])) }
            }
            // libyaml's line breaks: LF, CR LF, CR, NEL, LS, PS.
            let isBreak = c == "\n" || (c == "\r" && (i + 1 == chars.count || chars[i + 1] != "\n")) || c == "\u{85}" || c == "\u{2028}" || c == "\u{2029}"
            if isBreak { line += 1; column = 1 } else { column += 1 }
            i += 1
        }
        return found
    }

    struct Position: Hashable { let line: Int, column: Int }

    /// Nodes of `node` with aliases expanded, saturating just above `maxExpandedNodes`; `anchored`
    /// holds the expanded size of each anchor defined so far (a node's anchor counts once the node
    /// is complete, as the parser registers it).
    static func expandedNodeCount(_ node: Node, placeholders: [String: String], anchors: [Position: String],
                                  anchored: inout [String: Int], source: String) throws -> Int {
        func add(_ a: Int, _ b: Int) -> Int { min(a + b, maxExpandedNodes + 1) }
        var count = 1
        switch node {
        case .scalar(let s):
            if s.style == .plain, let name = placeholders[s.string] {
                // An alias whose anchor was not found is refused: the count must never be low.
                guard let size = anchored[name] else { throw ConfigError(file: source, message: "YAML alias *\(name) (line \(s.mark?.line ?? 0)): no anchor &\(name) before it") }
                count = size
            }
        case .sequence(let seq):
            for child in seq { count = add(count, try expandedNodeCount(child, placeholders: placeholders, anchors: anchors, anchored: &anchored, source: source)) }
        case .mapping(let map):
            for (k, v) in map {
                count = add(count, try expandedNodeCount(k, placeholders: placeholders, anchors: anchors, anchored: &anchored, source: source))
                count = add(count, try expandedNodeCount(v, placeholders: placeholders, anchors: anchors, anchored: &anchored, source: source))
            }
        case .alias:
            break
        }
        if let mark = node.mark, let anchor = anchors[Position(line: mark.line, column: mark.column)] { anchored[anchor] = count }
        return count
    }
}

import ArgumentParser
import ELIPText
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let defaultVocabulary = "assets/bert-base-uncased-vocab.txt"

    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text lines from stdin with the BERT WordPiece tokenizer; one JSON array of ids per line.",
        discussion: """
        Output matches HuggingFace's Python BertTokenizer (uncased) on the same vocabulary.

        albef: ALBEF's pre_caption cleaning (unless --no-clean), then [CLS] tokens with no [SEP], \
        truncated to --max-length (default \(BertTokenizer.albefMaxLength)): the text input of ALBEF pre-training.
        bert:  no cleaning, [CLS] tokens [SEP], truncated only when --max-length is given.

        Example: echo 'A dog on a skateboard.' | elip tokenize
        """
    )

    enum Style: String, ExpressibleByArgument, CaseIterable {
        case albef, bert
    }

    @Option(help: ArgumentHelp("WordPiece vocabulary, one token per line.", valueName: "file"))
    var vocab: String = TokenizeCommand.defaultVocabulary

    @Option(help: "Framing: albef ([CLS] tokens, captions cleaned) or bert ([CLS] tokens [SEP]).")
    var style: Style = .albef

    @Option(help: ArgumentHelp("Maximum sequence length, special tokens included (albef default: \(BertTokenizer.albefMaxLength); bert default: no limit).",
                               valueName: "n"))
    var maxLength: Int?

    @Flag(help: "albef style: skip ALBEF's pre_caption cleaning (bert style never cleans).")
    var noClean = false

    func validate() throws {
        let minimum = style == .albef ? 1 : 2  // room for [CLS] (and [SEP])
        if let n = maxLength, n < minimum {
            throw ValidationError("--max-length must be at least \(minimum) for --style \(style.rawValue) (got \(n)).")
        }
    }

    func run() throws {
        if vocab == Self.defaultVocabulary && !FileManager.default.fileExists(atPath: vocab) {
            throw TokenizeCommandError("""
                vocabulary not found at \(vocab) (relative to \(FileManager.default.currentDirectoryPath)): \
                run `make setup` in the elip checkout to download it, or pass --vocab FILE.
                """)
        }
        let tokenizer = try BertTokenizer(vocabularyFile: vocab)
        let framing: TextFraming = style == .albef ? .albef : .bert
        let limit = maxLength ?? (style == .albef ? BertTokenizer.albefMaxLength : nil)
        let clean = style == .albef && !noClean

        var out = ""
        out.reserveCapacity(1 << 16)
        var lines = StrictLineReader(FileHandle.standardInput)
        while let (number, bytes) = try lines.next() {
            // readLine would replace invalid bytes with U+FFFD and tokenise something else.
            guard let line = String(validating: bytes, as: UTF8.self) else {
                flush(&out)
                throw TokenizeCommandError("standard input, line \(number): not valid UTF-8 (byte \(StrictLineReader.firstInvalidByte(bytes)) of the line); nothing after it was tokenised")
            }
            let text = clean ? preCaption(line) : line
            let ids = try tokenizer.encode(text, framing: framing, maxLength: limit)
            out += "["
            out += ids.map(String.init).joined(separator: ",")
            out += "]\n"
            if out.utf8.count >= 1 << 16 { flush(&out) }
        }
        flush(&out)
    }

    private func flush(_ out: inout String) {
        FileHandle.standardOutput.write(Data(out.utf8))
        out.removeAll(keepingCapacity: true)
    }
}

/// A run-time failure reported without the usage text (ValidationError would print it).
private struct TokenizeCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Lines of a file as raw bytes (without the "\n", and a "\r" before it), numbered from 1.
struct StrictLineReader {
    let handle: FileHandle
    var buffer: [UInt8] = []
    var start = 0
    var atEnd = false
    var number = 0

    init(_ handle: FileHandle) { self.handle = handle }

    mutating func next() throws -> (Int, [UInt8])? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                var line = Array(buffer[start..<nl])
                if line.last == 0x0D { line.removeLast() }
                start = nl + 1
                number += 1
                return (number, line)
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                number += 1
                return (number, line)
            }
            buffer.removeFirst(start)
            start = 0
            let chunk = try handle.read(upToCount: 1 << 16) ?? Data()
            if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
        }
    }

    /// 1-based position of the first byte that breaks UTF-8 in `bytes`.
    static func firstInvalidByte(_ bytes: [UInt8]) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var input = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &input) {
            case .valid(let scalar): offset += scalar.count
            case .error: return offset + 1
            case .emptyInput: return bytes.count
            }
        }
    }
}

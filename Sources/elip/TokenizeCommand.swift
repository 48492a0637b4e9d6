import ELIPJSON
import ArgumentParser
import ELIPText
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let defaultVocabulary = "assets/bert-base-uncased-vocab.txt"

    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text lines from stdin (BERT WordPiece or RoBERTa byte-level BPE); one JSON line of ids per line.",
        discussion: """
        albef/bert output matches HuggingFace's Python BertTokenizer (uncased) on the same vocabulary: \
        one JSON array of ids per line.

        albef: ALBEF's pre_caption cleaning (unless --no-clean), then [CLS] tokens with no [SEP], \
        truncated to --max-length (default \(BertTokenizer.albefMaxLength)): the text input of ALBEF pre-training. \
        bert:  no cleaning, [CLS] tokens [SEP], truncated only when --max-length is given. \
        roberta: byte-level BPE from --vocab-json and --merges (e.g. roberta-base's vocab.json and \
        merges.txt), as HuggingFace's Python RobertaTokenizer (METER's text tokenizer): no cleaning, \
        <s> tokens </s>; special tokens written in the text become their ids. One JSON object per \
        line: {"ids": [...], "tokens": [...]} where tokens are the token strings of ids (byte-level: \
        "Ġ" is a space). With --max-length N (at least 3) the text tokens are cut to N-2 \
        (truncation=True); with --pad also padded to N with <pad>, adding "attention_mask" and \
        "special_tokens_mask" (METER's get_text).

        --jsonl: each input line is a JSON string ("a\\nb"), so texts may hold newlines and any \
        code point; otherwise each raw line is one text.

        Examples: echo 'A dog on a skateboard.' | elip tokenize
                  echo '"A dog<mask>."' | elip tokenize --style roberta --vocab-json vocab.json --merges merges.txt --jsonl
        """
    )

    enum Style: String, ExpressibleByArgument, CaseIterable {
        case albef, bert, roberta
    }

    @Option(help: ArgumentHelp("albef/bert style: WordPiece vocabulary, one token per line (default: \(TokenizeCommand.defaultVocabulary)).",
                               valueName: "file"))
    var vocab: String?

    @Option(help: "Framing: albef ([CLS] tokens, captions cleaned), bert ([CLS] tokens [SEP]) or roberta (byte-level BPE, <s> tokens </s>).")
    var style: Style = .albef

    @Option(help: ArgumentHelp("roberta style: the BPE vocabulary, a JSON object {token: id}.", valueName: "file"))
    var vocabJson: String?

    @Option(help: ArgumentHelp("roberta style: the BPE merges, '#version' header then one 'A B' a line.", valueName: "file"))
    var merges: String?

    @Flag(help: "Each input line is a JSON string (texts with newlines or any code point).")
    var jsonl = false

    @Flag(help: "roberta style: pad to --max-length with <pad>; output attention_mask and special_tokens_mask too.")
    var pad = false

    @Option(help: ArgumentHelp("Maximum sequence length, special tokens included (albef default: \(BertTokenizer.albefMaxLength); bert and roberta default: no limit; roberta at least 3).",
                               valueName: "n"))
    var maxLength: Int?

    @Flag(help: "albef style: skip ALBEF's pre_caption cleaning (bert style never cleans).")
    var noClean = false

    func validate() throws {
        if style == .roberta {
            guard vocabJson != nil, merges != nil else {
                throw ValidationError("--style roberta needs --vocab-json FILE and --merges FILE.")
            }
            if let n = maxLength, n < RobertaTokenizer.minimumMaxLength {
                throw ValidationError("--max-length must be at least \(RobertaTokenizer.minimumMaxLength) for --style roberta (got \(n)).")
            }
            if pad && maxLength == nil { throw ValidationError("--pad needs --max-length.") }
            if noClean { throw ValidationError("--no-clean applies to --style albef only (roberta never cleans).") }
            if vocab != nil { throw ValidationError("--vocab is a WordPiece vocabulary; --style roberta reads --vocab-json and --merges.") }
            return
        }
        if vocabJson != nil || merges != nil || pad {
            throw ValidationError("--vocab-json, --merges and --pad apply to --style roberta only.")
        }
        let minimum = style == .albef ? 1 : 2  // room for [CLS] (and [SEP])
        if let n = maxLength, n < minimum {
            throw ValidationError("--max-length must be at least \(minimum) for --style \(style.rawValue) (got \(n)).")
        }
    }

    func run() throws {
        if style == .roberta { return try runRoberta() }
        let vocab = self.vocab ?? Self.defaultVocabulary
        if self.vocab == nil && !FileManager.default.fileExists(atPath: vocab) {
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
            let raw = try jsonl ? jsonText(bytes, line: number, flushing: &out) : line
            let text = clean ? preCaption(raw) : raw
            let ids = try tokenizer.encode(text, framing: framing, maxLength: limit)
            out += "["
            out += ids.map(String.init).joined(separator: ",")
            out += "]\n"
            if out.utf8.count >= 1 << 16 { flush(&out) }
        }
        flush(&out)
    }

    private func runRoberta() throws {
        let tokenizer = try RobertaTokenizer(vocabularyJSON: vocabJson!, merges: merges!)
        var out = ""
        out.reserveCapacity(1 << 16)
        var lines = StrictLineReader(FileHandle.standardInput)
        while let (number, bytes) = try lines.next() {
            guard let line = String(validating: bytes, as: UTF8.self) else {
                flush(&out)
                throw TokenizeCommandError("standard input, line \(number): not valid UTF-8 (byte \(StrictLineReader.firstInvalidByte(bytes)) of the line); nothing after it was tokenised")
            }
            let text = try jsonl ? jsonText(bytes, line: number, flushing: &out) : line
            var fields: [(String, [Int32])]
            if pad, let n = maxLength {
                let e = try tokenizer.encodePadded(text, maxLength: n)
                fields = [("ids", e.ids), ("attention_mask", e.attentionMask), ("special_tokens_mask", e.specialTokensMask)]
            } else {
                fields = [("ids", try tokenizer.encode(text, maxLength: maxLength))]
            }
            out += "{"
            for (name, values) in fields {
                out += "\"\(name)\":[" + values.map(String.init).joined(separator: ",") + "],"
            }
            out += "\"tokens\":[" + fields[0].1.map { JSONText.quote(tokenizer.token(for: $0)) }.joined(separator: ",") + "]}\n"
            if out.utf8.count >= 1 << 16 { flush(&out) }
        }
        flush(&out)
    }

    /// The text of a `--jsonl` line (a JSON string), or an error naming the line.
    private func jsonText(_ bytes: [UInt8], line number: Int, flushing out: inout String) throws -> String {
        do {
            return try parseJSONStringLine(bytes)
        } catch {
            flush(&out)
            throw TokenizeCommandError("standard input, line \(number): \(error); nothing after it was tokenised")
        }
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

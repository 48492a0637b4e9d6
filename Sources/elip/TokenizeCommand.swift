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
        while let line = readLine(strippingNewline: true) {
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

import ELIPEval
import Foundation

/// Refuses an output path that is one of the command's inputs: writing there would replace a
/// file the user asked to read (a checkpoint, an annotation file, an image) with the result.
///
/// Files are compared by identity (device and inode, following symlinks), so `./x`, `a/../x`, a
/// symlink or a hard link to an input are all caught; an output that does not exist yet cannot be
/// an input.
enum OutputGuard {
    struct Input {
        let option: String
        let path: String
        init(_ option: String, _ path: String?) {
            self.option = option
            self.path = path ?? ""
        }
    }

    /// The files an evaluation reads besides its data: the weights, the checkpoint folder's
    /// optimizer state and trainer.json, the config and the vocabulary.
    static func inputs(of checkpoint: EvalCheckpoint, config: String?, vocab: String?) -> [Input] {
        [Input("--checkpoint", checkpoint.weightsPath),
         Input("--checkpoint", checkpoint.folder?.appendingPathComponent("optimizer.safetensors").path),
         Input("--checkpoint", checkpoint.folder?.appendingPathComponent("trainer.json").path),
         Input("--config", config), Input("--vocab", vocab ?? checkpoint.vocabulary)]
    }

    static func identity(_ path: String) -> (UInt64, UInt64)? {
        var s = stat()
        guard !path.isEmpty, stat(path, &s) == 0 else { return nil }
        return (UInt64(s.st_dev), UInt64(s.st_ino))
    }

    /// Throws when `output` (given as `option`) is the same file as an input.
    static func check(_ output: String?, option: String = "--out", inputs: [Input]) throws {
        guard let output, let out = identity(output) else { return }
        for input in inputs where !input.path.isEmpty {
            if let id = identity(input.path), id == out {
                let same = input.path == output ? "" : " (\(input.path))"
                throw EvalCommandError("\(option) \(output) is the same file as \(input.option)\(same): it would be overwritten; choose another output path")
            }
        }
    }

    /// Throws when `output` is a file in `folder` or its subfolders (a dataset's or reference
    /// case's own files: manifest, shards, expected values).
    static func check(_ output: String?, option: String = "--out", filesIn folder: String, what: String) throws {
        guard let output, identity(output) != nil,
              let names = FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] else { return }
        try check(output, option: option, against: names.map { (folder as NSString).appendingPathComponent($0) }, what: what)
    }

    /// Throws when `output` is one of many input files (e.g. every image of an evaluation).
    static func check(_ output: String?, option: String = "--out", against files: [String], what: String) throws {
        guard let output, let out = identity(output) else { return }
        for f in files where identity(f).map({ $0 == out }) ?? false {
            throw EvalCommandError("\(option) \(output) is \(what) \(f): it would be overwritten; choose another output path")
        }
    }
}

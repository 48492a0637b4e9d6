import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import Foundation

/// What `eval-ve` and `eval-nlvr2` share: the options after the task's own, and the report.
struct ClassificationEvalOptions: ParsableArguments {
    @Option(help: "Task config (default: the one recorded in the checkpoint).")
    var config: String?
    @Option(help: "Write the metrics as JSON to this file.")
    var out: String?
    @Option(help: "WordPiece vocabulary (default: the config's data.vocab, else assets/bert-base-uncased-vocab.txt).")
    var vocab: String?
    @Option(help: "Threads per rank for BLAS and the engine.")
    var threads: Int?
    @Flag(help: "No progress messages.")
    var quiet = false

    /// On rank 0: accuracy, confusion and majority baseline on stdout, and the JSON to --out.
    func report(_ r: ClassificationResult, task: String, unit: String, majority: String, checkpoint: String,
                weights ckpt: EvalCheckpoint, data: String, comm: Communicator) throws {
        guard comm.isRoot else { return }
        print(String(format: "%@ accuracy %.2f (%d / %d %@; %@ %.2f), %.1f s", task, r.accuracy, r.correct, r.samples, unit,
                     majority, r.majorityBaseline, r.seconds))
        print("confusion (rows label, columns prediction; \(r.labelNames.joined(separator: ", "))): \(r.confusion)")
        guard let out else { return }
        var extra: [String: Any] = ["checkpoint": checkpoint, "weights": ckpt.weightsPath, "data": data, "world_size": comm.size]
        if let step = ckpt.step { extra["step"] = step }
        let json = try JSONSerialization.data(withJSONObject: r.jsonObject(extra: extra), options: [.prettyPrinted, .sortedKeys])
        do { try json.write(to: URL(fileURLWithPath: out)) } catch {
            throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
        }
        print("wrote \(out)")
    }
}

import ArgumentParser
import ELIPEval
import ELIPImage
import ELIPTrain
import Foundation

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Training curves of a run (loss parts, learning rate, images/s) as a PNG.",
        discussion: """
        Reads RUN_DIR/metrics.jsonl (or a metrics file given directly). Skipped steps are left out of the loss lines; lines that do not decode are skipped with a warning; a step logged twice (a resumed run) keeps its later line.

        Example:
          elip plot runs/elip --out runs/elip/curves.png
        """
    )

    @Argument(help: "Run folder (with metrics.jsonl) or a metrics.jsonl file.")
    var runDir: String
    @Option(help: "Output PNG file.")
    var out: String

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDir, isDirectory: &isDir) else {
            throw EvalCommandError("\(runDir): no such run folder or metrics file")
        }
        let url = isDir.boolValue ? URL(fileURLWithPath: runDir).appendingPathComponent("metrics.jsonl") : URL(fileURLWithPath: runDir)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw EvalCommandError("\(url.path) does not exist: is \(runDir) a run folder of `elip train`?")
        }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("the metrics file", url.path)])
        let (records, warnings) = try TrainingPlot.readMetrics(url)
        for w in warnings.prefix(5) { fputs("warning: \(w)\n", stderr) }
        if warnings.count > 5 { fputs("warning: \(warnings.count - 5) more lines skipped\n", stderr) }
        guard let first = records.first, let last = records.last else {
            throw EvalCommandError("\(url.path) holds no metrics records")
        }
        let name = isDir.boolValue ? URL(fileURLWithPath: runDir).standardizedFileURL.lastPathComponent : url.path
        let skipped = records.filter(\.skipped).count
        let title = "run \(name): steps \(first.step)-\(last.step), \(records.count) records" + (skipped > 0 ? ", \(skipped) skipped" : "")
        let image = try TrainingPlot.render(records, title: title)
        do { try PNG.write(image, toFile: out) } catch { throw EvalCommandError("--out \(out): \(error)") }
        print("wrote \(out) (\(image.width)x\(image.height), \(records.count) records)")
    }
}

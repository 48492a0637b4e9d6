import ArgumentParser
import ELIPEval
import ELIPImage
import ELIPModel
import ELIPPruning
import ELIPTensor
import ELIPTrain
import Foundation

struct AnalyzePruningCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze-pruning",
        abstract: "Does the text guide the pruning? Object share of the kept tokens vs of the image.",
        discussion: """
        For every entry of an annotation file with object masks (`elip synth` writes them into \
        test.json as "mask"), runs the pruned ViT with the entry's first caption and reports, per \
        pruning stage, the share of object pixels under the kept patches, next to the share of \
        object pixels in the image (what random pruning would keep). Writes JSON with --out.
        """
    )
    @Option(help: "Checkpoint folder, run folder or state-dict file.") var checkpoint: String
    @Option(help: "Annotation JSON with \"mask\" entries.") var data: String
    @Option(help: "Folder the image and mask paths are relative to (default: the JSON's folder).") var imageRoot: String?
    @Option(help: "Config (default: the one stored with the checkpoint).") var config: String?
    @Option(help: "WordPiece vocabulary.") var vocab: String?
    @Option(help: "Analyse at most this many images.") var limit: Int = 1000
    @Option(help: "Write the result as JSON.") var out: String?
    @Option(help: "Threads for BLAS and the engine.") var threads: Int?
    @Option(help: "Also select with this scoring mode (look_ahead or inline) and report, per stage, the share of surviving patches both modes keep.")
    var compareScoring: String?

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1, got \(limit)") }
        try checkThreads(threads)
    }

    func run() throws {
        try configureThreads(threads)
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config) { fputs("warning: \($0)\n", stderr) }
        let model = try ckpt.loadModel((any TextGuidedPruningModel).self, for: "pruning analysis")
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab))
        let tokenizer = try loadTokenizer(vocab ?? ckpt.vocabulary)
        let folder = (data as NSString).deletingLastPathComponent
        let root = imageRoot ?? (folder.isEmpty ? "." : folder)
        guard let bytes = EvalFile.contents(data) else {
            throw EvalCommandError("\(data): cannot read the annotation file (\(EvalFile.reason(data)))")
        }
        guard let entries = (try? JSONSerialization.jsonObject(with: bytes)) as? [[String: Any]] else {
            throw EvalCommandError("\(data): not a JSON list of annotation entries")
        }
        guard !entries.isEmpty else { throw EvalCommandError("\(data): no entries") }
        // Image and mask paths stay inside the root, as for every evaluation's images.
        let confinement = try ImageRoot(root)
        var samples: [(image: RGBImage, caption: String, mask: RGBImage)] = []
        for (i, e) in entries.prefix(limit).enumerated() {
            guard let image = e["image"] as? String, let mask = e["mask"] as? String else {
                throw EvalCommandError("\(data): entry \(i) has no \"image\" and \"mask\" (masks come from elip synth's test.json)")
            }
            guard let caption = (e["caption"] as? String) ?? (e["caption"] as? [String])?.first,
                  !model.modelConfig.captionStyle.clean(caption).isEmpty else {
                throw EvalCommandError("\(data): entry \(i) (\(image)) has no caption with words (the caption guides the pruning)")
            }
            let what = "\(data): entry \(i)"
            samples.append((try EvalImage.read(confinement.file(image, what: what)), caption,
                            try EvalImage.read(confinement.file(mask, what: what))))
        }
        let other = try compareScoring.map { try PruneScoring(parsing: $0, setting: "--compare-scoring") }
        let r = try PruningAnalysis.run(model: model, tokenizer: tokenizer, samples: samples, compareScoring: other)
        print("scoring: \(model.pruning?.scoring.rawValue ?? "none")")
        print("images: \(r.images); object pixels in the image: \(String(format: "%.1f%%", 100 * r.imageObjectShare))")
        for (j, s) in r.keptObjectShare.enumerated() {
            print(String(format: "stage %d: object pixels under the kept tokens %.1f%% (%.2fx the image's share)",
                         j + 1, 100 * s, r.imageObjectShare > 0 ? s / r.imageObjectShare : 0))
        }
        if let other = r.otherScoring, let overlap = r.survivingOverlapWithOtherScoring {
            for (j, o) in overlap.enumerated() {
                print(String(format: "stage %d: %.1f%% of the surviving patches also survive with %@ scoring", j + 1, 100 * o, other))
            }
        }
        if let out {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(r).write(to: URL(fileURLWithPath: out))
        }
    }
}

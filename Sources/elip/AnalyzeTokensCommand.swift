import ArgumentParser
import ELIPEval
import ELIPImage
import ELIPModel
import ELIPTensor
import Foundation

struct AnalyzeTokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze-tokens",
        abstract: "Where [CLS] attention concentrates and patch tokens become redundant, per ViT layer (the paper's Figure 2(a)).",
        discussion: """
        Runs the model's vision encoder unpruned on the images of an annotation file and reports,
        per layer: (a) the entropy (nats) of the [CLS]-to-patch attention — the [CLS] query's
        softmax row over the patch keys, renormalised over the patches, averaged over heads and
        images; also divided by log(patches), 1 = uniform — and (b) the mean cosine similarity of
        all pairs of distinct patch tokens of the layer's output. With --baseline (e.g. the
        unpruned ALBEF trained alike, or the initial DeiT weights imported by import-weights) both
        models are measured on the same images and drawn side by side. Writes JSON (--out) and a
        PNG with the two curves over depth (--chart).
        """
    )
    @Option(help: "Checkpoint folder, run folder or state-dict file (e.g. the ELIP model).") var checkpoint: String
    @Option(help: "Config of --checkpoint (default: the one stored with it).") var config: String?
    @Option(help: "A second checkpoint to measure alike (e.g. the unpruned baseline).") var baseline: String?
    @Option(help: "Config of --baseline (default: the one stored with it).") var baselineConfig: String?
    @Option(help: "Annotation JSON (a list of entries with \"image\").") var data: String
    @Option(help: "Folder the image paths are relative to (default: the JSON's folder).") var imageRoot: String?
    @Option(help: "Measure at most this many images.") var limit: Int = 256
    @Option(help: "Images per forward pass.") var batch: Int = 16
    @Option(help: "Write the curves as JSON.") var out: String?
    @Option(help: "Write the curves as a PNG.") var chart: String?
    @Option(help: "Threads for BLAS and the engine.") var threads: Int?

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard (1...4096).contains(batch) else { throw ValidationError("--batch must be in 1...4096, got \(batch)") }
        guard out != nil || chart != nil else { throw ValidationError("give --out and/or --chart") }
        try checkThreads(threads)
    }

    func run() throws {
        try configureThreads(threads)
        var models: [(name: String, path: String, checkpoint: EvalCheckpoint, config: String?)] = []
        let warn: (String) -> Void = { fputs("warning: \($0)\n", stderr) }
        models.append(("checkpoint", checkpoint, try EvalCheckpoint.locate(checkpoint, configPath: config, warn: warn), config))
        if let baseline {
            models.append(("baseline", baseline, try EvalCheckpoint.locate(baseline, configPath: baselineConfig, warn: warn), baselineConfig))
        }
        let inputs = [OutputGuard.Input("--data", data)] + models.flatMap { OutputGuard.inputs(of: $0.checkpoint, config: $0.config, vocab: nil) }
        try OutputGuard.check(out, inputs: inputs)
        try OutputGuard.check(chart, option: "--chart", inputs: inputs)
        if let out, let chart, OutputGuard.identity(out).map({ id in OutputGuard.identity(chart).map { $0 == id } ?? false }) ?? (out == chart) {
            throw ValidationError("--out and --chart name the same file \(out)")
        }
        let paths = try imagePaths()
        var results: [(String, String, TokenRedundancy)] = []
        for m in models {
            let model = try m.checkpoint.loadModel((any TextGuidedPruningModel).self, for: "token analysis")
            let res = model.modelConfig.imageRes
            var batches: [Tensor] = []
            for start in stride(from: 0, to: paths.count, by: batch) {
                var pixels: [Float] = []
                let chunk = paths[start..<min(paths.count, start + batch)]
                for p in chunk { try EvalImage.load(p, res: res, into: &pixels) }
                batches.append(try Tensor(pixels, shape: [chunk.count, 3, res, res]))
            }
            let r = try TokenRedundancy.measure(model.prunableVisionEncoder, batches: batches)
            results.append((m.name, m.path, r))
            print("\(m.name) \(m.path): \(r.images) images, \(r.patchCosine.count) layers")
            print("layer  [CLS] attention entropy (nats, / log patches)  patch cosine")
            for i in r.patchCosine.indices {
                print(String(format: "%5d  %8.3f  %6.3f                               %8.3f", i, r.clsAttentionEntropy[i], r.normalizedEntropy[i], r.patchCosine[i]))
            }
        }
        if let out {
            let json: [String: Any] = [
                "entropy": "nats of the [CLS] query's attention over the patch keys (renormalised), mean over heads and images; normalized_entropy divides by log(patches)",
                "patch_cosine": "mean cosine similarity of distinct patch-token pairs of each layer's output, mean over images",
                "models": results.map { name, path, r in
                    ["name": name, "checkpoint": path, "images": r.images, "cls_attention_entropy": r.clsAttentionEntropy,
                     "normalized_entropy": r.normalizedEntropy, "patch_cosine": r.patchCosine] as [String: Any]
                },
            ]
            do { try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: out)) } catch {
                throw EvalCommandError("--out \(out): \(error)")
            }
            print("wrote \(out)")
        }
        if let chart {
            let image = try TokenRedundancyChart.render(results.map { ($0.0 == "checkpoint" ? "model" : "baseline", $0.2) },
                                                        title: "per ViT layer, \(results[0].2.images) images: [CLS] attention entropy and patch-token similarity")
            do { try PNG.write(image, toFile: chart) } catch { throw EvalCommandError("--chart \(chart): \(error)") }
            print("wrote \(chart) (\(image.width)x\(image.height))")
        }
    }

    /// The image files of the first --limit entries, confined to the image root.
    func imagePaths() throws -> [String] {
        let folder = (data as NSString).deletingLastPathComponent
        let root = try ImageRoot(imageRoot ?? (folder.isEmpty ? "." : folder))
        guard let bytes = EvalFile.contents(data) else {
            throw EvalCommandError("\(data): cannot read the annotation file (\(EvalFile.reason(data)))")
        }
        guard let entries = (try? JSONSerialization.jsonObject(with: bytes)) as? [[String: Any]] else {
            throw EvalCommandError("\(data): not a JSON list of annotation entries")
        }
        guard !entries.isEmpty else { throw EvalCommandError("\(data): no entries") }
        return try entries.prefix(limit).enumerated().map { i, e in
            guard let image = e["image"] as? String else { throw EvalCommandError("\(data): entry \(i) has no \"image\"") }
            return try root.file(image, what: "\(data): entry \(i)")
        }
    }
}

import ArgumentParser
import ELIPEval
import ELIPImage
import ELIPModel
import ELIPTensor
import Foundation
import Safetensors
import TorchCheckpoint

struct AnalyzeTokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze-tokens",
        abstract: "Where [CLS] attention concentrates and patch tokens become redundant, per ViT layer (the paper's Figure 2(a)).",
        discussion: """
        Runs the model's vision encoder unpruned on the images of an annotation file and reports, \
        per layer: (a) the entropy (nats) of the [CLS]-to-patch attention — the [CLS] query's \
        softmax row over the patch keys, renormalised over the patches, averaged over heads and \
        images; also divided by log(patches), 1 = uniform — and (b) the mean cosine similarity of \
        all pairs of distinct patch tokens of the layer's output. With --baseline (e.g. the \
        unpruned ALBEF trained alike, or the initial DeiT weights imported by import-weights) both \
        models are measured on the same images and drawn side by side. Writes JSON (--out) and a \
        PNG with the two curves over depth (--chart).

        With --vision-only WEIGHTS (the paper's Figure 1(a)): the ViT alone before vision-language \
        training — timm/DeiT weights (.safetensors or .pth/.bin, timm names; the position grid is \
        resized when its resolution differs) or a state dict of the same model before VL training \
        (e.g. import-weights output, a checkpoint or run folder; its visual_encoder.* tensors are \
        used) — is put in a copy of \
        --checkpoint's model, and per layer the KL divergence of the [CLS]-to-patch attention maps \
        is reported (kl_vision_only_vs_model, nats, a third chart): for each image, the [CLS] \
        query's attention over the patch keys averaged over heads and renormalised over the \
        patches, each ViT on its own tokens, then KL(P_model || P_vision_only) = \
        sum_k p_k log(p_k / q_k), averaged over the images. This direction is what is lost when the \
        vision-only map stands in for the vision-language model's, as a vision-only pruning rule \
        uses it. Both maps are smoothed as (1 - 1e-6) p + 1e-6 / patches (no infinite terms); \
        identical weights give exactly 0. The paper's Figure 1(a) shows such a per-layer discrepancy \
        between a vision-only ViT and a VL model's ViT to argue that vision-only pruning rules do \
        not fit VL pre-training; the KL direction and averaging here are this tool's choice. The file's ViT must have the model's shape \
        (depth, width, patch size): any other shape is an error.
        """
    )
    @Option(help: "Checkpoint folder, run folder or state-dict file (e.g. the ELIP model).") var checkpoint: String
    @Option(help: "Config of --checkpoint (default: the one stored with it).") var config: String?
    @Option(help: "A second checkpoint to measure alike (e.g. the unpruned baseline).") var baseline: String?
    @Option(help: "Config of --baseline (default: the one stored with it).") var baselineConfig: String?
    @Option(help: "Vision-only ViT weights to compare --checkpoint's attention with (timm/DeiT .safetensors/.pth, or a state dict, checkpoint or run folder with visual_encoder.*).") var visionOnly: String?
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
        let inputs = [OutputGuard.Input("--data", data)] + (visionOnly.map { [OutputGuard.Input("--vision-only", $0)] } ?? []) + models.flatMap { OutputGuard.inputs(of: $0.checkpoint, config: $0.config, vocab: nil) }
        try OutputGuard.check(out, inputs: inputs)
        try OutputGuard.check(chart, option: "--chart", inputs: inputs)
        if let out, let chart, OutputGuard.identity(out).map({ id in OutputGuard.identity(chart).map { $0 == id } ?? false }) ?? (out == chart) {
            throw ValidationError("--out and --chart name the same file \(out)")
        }
        let paths = try imagePaths()
        var results: [(String, String, TokenRedundancy)] = []
        var visionOnlyKL: [Double]?
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
            if m.name == "checkpoint", let visionOnly {
                let copy = try m.checkpoint.loadModel()
                try Self.loadVisionOnly(visionOnly, into: copy)
                guard let reference = copy as? any TextGuidedPruningModel else { throw EvalCommandError("\(copy.modelConfig.kind) models do not support token analysis") }
                let kl = try AttentionDiscrepancy.measure(model: model.prunableVisionEncoder, visionOnly: reference.prunableVisionEncoder, batches: batches)
                visionOnlyKL = kl
                print("KL(model || vision-only \(visionOnly)) of the [CLS]-to-patch attention, nats, per layer: "
                      + kl.map { String(format: "%.4g", $0) }.joined(separator: " "))
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
            var json: [String: Any] = [
                "entropy": "nats of the [CLS] query's attention over the patch keys (renormalised), mean over heads and images; normalized_entropy divides by log(patches)",
                "patch_cosine": "mean cosine similarity of distinct patch-token pairs of each layer's output, mean over images",
                "models": results.map { name, path, r in
                    ["name": name, "checkpoint": path, "images": r.images, "cls_attention_entropy": r.clsAttentionEntropy,
                     "normalized_entropy": r.normalizedEntropy, "patch_cosine": r.patchCosine] as [String: Any]
                },
            ]
            if let visionOnlyKL, let visionOnly {
                json["vision_only"] = visionOnly
                json["kl_vision_only_vs_model"] = visionOnlyKL
                json["kl_definition"] = "per layer, mean over images of KL(P_model || P_vision_only) in nats, P = the [CLS] query's attention over the patch keys averaged over heads, renormalised over the patches, smoothed as (1 - \(AttentionDiscrepancy.smoothing)) p + \(AttentionDiscrepancy.smoothing) / patches"
            }
            do { try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: out)) } catch {
                throw EvalCommandError("--out \(out): \(error)")
            }
            print("wrote \(out)")
        }
        if let chart {
            let image = try TokenRedundancyChart.render(results.map { ($0.0 == "checkpoint" ? "model" : "baseline", $0.2) }, visionOnlyKL: visionOnlyKL,
                                                        title: "per ViT layer, \(results[0].2.images) images: [CLS] attention entropy and patch-token similarity" + (visionOnlyKL == nil ? "" : "; KL of the [CLS] attention vs the vision-only ViT"))
            do { try PNG.write(image, toFile: chart) } catch { throw EvalCommandError("--chart \(chart): \(error)") }
            print("wrote \(chart) (\(image.width)x\(image.height))")
        }
    }

    /// Replaces the ViT of `model` with the weights of `path`: timm names (a DeiT file) or the
    /// model's own visual_encoder.* names (a state dict of the model before VL training).
    static func loadVisionOnly(_ path: String, into model: any TrainableModel) throws {
        let file: SafetensorsFile
        do {
            // A checkpoint or run folder: its model.safetensors (the newest valid checkpoint).
            var isFolder: ObjCBool = false
            let weights = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
                ? try EvalCheckpoint.locate(path, configPath: nil).weightsPath : path
            file = try WeightFile.open(weights).file
        } catch { throw EvalCommandError("--vision-only \(path): \(error)") }
        let prefix = "visual_encoder."
        guard model.parameters.entries.contains(where: { $0.name.hasPrefix(prefix) }) else {
            throw EvalCommandError("--vision-only: \(model.modelConfig.kind) models have no \(prefix)* ViT to replace")
        }
        let sourcePrefix: String
        if file.contains(prefix + "cls_token") { sourcePrefix = prefix } else if file.contains("cls_token") { sourcePrefix = "" } else {
            throw EvalCommandError("--vision-only \(path): holds neither timm ViT names (cls_token, pos_embed, blocks.N.*) nor a model state dict (visual_encoder.cls_token, ...)")
        }
        // Tensors no ViT parameter takes (e.g. blocks beyond the model's depth) would otherwise be
        // left out silently and the comparison made with a truncated ViT; a classifier head is fine.
        let parameterNames = Set(model.parameters.entries.map(\.name))
        let unused = file.names.filter { $0.hasPrefix(sourcePrefix) }.map { String($0.dropFirst(sourcePrefix.count)) }
            .filter { !parameterNames.contains(prefix + $0) && (!sourcePrefix.isEmpty || !($0.hasPrefix("head.") || $0.hasPrefix("head_dist."))) }
        guard unused.isEmpty else {
            throw EvalCommandError("--vision-only \(path): \(unused.count) ViT tensors have no place in the model's ViT (another depth or layout?): \(unused.prefix(5).map { sourcePrefix + $0 }.joined(separator: ", "))")
        }
        let missing: [String]
        do { missing = try PretrainedImport.loadViT(file, into: model.parameters, prefix: prefix, sourcePrefix: sourcePrefix) } catch {
            throw EvalCommandError("--vision-only \(path): the ViT does not have the model's shape: \(error)")
        }
        guard missing.isEmpty else {
            throw EvalCommandError("--vision-only \(path): \(missing.count) ViT tensors missing: \(missing.prefix(5).map { sourcePrefix + $0.dropFirst(prefix.count) }.joined(separator: ", "))")
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

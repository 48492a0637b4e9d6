import ArgumentParser
import ELIPEval
import ELIPImage
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import ELIPTrain
import Foundation

struct VisualizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visualize",
        abstract: "Picture of the vision tokens ELIP keeps for an image and its caption (PNG).",
        discussion: """
        Runs the text encoder and the pruned ViT on the image (eval transform: resize to image_res, bicubic) and draws one panel per pruning stage, with the original patches that survive up to that stage in colour and the merged (pruned) ones dimmed, plus a heat map of the fused query's attention at the first stage (what its selection ranks).

        Example:
          elip visualize --checkpoint runs/elip --image synth/images/000001.jpg \\
              --caption "a red circle at the top left" --out kept.png
        """
    )

    @Option(help: "Checkpoint folder, run folder (newest valid checkpoint) or ALBEF state dict (.safetensors).")
    var checkpoint: String
    @Option(help: "Image file (JPEG or PNG).")
    var image: String
    @Option(help: "The caption that guides the pruning.")
    var caption: String
    @Option(help: "Output PNG file.")
    var out: String
    @Option(help: "Model config (default: the one recorded in the checkpoint's trainer.json).")
    var config: String?
    @Option(help: "WordPiece vocabulary (default: the config's data.vocab, else assets/bert-base-uncased-vocab.txt).")
    var vocab: String?
    @Option(help: "Threads for BLAS and the engine.")
    var threads: Int?

    func validate() throws {
        try checkThreads(threads)
    }

    func run() throws {
        try configureThreads(threads)
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config) { fputs("warning: \($0)\n", stderr) }
        let model = try ckpt.loadModel((any TextGuidedPruningModel).self, for: "pruning pictures")
        guard let schedule = model.pruning else {
            throw EvalCommandError("\(ckpt.configSource): the model has no pruning schedule (img_prune); nothing to visualize")
        }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--image", image)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab))
        let tokenizer = try loadTokenizer(vocab ?? ckpt.vocabulary)
        let res = model.modelConfig.imageRes
        let picture = try EvalImage.transform(EvalImage.read(image), res: res)
        var pixels: [Float] = []
        ImageNormalization.append(pixels: picture.pixels, width: res, height: res, to: &pixels)
        let style = model.modelConfig.captionStyle
        let cleaned = style.clean(caption)
        guard !cleaned.isEmpty else { throw EvalCommandError("--caption is empty after cleaning") }
        let ids = try tokenizer.encode(cleaned, framing: style.framing, maxLength: min(30, model.modelConfig.maxTextPositions))
        let text = try TextBatch(ids: ids.map(Int.init), mask: [Int](repeating: 1, count: ids.count), batch: 1, length: ids.count)
        let trace = try PruningTrace.trace(model: model, image: try Tensor(pixels, shape: [1, 3, res, res]), text: text)
        let step = ckpt.step.map { ", step \($0)" } ?? ""
        let title = "ELIP token pruning for \"\(cleaned)\" (\(URL(fileURLWithPath: image).lastPathComponent)\(step), keeps \(schedule.keepCounts(patchCount: model.modelConfig.keepBase).map(String.init).joined(separator: "/")) of \(model.modelConfig.patchCount))"
        let rendered = try PruningPicture.render(image: picture, trace: trace, title: title)
        do { try PNG.write(rendered, toFile: out) } catch { throw EvalCommandError("--out \(out): \(error)") }
        for (j, patches) in trace.survivingPatches.enumerated() {
            print("stage \(j + 1) (layer \(trace.beginLayers[j])): \(trace.keptCounts[j]) tokens kept, \(patches.count)/\(trace.patchCount) original patches survive"
                  + (trace.mergedTokenKept[j] ? " (merged token kept)" : ""))
        }
        print("wrote \(out) (\(rendered.width)x\(rendered.height))")
    }
}

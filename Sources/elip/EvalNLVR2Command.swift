import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import ELIPTensor
import Foundation

struct EvalNLVR2Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-nlvr2",
        abstract: "NLVR2 accuracy of a fine-tuned checkpoint on a split (nlvr_dev.json / nlvr_test.json).",
        discussion: """
        Reads the split as NLVR.py does (both images <root>/<path> resized to image_res \
        bicubically, the sentence through pre_caption(s, 30), labels True 1 / False 0; an unknown \
        label is an error, not False), predicts the argmax of the online head and reports \
        accuracy, the confusion matrix and the majority-label baseline. Under mpirun rank r \
        evaluates the r-th contiguous block of the pairs: every pair exactly once (the official \
        sampler pads with repeats), the counts summed over ranks.

        Examples:
          elip eval-nlvr2 --checkpoint runs/nlvr2 --data nlvr_dev.json --image-root /data/nlvr2/images
          mpirun -np 4 elip eval-nlvr2 --checkpoint runs/nlvr2 --data nlvr_test.json --image-root /data/nlvr2/images --out test.json
        """
    )

    @Option(help: "Checkpoint folder, run folder (newest valid checkpoint) of `elip finetune --task nlvr2`, or a state dict with --config.")
    var checkpoint: String
    @Option(help: "NLVR2 annotation JSON: [{\"images\": [left, right], \"sentence\", \"label\": \"True\" | \"False\"}].")
    var data: String
    @Option(help: "Folder the image paths are relative to.")
    var imageRoot: String = "."
    @Option(help: "Pairs per forward.")
    var batch: Int = 16
    @OptionGroup var common: ClassificationEvalOptions

    func validate() throws {
        guard (1...(1 << 20)).contains(batch) else { throw ValidationError("--batch must be in [1, 1048576], got \(batch)") }
        try checkThreads(common.threads)
    }

    func run() throws {
        try configureThreads(common.threads)
        let comm = try Communicator.world()
        let say: (String) -> Void = { m in if comm.isRoot && !common.quiet { fputs(m + "\n", stderr) } }
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: common.config, defaultModel: ALBEFNLVRModel.kind.name) { w in
            if comm.isRoot { fputs("warning: \(w)\n", stderr) }
        }
        let tokenizer = try loadTokenizer(common.vocab ?? ckpt.vocabulary)
        let model = try ckpt.loadModel(ALBEFNLVRModel.self, for: "NLVR2 evaluation")
        let dataset = try NLVR2Dataset.load(annotation: data, imageRoot: imageRoot, cleaning: model.config.captionStyle)
        let inputs = [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: common.config, vocab: common.vocab)
        try OutputGuard.check(common.out, option: "--out", inputs: inputs)
        try OutputGuard.check(common.out, option: "--out", against: dataset.imagePaths, what: "an image of --data")
        say("eval-nlvr2: \(dataset.count) pairs, weights \(ckpt.weightsPath)" + (ckpt.step.map { " (step \($0))" } ?? "")
            + ", image_res \(model.config.imageRes), \(comm.size) rank(s)")
        let evaluator = NLVR2Evaluator(model: model, tokenizer: tokenizer, communicator: comm)
        evaluator.progress = { m in if !common.quiet && comm.isRoot { fputs(m + "\r", stderr) } }
        let r = try evaluator.evaluate(dataset, batchSize: batch)
        try common.report(r, task: "NLVR2", unit: "pairs", majority: "majority label", checkpoint: checkpoint, weights: ckpt, data: data, comm: comm)
        try comm.finalize()
    }
}

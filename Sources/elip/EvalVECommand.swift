import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import ELIPTensor
import Foundation

struct EvalVECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-ve",
        abstract: "SNLI-VE accuracy of a fine-tuned checkpoint on a split (ve_dev.json / ve_test.json).",
        discussion: """
        Reads the split as VE.py does (image <root>/<id>.jpg resized to image_res bicubically, \
        sentence through pre_caption(s, 30), labels entailment 2 / neutral 1 / contradiction 0), \
        predicts the argmax of the online head and reports accuracy, the confusion matrix and the \
        majority-class baseline. Under mpirun rank r evaluates the r-th contiguous block of the \
        entries: every sample exactly once (the official sampler pads with repeats), the counts \
        summed over ranks.

        Examples:
          elip eval-ve --checkpoint runs/ve --data ve_test.json --image-root /data/flickr30k-images
          mpirun -np 4 elip eval-ve --checkpoint runs/ve --data ve_dev.json --image-root /data/flickr30k-images --out dev.json
        """
    )

    @Option(help: "Checkpoint folder, run folder (newest valid checkpoint) of `elip finetune --task ve`, or a state dict with --config.")
    var checkpoint: String
    @Option(help: "SNLI-VE annotation JSON: [{\"image\": id without .jpg, \"sentence\", \"label\"}].")
    var data: String
    @Option(help: "Folder the images (<id>.jpg) are in.")
    var imageRoot: String = "."
    @Option(help: "Samples per forward (VE.yaml's batch_size_test: 32).")
    var batch: Int = 32
    @OptionGroup var common: ClassificationEvalOptions

    func validate() throws {
        guard (1...(1 << 20)).contains(batch) else { throw ValidationError("--batch must be in [1, 1048576], got \(batch)") }
        try checkThreads(common.threads)
    }

    func run() throws {
        try configureThreads(common.threads)
        let comm = try Communicator.world()
        let say: (String) -> Void = { m in if comm.isRoot && !common.quiet { fputs(m + "\n", stderr) } }
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: common.config, defaultModel: ALBEFVEModel.kind.name) { w in
            if comm.isRoot { fputs("warning: \(w)\n", stderr) }
        }
        let tokenizer = try loadTokenizer(common.vocab ?? ckpt.vocabulary)
        let model = try ckpt.loadModel(ALBEFVEModel.self, for: "SNLI-VE evaluation")
        let dataset = try VEDataset.load(annotation: data, imageRoot: imageRoot, cleaning: model.config.captionStyle)
        let inputs = [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: common.config, vocab: common.vocab)
        try OutputGuard.check(common.out, option: "--out", inputs: inputs)
        try OutputGuard.check(common.out, option: "--out", against: dataset.imagePaths, what: "an image of --data")
        say("eval-ve: \(dataset.count) samples, weights \(ckpt.weightsPath)" + (ckpt.step.map { " (step \($0))" } ?? "")
            + ", image_res \(model.config.imageRes), \(comm.size) rank(s)")
        let evaluator = VEEvaluator(model: model, tokenizer: tokenizer, communicator: comm)
        evaluator.progress = { m in if !common.quiet && comm.isRoot { fputs(m + "\r", stderr) } }
        let r = try evaluator.evaluate(dataset, batchSize: batch)
        try common.report(r, task: "SNLI-VE", unit: "samples", majority: "majority class", checkpoint: checkpoint, weights: ckpt, data: data, comm: comm)
        try comm.finalize()
    }
}

import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import ELIPTensor
import ELIPText
import ELIPTrain
import Foundation
import Safetensors

struct EvalRetrievalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-retrieval",
        abstract: "Image-text retrieval evaluation (ALBEF protocol; METER: every pair ranked by ITM): TR@1/5/10, IR@1/5/10, r_mean.",
        discussion: """
        Encodes every caption (text encoder) and image (unpruned ViT, resized to res x res bicubically), ranks by cosine similarity, re-scores each query's top --k-test candidates with the ITM head (positive logit; every other entry -100) and reports recall as ALBEF's itm_eval does. Equal scores rank by ascending candidate index. Under mpirun, feature batches and ITM rows (rank r: rows r, r + W, ...) are split round-robin and the results shared, bitwise equal to one process.

        METER (a config with data.merges): there are no unimodal features, so every image x every caption goes through the full model, the ViT pruned under that caption as the official compute_irtr_recall does, scored by the ITM match logit (a pre-trained model has no rank_output); --k-test does not apply. That is images x captions forwards: --max-images N ranks the first N images and their captions instead (a subset; --out records it as a deviation).

        Examples:
          elip eval-retrieval --checkpoint runs/elip --data synth/test.json --image-root synth
          mpirun -np 4 elip eval-retrieval --checkpoint runs/elip/checkpoints/step-00010000 \\
              --data coco_test.json --image-root /data/coco --k-test 256 --out coco.json
        """
    )

    @Option(help: "Checkpoint folder, run folder (newest valid checkpoint) or ALBEF state dict (.safetensors).")
    var checkpoint: String
    @Option(help: "Annotation JSON: [{\"image\": path, \"caption\": [..]}].")
    var data: String
    @Option(help: "Folder the annotation's image paths are relative to.")
    var imageRoot: String = "."
    @Option(help: "Model config (default: the one recorded in the checkpoint's trainer.json).")
    var config: String?
    @Option(help: "Candidates re-scored with the ITM head per query (ALBEF: 256 COCO, 128 Flickr30K).")
    var kTest: Int = 256
    @Option(help: "Image resolution (default: the config's image_res; position embeddings are resized).")
    var imageRes: Int?
    @Option(help: "Images, captions or ITM pairs per forward.")
    var batch: Int = 32
    @Option(help: "Pair-ranking models (METER): rank only the first N images and their captions (every pair goes through the full model; a subset, recorded as a deviation in --out).")
    var maxImages: Int?
    @Option(help: "Write the metrics as JSON to this file.")
    var out: String?
    @Option(help: "Write the ITM-rescored top-k of every row (i2t/t2i indices and scores) to this .safetensors file.")
    var saveScores: String?
    @Option(help: "WordPiece vocabulary (default: the config's data.vocab, else assets/bert-base-uncased-vocab.txt).")
    var vocab: String?
    @Option(help: "Threads per rank for BLAS and the engine.")
    var threads: Int?
    @Flag(help: "No progress messages.")
    var quiet = false

    func validate() throws {
        guard kTest >= 1 else { throw ValidationError("--k-test must be at least 1, got \(kTest)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        if let imageRes, imageRes < 1 { throw ValidationError("--image-res must be positive, got \(imageRes)") }
        try checkThreads(threads)
    }

    func run() throws {
        try configureThreads(threads)
        let comm = try Communicator.world()
        let say: (String) -> Void = { m in if comm.isRoot && !quiet { fputs(m + "\n", stderr) } }
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config) { w in if comm.isRoot { fputs("warning: \(w)\n", stderr) } }
        if let merges = ckpt.merges {
            // A byte-level BPE model (METER): every pair through the full model.
            let tokenizer = try RobertaTokenizer(vocabularyJSON: vocab ?? ckpt.vocabulary ?? "vocab.json", merges: merges)
            let model = try ckpt.loadModel((any PairMatchingModel).self, for: "pair-ranking retrieval", imageRes: imageRes)
            let dataset = try RetrievalDataset.load(annotation: data, imageRoot: imageRoot, cleaning: model.modelConfig.captionStyle.cleaning)
            let inputs = [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab)
            try OutputGuard.check(out, option: "--out", inputs: inputs)
            guard saveScores == nil else { throw EvalCommandError("--save-scores is for ITC-shortlist models; pair ranking writes the metrics only") }
            let evaluator = PairRankingEvaluator(model: model, tokenizer: tokenizer, communicator: comm)
            evaluator.progress = say
            var options = PairRankingEvaluator.Options()
            options.batchSize = batch
            options.maxImages = maxImages
            let result = try evaluator.evaluate(dataset, options: options)
            if comm.isRoot {
                print(Self.table(result))
                if let out {
                    var extra: [String: Any] = ["checkpoint": checkpoint, "weights": ckpt.weightsPath, "data": data, "image_root": imageRoot,
                                                "image_res": model.modelConfig.imageRes, "world_size": comm.size,
                                                "protocol": "every image x every caption through the full model (ViT pruned per caption), ITM match logit",
                                                "tie_rule": "equal scores rank by ascending candidate index"]
                    if let maxImages, maxImages < dataset.imagePaths.count {
                        extra["deviation"] = "subset: the first \(maxImages) of \(dataset.imagePaths.count) images and their captions"
                    }
                    if let step = ckpt.step { extra["step"] = step }
                    let json = try JSONSerialization.data(withJSONObject: result.jsonObject(extra: extra), options: [.prettyPrinted, .sortedKeys])
                    do { try json.write(to: URL(fileURLWithPath: out)) } catch {
                        throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
                    }
                    print("wrote \(out)")
                }
            }
            try comm.finalize()
            return
        }
        let tokenizer = try loadTokenizer(vocab ?? ckpt.vocabulary)
        let model = try ckpt.loadModel((any ImageTextRetrievalModel).self, for: "retrieval evaluation", imageRes: imageRes)
        let dataset = try RetrievalDataset.load(annotation: data, imageRoot: imageRoot, cleaning: model.modelConfig.captionStyle.cleaning)
        say("eval-retrieval: \(dataset.imagePaths.count) images, \(dataset.texts.count) captions, weights \(ckpt.weightsPath)"
            + (ckpt.step.map { " (step \($0))" } ?? "") + ", image_res \(model.modelConfig.imageRes), \(comm.size) rank(s)")
        let inputs = [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab)
        for (option, path) in [("--out", out), ("--save-scores", saveScores)] {
            try OutputGuard.check(path, option: option, inputs: inputs)
            try OutputGuard.check(path, option: option, against: dataset.imagePaths, what: "an image of --data")
        }
        if let out, let saveScores, URL(fileURLWithPath: out).standardizedFileURL == URL(fileURLWithPath: saveScores).standardizedFileURL {
            throw EvalCommandError("--out and --save-scores name the same file \(out): one would overwrite the other")
        }
        let evaluator = RetrievalEvaluator(model: model, tokenizer: tokenizer, communicator: comm)
        evaluator.progress = say
        var options = RetrievalEvaluator.Options()
        options.kTest = kTest
        options.batchSize = batch
        let result = try evaluator.evaluate(dataset, options: options)
        if comm.isRoot {
            print(Self.table(result))
            if let out {
                var extra: [String: Any] = ["checkpoint": checkpoint, "weights": ckpt.weightsPath, "data": data,
                                            "image_root": imageRoot, "image_res": model.modelConfig.imageRes,
                                            "world_size": comm.size,
                                            "tie_rule": "equal scores rank by ascending candidate index"]
                if let step = ckpt.step { extra["step"] = step }
                let json = try JSONSerialization.data(withJSONObject: result.jsonObject(extra: extra), options: [.prettyPrinted, .sortedKeys])
                do { try json.write(to: URL(fileURLWithPath: out)) } catch {
                    throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
                }
                print("wrote \(out)")
            }
            if let saveScores {
                do { try Self.writeScores(result, to: saveScores) } catch {
                    throw EvalCommandError("--save-scores \(saveScores): \(error)")
                }
                print("wrote \(saveScores)")
            }
        }
        try comm.finalize()
    }

    /// i2t_indices / t2i_indices [rows, k] (int64) and i2t_scores / t2i_scores [rows, k].
    static func writeScores(_ r: RetrievalResult, to path: String) throws {
        var w = SafetensorsWriter(metadata: ["producer": "elip eval-retrieval", "fill": "-100"])
        for (name, s, k) in [("i2t", r.imageToText, r.kImageToText), ("t2i", r.textToImage, r.kTextToImage)] {
            try w.add("\(name)_indices", int64s: s.rows.flatMap { $0.indices.map(Int64.init) }, shape: [s.rows.count, k])
            try w.add("\(name)_scores", floats: s.rows.flatMap(\.scores), shape: [s.rows.count, k])
        }
        try w.write(to: path)
    }

    static func table(_ r: RetrievalResult) -> String {
        let m = r.metrics
        func row(_ name: String, _ a: Double, _ b: Double, _ c: Double, _ mean: Double) -> String {
            name.padding(toLength: 8, withPad: " ", startingAt: 0) + [a, b, c, mean].map { String(format: "%8.2f", $0) }.joined()
        }
        return """
        retrieval: \(r.images) images, \(r.texts) captions, k_test \(r.kTest) (used \(r.kImageToText) i2t / \(r.kTextToImage) t2i), \(String(format: "%.1f", r.seconds)) s
                    R@1     R@5    R@10    mean
        \(row("TR", m.txtR1, m.txtR5, m.txtR10, m.txtRMean))
        \(row("IR", m.imgR1, m.imgR5, m.imgR10, m.imgRMean))
        r_mean  \(String(format: "%8.2f", m.rMean))
        """
    }
}

/// The WordPiece tokenizer from `path` (or the default vocabulary), with a hint when missing.
func loadTokenizer(_ path: String?) throws -> BertTokenizer {
    let file = path ?? "assets/bert-base-uncased-vocab.txt"
    do { return try BertTokenizer(vocabularyFile: file) } catch {
        throw EvalCommandError("vocabulary \(file): \(error)\nRun `make setup` to fetch it, or pass --vocab FILE.")
    }
}

/// A failure of eval-retrieval, visualize or plot after the arguments parsed (printed without
/// the usage text).
struct EvalCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

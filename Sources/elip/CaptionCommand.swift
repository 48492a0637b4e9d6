import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import ELIPTensor
import Foundation

struct CaptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caption",
        abstract: "Write a caption for every image with a BLIP checkpoint (COCO results JSON).",
        discussion: """
        BLIP's caption evaluation: each image resized to res x res (bicubic), the unpruned ViT, then the decoder from "[DEC] <prompt>" by beam search (HuggingFace semantics: --beams, --max-length and --min-length count tokens including [DEC] and the prompt) or, with --sample, nucleus sampling. The prompt's text is cut from the decoded caption, as BLIP does. The output is COCO's results format [{"image_id", "caption"}], which `elip eval-caption` scores.

        --data is a folder (every .jpg/.jpeg/.png in it; ids by BLIP's rule when all names follow it, else 1, 2, ... in name order, and each result carries its file_name), a COCO captions file ({"images": [{"id", "file_name"}], ...}: the same file then serves as eval-caption's --annotations) or a BLIP annotation list ([{"image": path, "image_id"?}]; without image_id, BLIP's rule takes the digits after the file name's last "_"). Under mpirun, batches are split round-robin and the captions are the same as one process's.

        Examples:
          elip caption --checkpoint runs/blip --data coco_karpathy_test_gt.json --image-root /data/coco --out captions.json
          mpirun -np 4 elip caption --checkpoint model_base_caption.safetensors --config configs/caption-blip.yaml \\
              --data coco_karpathy_test.json --image-root /data/coco --image-res 384 --out test_epoch0.json
        """
    )

    @Option(help: "Checkpoint folder, run folder (newest valid checkpoint) or BLIP state dict (.safetensors).")
    var checkpoint: String
    @Option(help: "Images to caption: a COCO captions file, a BLIP annotation list (see above) or a folder of .jpg/.png files.")
    var data: String
    @Option(help: "Folder the annotation's image paths are relative to (default: the current folder).")
    var imageRoot: String?
    @Option(help: "Write the captions here (COCO results JSON).")
    var out: String
    @Option(help: "Model config (default: the one recorded in the checkpoint's trainer.json).")
    var config: String?
    @Option(help: "Image resolution (default: the config's image_size; position embeddings are resized).")
    var imageRes: Int?
    @Option(help: "Text the decoder starts from (BLIP: \"a picture of \"); removed from the captions.")
    var prompt: String = "a picture of "
    @Option(help: "Beams of the beam search.")
    var beams: Int = 3
    @Option(help: "Longest sequence in tokens, [DEC] and prompt included.")
    var maxLength: Int = 20
    @Option(help: "Shortest sequence in tokens before [SEP] may end it, [DEC] and prompt included.")
    var minLength: Int = 5
    @Flag(help: "Nucleus sampling (top-k 50, --top-p, --repetition-penalty) instead of beam search.")
    var sample = false
    @Option(help: "Nucleus mass when sampling.")
    var topP: Double = 0.9
    @Option(help: "Repetition penalty when sampling (HuggingFace's: logits of tokens already present divided by it).")
    var repetitionPenalty: Double = 1.1
    @Option(help: "Seed of the sampling stream.")
    var seed: UInt64 = 0
    @Option(help: "Images per forward.")
    var batch: Int = 16
    @Option(help: "WordPiece vocabulary (default: the config's data.vocab, else assets/bert-base-uncased-vocab.txt).")
    var vocab: String?
    @Option(help: "Threads per rank for BLAS and the engine.")
    var threads: Int?
    @Flag(help: "No progress messages.")
    var quiet = false

    func validate() throws {
        // Each step scores beams x vocabulary candidates per image: thousands of beams would run
        // for hours with gigabytes of logits (BLIP uses 3).
        guard beams >= 1 else { throw ValidationError("--beams must be at least 1, got \(beams)") }
        guard beams <= 256 else { throw ValidationError("--beams must be at most 256, got \(beams)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        guard minLength >= 0 else { throw ValidationError("--min-length must not be negative, got \(minLength)") }
        guard maxLength >= 1, maxLength >= minLength else {
            throw ValidationError("--max-length must be at least 1 and at least --min-length (\(minLength)), got \(maxLength)")
        }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw ValidationError("--repetition-penalty must be a positive number, got \(repetitionPenalty)")
        }
        if let imageRes, imageRes < 1 { throw ValidationError("--image-res must be positive, got \(imageRes)") }
        try checkThreads(threads)
    }

    func run() throws {
        try configureThreads(threads)
        let comm = try Communicator.world()
        let say: (String) -> Void = { m in if comm.isRoot && !quiet { fputs(m + "\n", stderr) } }
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config) { w in if comm.isRoot { fputs("warning: \(w)\n", stderr) } }
        let tokenizer = try loadTokenizer(vocab ?? ckpt.vocabulary)
        let model = try ckpt.loadModel((any CaptionModel).self, for: "captioning", imageRes: imageRes)
        var isFolder: ObjCBool = false
        let images: CaptionImageSet
        if FileManager.default.fileExists(atPath: data, isDirectory: &isFolder), isFolder.boolValue {
            if let imageRoot { throw EvalCommandError("--image-root \(imageRoot): --data \(data) is a folder of images; the root applies to annotation files only") }
            images = try CaptionImageSet.folder(data)
        } else {
            images = try CaptionImageSet.load(annotation: data, imageRoot: imageRoot ?? ".")
        }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--data", data)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab))
        try OutputGuard.check(out, against: images.imagePaths, what: "an image of --data")
        let positions = model.modelConfig.maxTextPositions
        guard maxLength <= positions else {
            throw EvalCommandError("--max-length \(maxLength) exceeds the decoder's \(positions) positions (max_position_embeddings of \(ckpt.configSource))")
        }
        let promptLength = 1 + tokenizer.tokenIds(prompt).count
        guard promptLength < maxLength else {
            throw EvalCommandError("--prompt \"\(prompt)\" is \(promptLength) tokens with [DEC]: nothing left to generate under --max-length \(maxLength)")
        }
        say("caption: \(images.imagePaths.count) images, weights \(ckpt.weightsPath)" + (ckpt.step.map { " (step \($0))" } ?? "")
            + ", image_res \(model.modelConfig.imageRes), " + (sample ? "nucleus sampling (top-p \(topP))" : "\(beams) beams")
            + ", \(comm.size) rank(s)")
        var generator = CaptionGenerator(model: model, tokenizer: tokenizer, communicator: comm)
        generator.progress = say
        var options = CaptionGenerator.Options()
        options.prompt = prompt
        options.batchSize = batch
        options.decoding.beams = beams
        options.decoding.maxLength = maxLength
        options.decoding.minLength = minLength
        options.decoding.sample = sample
        options.decoding.topP = Float(topP)
        options.decoding.repetitionPenalty = Float(repetitionPenalty)
        options.decoding.seed = seed
        let captions = try generator.caption(images, options: options)
        if comm.isRoot {
            let json = try CaptionGenerator.resultsJSON(images, captions: captions)
            do { try json.write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
            }
            for (id, c) in zip(images.imageIds, captions).prefix(3) { print("\(id): \(c)") }
            print("wrote \(captions.count) captions to \(out)")
        }
        try comm.finalize()
    }
}

import ArgumentParser
import ELIPShards
import Foundation

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write the synthetic shapes corpus as JPEG files + ALBEF annotation JSON (train.json, test.json) + object masks.",
        discussion: """
        DIR/images/000001.jpg (quality 95), DIR/masks/000001.png (grey: 0 = background, k = object k), \
        DIR/train.json and DIR/test.json: [{"image": "images/000001.jpg", "caption": [paraphrases...]}]; \
        test entries also carry "mask" and "objects" (shape, colour, size word, centre, radius). \
        Downstream splits of the same scenes: DIR/ve_train.json, ve_test.json (SNLI-VE: per image an \
        entailed, a neutral and a contradicted statement), vqa_train.json / vqa_test.json (VQA: per \
        image three questions such as "what colour is the star?" or "how many circles are there?" \
        with 10 agreeing answers) and answer_list.json (every possible answer), nlvr2_train.json / \
        nlvr2_test.json (NLVR2: two pairs per scene of the split, statements such as "both images \
        contain a red circle", "the left image contains a blue star" or "the left image has more \
        circles than the right image", True/False balanced per statement form) and retrieval_train.json \
        (retrieval training: one {"image", "caption", "image_id"} per caption of a training image; \
        test.json is the held-out retrieval split). \
        Deterministic for a seed. Build LMDB shards from it with \
        `elip build-dataset --annotations DIR/train.json --image-root DIR --out SHARDS --shards N`.
        """
    )

    @Option(help: ArgumentHelp("Output folder.", valueName: "dir"))
    var out: String
    @Option(help: "Number of images.")
    var images: Int
    @Option(help: ArgumentHelp("Image side in pixels.", valueName: "px"))
    var size: Int = 256
    @Option(help: "Random seed (scenes and the test split).")
    var seed: UInt64 = 0
    @Option(help: "Fraction of the images in test.json.")
    var testFraction: Double = 0.1
    @Option(help: "Threads (default: all cores).")
    var workers: Int?
    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        if images < 1 { throw ValidationError("--images must be at least 1") }
        if size < 16 || size > 4096 { throw ValidationError("--size must be 16...4096") }
        if !(0...1).contains(testFraction) { throw ValidationError("--test-fraction must be within 0...1") }
        if let w = workers, w < 1 { throw ValidationError("--workers must be at least 1") }
    }

    func run() throws {
        var o = SyntheticCorpusWriter.Options(outputDirectory: out, images: images)
        o.size = size
        o.seed = seed
        o.testFraction = testFraction
        o.workers = workers ?? ProcessInfo.processInfo.activeProcessorCount
        o.showProgress = !quiet
        let s = try SyntheticCorpusWriter.write(o)
        print("wrote \(images) images (\(size) px, seed \(seed)) to \(out): train.json \(s.train), test.json \(s.test)")
    }
}

import Foundation
import XCTest

/// Issue 15, classes 12 and 18 (weights and evaluation inputs): non-finite weights are refused
/// on load, diff-weights counts NaN as a difference, outputs never replace inputs, image paths
/// stay inside --image-root, and empty captions, duplicate entries, a CLS-only pos_embed and
/// `--limit 0` are clear errors. One tiny ALBEF and one tiny BLIP run are trained for the class.
final class ReliabilityEvalTests: XCTestCase {
    static var folder: URL!
    static var albef: (run: String, config: String)!
    static var blip: (run: String, config: String)!
    static var annotations: String!

    override class func setUp() {
        super.setUp()
        folder = try! CLI.temporaryDirectory()
        albef = try! Tiny.train(.albef, folder: folder)
        blip = try! Tiny.train(.blip, folder: folder)
        annotations = try! Tiny.images(in: folder)
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: folder)
        super.tearDown()
    }

    var folder: URL { Self.folder }
    var root: String { Self.folder.path }
    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// The state dict of a run's only checkpoint.
    func weights(_ run: String) throws -> String {
        let checkpoints = URL(fileURLWithPath: run).appendingPathComponent("checkpoints")
        let step = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted().last)
        return checkpoints.appendingPathComponent(step).appendingPathComponent("model.safetensors").path
    }

    func fails(_ arguments: [String], _ needle: String, status: Int32 = 1, stdin: String? = nil, line: UInt = #line) throws {
        let r = try CLI.run(arguments, stdin: stdin)
        XCTAssertEqual(r.status, status, "\(arguments.prefix(1)): exit \(r.status)\n\(r.stdout)\(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.contains(needle), "\(arguments.prefix(1)): expected '\(needle)' in:\n\(r.stderr)", line: line)
    }

    // MARK: class 9

    /// --image-res is checked against the model (a multiple of the patch size, at most a 64 x 64
    /// patch grid) before anything grows: 8192 px ends at once with an error, for eval-retrieval
    /// and caption.
    func testImageResIsValidatedAgainstTheModel() throws {
        for (res, needle) in [("8192", "image_res: 8192 px makes a 1024 x 1024 grid of 8-px patches; at most 64 x 64 (512 px) is supported"),
                              ("36", "image_res: 36 must be a positive multiple of patch_size 8")] {
            let start = Date()
            try fails(["eval-retrieval", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", Self.annotations,
                       "--image-root", root, "--image-res", res], "--image-res \(res): ")
            try fails(["eval-retrieval", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", Self.annotations,
                       "--image-root", root, "--image-res", res], needle)
            XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        }
        try fails(["caption", "--checkpoint", Self.blip.run, "--vocab", Tiny.vocab, "--data", Self.annotations, "--image-root", root,
                   "--image-res", "8192", "--out", path("c.json")], "image_size: 8192 px makes a 512 x 512 grid of 16-px patches")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("c.json")))
    }

    /// caption: --max-length past the decoder's positions and absurd beam counts are refused up
    /// front (not after encoding every image, not hours later); --threads 0 is refused by the
    /// evaluation commands.
    func testCaptionLengthBeamsAndThreadsAreChecked() throws {
        let caption = ["caption", "--checkpoint", Self.blip.run, "--vocab", Tiny.vocab, "--data", Self.annotations!,
                       "--image-root", root, "--out", path("c.json")]
        try fails(caption + ["--max-length", "40", "--min-length", "35"], "--max-length 40 exceeds the decoder's 32 positions")
        try fails(caption + ["--beams", "5000"], "--beams must be at most 256, got 5000", status: 64)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("c.json")))
        try fails(["eval-retrieval", "--checkpoint", Self.albef.run, "--data", Self.annotations!, "--threads", "0"],
                  "--threads must be in [1, 4096], got 0", status: 64)
        try fails(["visualize", "--checkpoint", Self.albef.run, "--image", "x.png", "--caption", "x", "--out", "y.png", "--threads", "0"],
                  "--threads must be in [1, 4096], got 0", status: 64)
        try fails(["analyze-pruning", "--checkpoint", Self.albef.run, "--data", Self.annotations!, "--threads=-4"],
                  "--threads must be in [1, 4096], got -4", status: 64)
    }

    // MARK: class 12

    /// A NaN in one ViT weight (ALBEF) or an infinity in a queue (BLIP): every command that loads
    /// weights names the tensor and writes nothing.
    func testNonFiniteWeightsAreAnErrorOnLoad() throws {
        let nan = path("nan-albef.safetensors"), inf = path("inf-blip.safetensors")
        try TinySafetensors.plant(.nan, in: "visual_encoder.blocks.1.attn.qkv.weight", at: 5, source: weights(Self.albef.run), destination: nan)
        try TinySafetensors.plant(.infinity, in: "image_queue", at: 3, source: weights(Self.blip.run), destination: inf)
        let nanNeedle = "\(nan): visual_encoder.blocks.1.attn.qkv.weight: 1 of 768 values are not finite (e.g. nan)"
        let out = path("out-nan")
        let common = ["--config", Self.albef.config, "--checkpoint", nan, "--vocab", Tiny.vocab]
        try fails(["eval-retrieval"] + common + ["--data", Self.annotations, "--image-root", root, "--out", out], nanNeedle)
        try fails(["visualize"] + common + ["--image", path("images/img_1.png"), "--caption", "a square", "--out", out], nanNeedle)
        try fails(["analyze-pruning"] + common + ["--data", Self.annotations, "--out", out], nanNeedle)
        try fails(["train", "--config", Self.albef.config, "--init-weights", nan, "--out", out], nanNeedle)
        let infNeedle = "\(inf): image_queue: 1 of "
        let blipCommon = ["--config", Self.blip.config, "--checkpoint", inf, "--vocab", Tiny.vocab]
        try fails(["caption"] + blipCommon + ["--data", Self.annotations, "--image-root", root, "--out", out], infNeedle)
        try fails(["eval-retrieval"] + blipCommon + ["--data", Self.annotations, "--image-root", root, "--out", out], infNeedle)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "an output was written from non-finite weights")
    }

    func testDiffWeightsCountsNaNAsADifferenceAndRefusesEmptyComparisons() throws {
        let good = try weights(Self.albef.run), nan = path("diff-nan.safetensors")
        try TinySafetensors.plant(.nan, in: "itm_head.weight", source: good, destination: nan)
        let same = try CLI.run(["diff-weights", good, good])
        XCTAssertEqual(same.status, 0, same.stdout + same.stderr)
        for (a, b) in [(good, nan), (nan, nan)] {
            let r = try CLI.run(["diff-weights", a, b])
            XCTAssertEqual(r.status, 1, "NaN passed: \(r.stdout)")
            XCTAssertTrue(r.stdout.contains("itm_head.weight: not finite"), r.stdout)
        }
        let none = try CLI.run(["diff-weights", good, good, "--prefix", "no_such_tensor"])
        XCTAssertEqual(none.status, 1, none.stdout)
        XCTAssertTrue(none.stdout.contains("no tensors compared"), none.stdout)
        for tolerance in ["--tolerance=-1", "--tolerance=nan", "--tolerance=inf"] {
            try fails(["diff-weights", good, good, tolerance], "--tolerance must be a finite number >= 0", status: 64)
        }
    }

    // MARK: class 18

    /// import-weights with a pos_embed holding only [CLS] (no grid): an error naming the file,
    /// not a trap; a NaN in the ViT: refused, nothing written; --out equal to an input: refused.
    func testImportWeightsRefusesClsOnlyPosEmbedNaNAndOverwritingAnInput() throws {
        let state = try TinySafetensors.read(weights(Self.albef.run))
        let vitTensors = state.filter { $0.name.hasPrefix("visual_encoder.") }
            .map { t -> TinySafetensors.Tensor in var t = t; t.name = String(t.name.dropFirst("visual_encoder.".count)); return t }
        let bertTensors = state.filter { $0.name.hasPrefix("text_encoder.bert.") }
            .map { t -> TinySafetensors.Tensor in var t = t; t.name = "bert." + t.name.dropFirst("text_encoder.bert.".count); return t }
        let vit = path("vit.safetensors"), bert = path("bert.safetensors"), out = path("imported.safetensors")
        try TinySafetensors.write(vitTensors, to: vit)
        try TinySafetensors.write(bertTensors, to: bert)
        let ok = try CLI.run(["import-weights", "--config", Self.albef.config, "--vit", vit, "--bert", bert, "--out", out])
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)

        // The ViT at another resolution with only its [CLS] position left.
        let clsOnly = path("vit-cls.safetensors")
        try TinySafetensors.write(vitTensors.map { t in
            guard t.name == "pos_embed" else { return t }
            return TinySafetensors.Tensor(name: t.name, dtype: t.dtype, shape: [1, 1, t.shape[2]], bytes: t.bytes.prefix(4 * t.shape[2]))
        }, to: clsOnly)
        try fails(["import-weights", "--config", Self.albef.config, "--vit", clsOnly, "--bert", bert, "--out", path("cls.safetensors")],
                  "\(clsOnly): pos_embed: expected [1, 1 + grid*grid, D] with at least one grid position")
        let nanVit = path("vit-nan.safetensors")
        try TinySafetensors.plant(.nan, in: "blocks.0.mlp.fc1.weight", source: vit, destination: nanVit)
        try fails(["import-weights", "--config", Self.albef.config, "--vit", nanVit, "--bert", bert, "--out", path("nan.safetensors")],
                  "visual_encoder.blocks.0.mlp.fc1.weight: 1 of ", status: 64)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("cls.safetensors")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("nan.safetensors")))

        // embed-text loads a BERT the same way: a NaN in it is refused, not embedded.
        let bertJSON = path("bert_tiny.json"), nanBert = path("bert-nan.safetensors")
        let embedded = try CLI.run(["embed-text", "--bert-weights", bert, "--bert-config", bertJSON, "--vocab", Tiny.vocab,
                                    "--out", path("emb.safetensors")], stdin: "a red square\n")
        XCTAssertEqual(embedded.status, 0, embedded.stdout + embedded.stderr)
        try TinySafetensors.plant(.nan, in: "bert.encoder.layer.0.attention.self.query.weight", source: bert, destination: nanBert)
        try fails(["embed-text", "--bert-weights", nanBert, "--bert-config", bertJSON, "--vocab", Tiny.vocab, "--out", path("emb-nan.safetensors")],
                  "\(nanBert): encoder.layer.0.attention.self.query.weight: 1 of ", stdin: "a red square\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("emb-nan.safetensors")))

        let before = try Data(contentsOf: URL(fileURLWithPath: vit))
        try fails(["import-weights", "--config", Self.albef.config, "--vit", vit, "--bert", bert, "--out", path("./vit.safetensors")],
                  "is the same file as --vit")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: vit)), before, "--vit was overwritten")
    }

    /// Every command with --out refuses to write over one of its inputs, however the path is
    /// spelt (./, .., a symlink); the inputs stay byte for byte.
    func testOutputsNeverReplaceInputs() throws {
        let data = Self.annotations!, image = path("images/img_1.png")
        let link = path("link-to-annotations.json")
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: data)
        let trainerJSON = URL(fileURLWithPath: try weights(Self.albef.run)).deletingLastPathComponent().appendingPathComponent("trainer.json").path
        let protected = [data, image, trainerJSON, try weights(Self.blip.run)]
        let before = try protected.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        let albef = ["--checkpoint", Self.albef.run, "--vocab", Tiny.vocab]
        let blip = ["--checkpoint", Self.blip.run, "--vocab", Tiny.vocab]
        try fails(["eval-retrieval"] + albef + ["--data", data, "--image-root", root, "--out", path("images/../annotations.json")], "is the same file as --data")
        try fails(["eval-retrieval"] + albef + ["--data", data, "--image-root", root, "--out", link], "is the same file as --data")
        try fails(["eval-retrieval"] + albef + ["--data", data, "--image-root", root, "--save-scores", path("./images/img_1.png")], "is an image of --data")
        try fails(["eval-retrieval"] + albef + ["--data", data, "--image-root", root, "--out", trainerJSON], "is the same file as --checkpoint")
        try fails(["caption"] + blip + ["--data", data, "--image-root", root, "--out", data], "is the same file as --data")
        try fails(["caption", "--checkpoint", try weights(Self.blip.run), "--config", Self.blip.config, "--vocab", Tiny.vocab,
                   "--data", data, "--image-root", root, "--out", try weights(Self.blip.run)], "is the same file as --checkpoint")
        try fails(["visualize"] + albef + ["--image", image, "--caption", "a square", "--out", path("images/./img_1.png")], "is the same file as --image")
        try fails(["analyze-pruning"] + albef + ["--data", data, "--out", link], "is the same file as --data")
        try fails(["plot", Self.albef.run, "--out", Self.albef.run + "/metrics.jsonl"], "is the same file as the metrics file")
        let results = path("results.json")
        try #"[{"image_id": 1, "caption": "a square"}]"#.write(toFile: results, atomically: true, encoding: .utf8)
        try fails(["eval-caption", "--annotations", data, "--results", results, "--out", results], "is the same file as --results")
        for (p, b) in zip(protected, before) { XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), b, "\(p) was changed") }
    }

    /// inspect-dataset's contact sheet and check-step's outputs may not replace a file of the
    /// dataset or the reference case they read (manifest, a shard's data.mdb, expected values).
    func testDatasetAndReferenceCaseFilesAreNotOutputs() throws {
        let corpus = path("corpus"), shards = path("shards")
        let synth = try CLI.run(["synth", "--out", corpus, "--images", "6", "--size", "32", "--quiet"])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        let build = try CLI.run(["build-dataset", "--annotations", corpus + "/train.json", "--image-root", corpus, "--out", shards,
                                 "--shards", "1", "--image-size", "32", "--quiet"])
        XCTAssertEqual(build.status, 0, build.stdout + build.stderr)
        let shard = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: shards).first { $0.hasPrefix("shard-") })
        for victim in [shards + "/manifest.json", shards + "/" + shard + "/data.mdb"] {
            let before = try Data(contentsOf: URL(fileURLWithPath: victim))
            try fails(["inspect-dataset", shards, "--out", victim], "is a file of the dataset")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: victim)), before, "\(victim) was changed")
        }
        let referenceCase = path("case")
        try FileManager.default.createDirectory(atPath: referenceCase, withIntermediateDirectories: true)
        try "reference values".write(toFile: referenceCase + "/expected.safetensors", atomically: true, encoding: .utf8)
        try fails(["check-step", referenceCase, "--out", referenceCase + "/expected.safetensors"], "is a file of the reference case")
        XCTAssertEqual(try String(contentsOfFile: referenceCase + "/expected.safetensors", encoding: .utf8), "reference values")
    }

    /// A FIFO named as an annotation file or an image (`x.jpg`) is refused, never opened for a
    /// read that would block forever.
    func testFifoInputsAreRefusedWithoutBlocking() throws {
        let fifoDir = path("fifo")
        try FileManager.default.createDirectory(atPath: fifoDir + "/images", withIntermediateDirectories: true)
        let fifoJSON = fifoDir + "/test.json", fifoImage = fifoDir + "/images/img_9.jpg"
        XCTAssertEqual(mkfifo(fifoJSON, 0o600), 0)
        XCTAssertEqual(mkfifo(fifoImage, 0o600), 0)
        let withFifoImage = fifoDir + "/with-fifo-image.json"
        try JSONSerialization.data(withJSONObject: [["image": "images/img_9.jpg", "caption": ["a square"], "image_id": 9]])
            .write(to: URL(fileURLWithPath: withFifoImage))
        let albef = ["--checkpoint", Self.albef.run, "--vocab", Tiny.vocab], blip = ["--checkpoint", Self.blip.run, "--vocab", Tiny.vocab]
        try fails(["eval-retrieval"] + albef + ["--data", fifoJSON, "--image-root", fifoDir], "\(fifoJSON): cannot read the annotation file (not a regular file)")
        try fails(["eval-retrieval"] + albef + ["--data", withFifoImage, "--image-root", fifoDir], "img_9.jpg: cannot read the image file (not a regular file)")
        try fails(["caption"] + blip + ["--data", fifoJSON, "--image-root", fifoDir, "--out", path("c.json")], "cannot read the annotation file (not a regular file)")
        try fails(["caption"] + blip + ["--data", fifoDir + "/images", "--out", path("c.json")], "img_9.jpg: cannot read the image file (not a regular file)")
        try fails(["visualize"] + albef + ["--image", fifoImage, "--caption", "a square", "--out", path("v.png")], "cannot read the image file (not a regular file)")
        try fails(["analyze-pruning"] + albef + ["--data", fifoJSON], "cannot read the annotation file (not a regular file)")
        try fails(["eval-caption", "--annotations", fifoJSON, "--results", fifoJSON], "\(fifoJSON): cannot read the file (not a regular file)")
        let fifoWeights = fifoDir + "/model.safetensors"
        XCTAssertEqual(mkfifo(fifoWeights, 0o600), 0)
        try fails(["diff-weights", fifoWeights, fifoWeights], "\(fifoWeights): not a regular file")
        try fails(["eval-retrieval", "--checkpoint", fifoWeights, "--config", Self.albef.config, "--data", Self.annotations!],
                  "\(fifoWeights): not a regular file")
    }

    /// An annotation entry may not read outside --image-root: `..`, an absolute path elsewhere
    /// or a symlink out of the root are refused naming the entry (eval-retrieval, caption with an
    /// annotation list or a folder, analyze-pruning).
    func testImagePathsStayInsideTheImageRoot() throws {
        let outside = path("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try TinyPNG.encode(width: 8, height: 8) { _, _ in (1, 2, 3) }.write(to: URL(fileURLWithPath: outside + "/secret.png"))
        let confined = path("confined")
        try FileManager.default.createDirectory(atPath: confined + "/images", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path("images/img_1.png"), toPath: confined + "/images/img_1.png")
        try FileManager.default.copyItem(atPath: path("images/mask_1.png"), toPath: confined + "/images/mask_1.png")
        try FileManager.default.createSymbolicLink(atPath: confined + "/images/link_2.png", withDestinationPath: outside + "/secret.png")
        let good: [String: Any] = ["image": "images/img_1.png", "mask": "images/mask_1.png", "caption": ["a square"], "image_id": 1]
        let bad: [(String, String)] = [("../outside/secret.png", "is outside the image root"),
                                       ("images/../../../../../../etc/passwd", "is outside the image root"),
                                       (outside + "/secret.png", "is outside the image root"),
                                       ("images/link_2.png", "(through a symlink), outside the image root")]
        for (i, (name, needle)) in bad.enumerated() {
            let file = path("escape\(i).json")
            let entry: [String: Any] = ["image": name, "mask": "images/mask_1.png", "caption": ["a square"], "image_id": 2]
            try JSONSerialization.data(withJSONObject: [good, entry]).write(to: URL(fileURLWithPath: file))
            try fails(["eval-retrieval", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", file, "--image-root", confined],
                      "\(file): entry 1: image \(name) " + (needle.hasPrefix("(") ? "resolves to " : needle))
            try fails(["caption", "--checkpoint", Self.blip.run, "--vocab", Tiny.vocab, "--data", file, "--image-root", confined,
                       "--out", path("captions.json")], needle)
            try fails(["analyze-pruning", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", file, "--image-root", confined], needle)
        }
        try fails(["caption", "--checkpoint", Self.blip.run, "--vocab", Tiny.vocab, "--data", confined + "/images", "--out", path("captions.json")],
                  "image link_2.png resolves to ")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("captions.json")))
    }

    /// `[""]`, a caption with no words after cleaning, the same image twice (also spelt
    /// differently) are errors naming the entry; analyze-pruning --limit 0 is refused.
    func testEmptyCaptionsDuplicatesAndLimitZeroAreErrors() throws {
        let e0: [String: Any] = ["image": "images/img_1.png", "caption": ["a square"]]
        let cases: [([[String: Any]], String)] = [
            ([e0, ["image": "images/img_2.png", "caption": [""]]], "entry 1 (images/img_2.png): caption 0 (\"\") has no words"),
            ([e0, ["image": "images/img_2.png", "caption": ["a square", "?!..."]]], "entry 1 (images/img_2.png): caption 1 (\"?!...\") has no words after cleaning"),
            ([e0, ["image": "images/img_2.png", "caption": ["x"]], e0], "entry 2 (images/img_1.png) is the same image as entry 0"),
            ([e0, ["image": "./images/../images/img_1.png", "caption": ["x"]]], "entry 1 (./images/../images/img_1.png) is the same image as entry 0"),
        ]
        for (i, (entries, needle)) in cases.enumerated() {
            let file = path("entries\(i).json")
            try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: file))
            try fails(["eval-retrieval", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", file, "--image-root", root],
                      "\(file): \(needle)")
        }
        let twice = path("twice.json")
        try JSONSerialization.data(withJSONObject: [["image": "images/img_1.png", "image_id": 1], ["image": "images/./img_1.png", "image_id": 2]])
            .write(to: URL(fileURLWithPath: twice))
        try fails(["caption", "--checkpoint", Self.blip.run, "--vocab", Tiny.vocab, "--data", twice, "--image-root", root, "--out", path("c.json")],
                  "images images/img_1.png and images/./img_1.png are the same file")
        try fails(["analyze-pruning", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", Self.annotations, "--limit", "0"],
                  "--limit must be at least 1, got 0", status: 64)
        // The unchanged annotation file still evaluates.
        let ok = try CLI.run(["eval-retrieval", "--checkpoint", Self.albef.run, "--vocab", Tiny.vocab, "--data", Self.annotations,
                              "--image-root", root, "--k-test", "2"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    /// tokenize: a line that is not UTF-8 is an error naming the line, not silently replaced.
    func testTokenizeRefusesInvalidUTF8() throws {
        let r = try CLI.run(["tokenize", "--vocab", Tiny.vocab], stdin: "a square\nthe \u{00e9}\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = Process()
        p.executableURL = CLI.executable
        p.arguments = ["tokenize", "--vocab", Tiny.vocab]
        let inp = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = inp; p.standardOutput = out; p.standardError = err
        try p.run()
        inp.fileHandleForWriting.write(Data("a square\n".utf8) + Data([0x61, 0x20, 0xFF, 0xFE, 0x0A]) + Data("a circle\n".utf8))
        try inp.fileHandleForWriting.close()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, o + e)
        XCTAssertTrue(e.contains("standard input, line 2: not valid UTF-8 (byte 3 of the line)"), e)
        XCTAssertEqual(o.split(separator: "\n").count, 1, "only the line before the bad one is tokenised: \(o)")
    }
}

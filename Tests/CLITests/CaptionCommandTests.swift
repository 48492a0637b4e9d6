import Foundation
import XCTest

/// `elip caption` (and `eval-retrieval`) on a tiny ELIP-BLIP run made by `elip train`.
final class CaptionCommandTests: XCTestCase {
    static let medJSON = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32,
     "vocab_size": 30524, "max_position_embeddings": 32, "encoder_width": 16, "add_cross_attention": true}
    """
    static let config = """
    model: blip
    med_config: med_tiny.json
    image_size: 32
    batch_size: 4
    queue_size: 16
    embed_dim: 8
    max_length: 12
    img_prune: {begin_layer: [1, 2], num_act_layers: [1, 2], keep_ratio: [0.75, 0.5]}
    vision: {patch_size: 16, embed_dim: 16, depth: 4, num_heads: 2, mlp_ratio: 2}
    init_lr: 1e-3
    min_lr: 1e-5
    warmup_lr: 1e-4
    warmup_steps: 2
    max_epoch: 3
    weight_decay: 0.05
    train: {max_steps: 3, checkpoint_every: 3, keep_checkpoints: 1, log_every: 1, seed: 1, bucket_mb: 1}
    data: {synthetic: {images: 16, size: 32}}
    """

    var tmp: URL!
    var vocab: String!
    override func setUpWithError() throws {
        tmp = try CLI.temporaryDirectory()
        vocab = try CLI.shared("data/bert-base-uncased-vocab.txt")
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// A 3-step BLIP run and three images; returns the run folder.
    private func tinyRun() throws -> String {
        try Self.medJSON.write(to: tmp.appendingPathComponent("med_tiny.json"), atomically: true, encoding: .utf8)
        let configPath = tmp.appendingPathComponent("blip.yaml").path
        try Self.config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let run = tmp.appendingPathComponent("run").path
        let train = try CLI.run(["train", "--config", configPath, "--out", run, "--vocab", vocab, "--threads", "2"])
        XCTAssertEqual(train.status, 0, train.stdout + train.stderr)
        let images = tmp.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for (i, c) in [(220, 30, 30), (30, 170, 50), (40, 60, 220)].enumerated() {
            try TinyPNG.encode(width: 40, height: 36) { x, y in (8..<28).contains(x) && (6..<26).contains(y) ? (UInt8(c.0), UInt8(c.1), UInt8(c.2)) : (128, 128, 128) }
                .write(to: images.appendingPathComponent("COCO_val2014_00000000042\(i).png"))
        }
        return run
    }

    private func results(_ path: String) throws -> [[String: Any]] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [[String: Any]])
    }

    func testCaptionsFromAnnotationsAndFoldersAndRetrievalOfABLIPRun() throws {
        let run = try tinyRun()
        let names = (0..<3).map { "images/COCO_val2014_00000000042\($0).png" }

        // A BLIP annotation list (one entry per caption, ids from the names by BLIP's rule).
        let list = tmp.appendingPathComponent("test.json")
        let entries: [[String: Any]] = names.flatMap { n in [["image": n, "caption": "a square"], ["image": n, "caption": "a grey picture"]] }
        try JSONSerialization.data(withJSONObject: entries).write(to: list)
        let out1 = tmp.appendingPathComponent("captions.json").path
        let c1 = try CLI.run(["caption", "--checkpoint", run, "--data", list.path, "--image-root", tmp.path, "--out", out1,
                              "--vocab", vocab, "--batch", "2", "--max-length", "9", "--min-length", "6"])
        XCTAssertEqual(c1.status, 0, c1.stdout + c1.stderr)
        XCTAssertTrue(c1.stderr.contains("caption: 3 images") && c1.stderr.contains("3/3 images"), c1.stderr)
        XCTAssertTrue(c1.stdout.contains("wrote 3 captions"), c1.stdout)
        let r1 = try results(out1)
        XCTAssertEqual(r1.map { $0["image_id"] as? Int }, [420, 421, 422])
        for r in r1 {
            XCTAssertEqual(Set(r.keys), ["image_id", "caption"], "COCO results format")
            let words = try XCTUnwrap(r["caption"] as? String).split(separator: " ")
            // [DEC] + "a picture of" (3 tokens) + 2..5 generated tokens; the prompt's text is cut.
            XCTAssertTrue((1...5).contains(words.count), "\(r)")
        }

        // The same images as a COCO captions file (ids given), with batch 3: the same captions.
        let coco = tmp.appendingPathComponent("coco.json")
        let cocoObject: [String: Any] = ["images": names.enumerated().map { ["id": 420 + $0.offset, "file_name": $0.element] },
                                         "annotations": names.indices.map { ["image_id": 420 + $0, "id": $0, "caption": "a square"] }]
        try JSONSerialization.data(withJSONObject: cocoObject).write(to: coco)
        let out2 = tmp.appendingPathComponent("captions2.json").path
        let c2 = try CLI.run(["caption", "--checkpoint", run, "--data", coco.path, "--image-root", tmp.path, "--out", out2,
                              "--vocab", vocab, "--batch", "3", "--max-length", "9", "--min-length", "6", "--quiet"])
        XCTAssertEqual(c2.status, 0, c2.stdout + c2.stderr)
        XCTAssertEqual(c2.stderr, "")
        XCTAssertEqual(try results(out2).map { $0["caption"] as? String }, r1.map { $0["caption"] as? String }, "batching does not change captions")

        // A folder: file names ride along; sampling is seeded.
        let out3 = tmp.appendingPathComponent("captions3.json").path
        let folder = tmp.appendingPathComponent("images").path
        var sampled: [[String: Any]] = []
        for _ in 0..<2 {
            let c3 = try CLI.run(["caption", "--checkpoint", run, "--data", folder, "--out", out3, "--vocab", vocab, "--sample", "--seed", "7"])
            XCTAssertEqual(c3.status, 0, c3.stdout + c3.stderr)
            let r3 = try results(out3)
            XCTAssertEqual(r3.map { $0["file_name"] as? String }, names.map { ($0 as NSString).lastPathComponent })
            XCTAssertEqual(r3.map { $0["image_id"] as? Int }, [420, 421, 422])
            if !sampled.isEmpty { XCTAssertEqual(r3.map { $0["caption"] as? String }, sampled.map { $0["caption"] as? String }) }
            sampled = r3
        }

        // BLIP's zero-shot retrieval through the same command as ALBEF's.
        let grouped = tmp.appendingPathComponent("grouped.json")
        try JSONSerialization.data(withJSONObject: names.map { ["image": $0, "caption": ["a square", "a grey picture"]] }).write(to: grouped)
        let retrieval = tmp.appendingPathComponent("retrieval.json").path
        let e = try CLI.run(["eval-retrieval", "--checkpoint", run, "--data", grouped.path, "--image-root", tmp.path,
                             "--k-test", "2", "--out", retrieval, "--vocab", vocab])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        let metrics = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: retrieval))) as? [String: Any])
        XCTAssertEqual(metrics["images"] as? Int, 3)
        XCTAssertEqual(metrics["texts"] as? Int, 6)
        XCTAssertEqual(metrics["img_r10"] as? Double, 100)
    }

    func testBadInputIsNamed() throws {
        let run = try tinyRun()
        func fails(_ args: [String], _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let r = try CLI.run(["caption", "--checkpoint", run, "--vocab", vocab, "--out", tmp.appendingPathComponent("o.json").path] + args)
            XCTAssertNotEqual(r.status, 0, file: file, line: line)
            XCTAssertTrue(r.stderr.contains(expected), "expected \"\(expected)\" in: \(r.stderr)", file: file, line: line)
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, file: file, line: line)
        }
        let list = tmp.appendingPathComponent("bad.json")
        try #"[{"image": "images/cat.png"}]"#.write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path], "entry 0 (images/cat.png) has no \"image_id\"")
        try #"[{"image": "images/x_1.png"}, {"image": "images/y_1.png"}]"#.write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path], "image id 1 is also the id of images/x_1.png")
        try #"{"images": [{"id": 3}]}"#.write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path], "images[0] (id 3) has no \"file_name\"")
        try #"{"images": [{"id": true, "file_name": "a.png"}]}"#.write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path], "images[0] has no integer \"id\"")
        try #"[{"image": "images/missing_7.png"}]"#.write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path, "--image-root", tmp.path], "missing_7.png: cannot read the image file")
        try "[{".write(to: list, atomically: true, encoding: .utf8)
        try fails(["--data", list.path], "not valid JSON")
        let folder = tmp.appendingPathComponent("images").path
        try fails(["--data", folder, "--image-root", tmp.path], "the root applies to annotation files only")
        try fails(["--data", folder, "--beams", "0"], "--beams must be at least 1")
        try fails(["--data", folder, "--max-length", "4", "--min-length", "5"], "--max-length must be at least 1 and at least --min-length")
        try fails(["--data", folder, "--top-p", "nan"], "--top-p must be in (0, 1]")
        try fails(["--data", folder, "--max-length", "4", "--min-length", "0"], "nothing left to generate")
        let empty = tmp.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try fails(["--data", empty.path], "no .jpg, .jpeg or .png files")
        // An ALBEF checkpoint cannot caption.
        let albef = tmp.appendingPathComponent("albef")
        try FileManager.default.createDirectory(at: albef, withIntermediateDirectories: true)
        try EvalCommandTests.bertJSON.write(to: albef.appendingPathComponent("bert_tiny.json"), atomically: true, encoding: .utf8)
        try EvalCommandTests.config.replacingOccurrences(of: "max_steps: 3, checkpoint_every: 3", with: "max_steps: 1, checkpoint_every: 1")
            .write(to: albef.appendingPathComponent("tiny.yaml"), atomically: true, encoding: .utf8)
        let t = try CLI.run(["train", "--config", albef.appendingPathComponent("tiny.yaml").path, "--out", albef.appendingPathComponent("run").path,
                             "--vocab", vocab, "--threads", "2"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let r = try CLI.run(["caption", "--checkpoint", albef.appendingPathComponent("run").path, "--data", folder, "--out",
                             tmp.appendingPathComponent("o.json").path, "--vocab", vocab])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("albef models do not support captioning"), r.stderr)
    }
}

import Foundation
import XCTest

/// A minimal PNG writer (stored zlib blocks) so the CLI tests can make images without linking
/// the image library, and a reader of the PNG header.
enum TinyPNG {
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return ~c
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }

    /// RGB pixels (row-major) -> PNG bytes.
    static func encode(width: Int, height: Int, pixel: (Int, Int) -> (UInt8, UInt8, UInt8)) -> Data {
        var raw: [UInt8] = []
        for y in 0..<height {
            raw.append(0)  // filter: none
            for x in 0..<width { let p = pixel(x, y); raw += [p.0, p.1, p.2] }
        }
        var z: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, raw.count - i)
            let last: UInt8 = i + n == raw.count ? 1 : 0
            z += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += raw[i..<(i + n)]
            i += n
        } while i < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for v in raw { a = (a + UInt32(v)) % 65521; b = (b + a) % 65521 }
        z += be32(b << 16 | a)
        let ihdr = be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0]
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", z) + chunk("IEND", [])
        return Data(png)
    }

    /// (width, height) from a PNG file's IHDR, nil when the file is not a PNG.
    static func size(of path: String) -> (Int, Int)? {
        guard let d = FileManager.default.contents(atPath: path), d.count > 24,
              Array(d.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { return nil }
        let b = Array(d)
        func u32(_ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        return (u32(16), u32(20))
    }
}

/// `elip plot`, `elip visualize` and `elip eval-retrieval` on a run made by `elip train` with a
/// tiny config.
final class EvalCommandTests: XCTestCase {
    static let bertJSON = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 32,
     "vocab_size": 30522, "max_position_embeddings": 32, "fusion_layer": 2, "encoder_width": 16}
    """
    static let config = """
    bert_config: bert_tiny.json
    image_res: 32
    vision_width: 16
    embed_dim: 8
    batch_size: 4
    queue_size: 16
    img_prune: {begin_layer: [1, 2], num_act_layers: [1, 2], keep_ratio: [0.75, 0.5]}
    vision: {patch_size: 8, embed_dim: 16, depth: 4, num_heads: 2, mlp_ratio: 2}
    optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
    schedular: {sched: cosine, lr: 1e-3, epochs: 2, min_lr: 1e-4, warmup_lr: 1e-4, warmup_epochs: 1, warmup_step_size: 1}
    train: {max_steps: 3, checkpoint_every: 3, keep_checkpoints: 2, log_every: 1, seed: 1, bucket_mb: 1}
    data: {synthetic: {images: 16, size: 32}}
    """

    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testHelpListsTheCommands() throws {
        let r = try CLI.run(["--help"])
        for sub in ["eval-retrieval", "visualize", "plot"] { XCTAssertTrue(r.stdout.contains(sub), "elip --help lacks \(sub)") }
    }

    /// Trains 3 steps, then draws the curves, the pruning picture and evaluates retrieval.
    func testPlotVisualizeAndEvaluateATinyRun() throws {
        let vocab = try CLI.shared("data/bert-base-uncased-vocab.txt")
        try Self.bertJSON.write(to: tmp.appendingPathComponent("bert_tiny.json"), atomically: true, encoding: .utf8)
        let configPath = tmp.appendingPathComponent("tiny.yaml").path
        try Self.config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let run = tmp.appendingPathComponent("run").path
        let train = try CLI.run(["train", "--config", configPath, "--out", run, "--vocab", vocab, "--threads", "2"])
        XCTAssertEqual(train.status, 0, train.stdout + train.stderr)

        // Training curves.
        let curves = tmp.appendingPathComponent("curves.png").path
        let plot = try CLI.run(["plot", run, "--out", curves])
        XCTAssertEqual(plot.status, 0, plot.stdout + plot.stderr)
        XCTAssertTrue(plot.stdout.contains("3 records"), plot.stdout)
        XCTAssertEqual(TinyPNG.size(of: curves)?.0, 1000)

        // Three images: red, green and blue squares on grey.
        let colours: [(UInt8, UInt8, UInt8)] = [(220, 30, 30), (30, 170, 50), (40, 60, 220)]
        var entries: [[String: Any]] = []
        for (i, c) in colours.enumerated() {
            let name = "img\(i).png"
            try TinyPNG.encode(width: 40, height: 40) { x, y in (8..<28).contains(x) && (8..<28).contains(y) ? c : (128, 128, 128) }
                .write(to: tmp.appendingPathComponent(name))
            let word = ["red", "green", "blue"][i]
            entries.append(["image": name, "caption": ["a \(word) square", "there is a \(word) square on grey"]])
        }
        let ann = tmp.appendingPathComponent("test.json")
        try JSONSerialization.data(withJSONObject: entries).write(to: ann)

        // What the pruning keeps.
        let picture = tmp.appendingPathComponent("kept.png").path
        let vis = try CLI.run(["visualize", "--checkpoint", run, "--image", tmp.appendingPathComponent("img0.png").path,
                               "--caption", "A red square!", "--out", picture, "--vocab", vocab])
        XCTAssertEqual(vis.status, 0, vis.stdout + vis.stderr)
        XCTAssertTrue(vis.stdout.contains("stage 1 (layer 1): 12 tokens kept"), vis.stdout)
        XCTAssertTrue(vis.stdout.contains("stage 2 (layer 2): 8 tokens kept"), vis.stdout)
        let size = try XCTUnwrap(TinyPNG.size(of: picture))
        XCTAssertEqual(size.0, 16 + 4 * (256 + 16))  // input, 2 stages, heat map

        // Retrieval.
        let results = tmp.appendingPathComponent("results.json").path
        let eval = try CLI.run(["eval-retrieval", "--checkpoint", run, "--data", ann.path, "--image-root", tmp.path,
                                "--k-test", "2", "--batch", "3", "--out", results, "--vocab", vocab])
        XCTAssertEqual(eval.status, 0, eval.stdout + eval.stderr)
        XCTAssertTrue(eval.stdout.contains("TR") && eval.stdout.contains("IR") && eval.stdout.contains("r_mean"), eval.stdout)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: results))) as? [String: Any])
        XCTAssertEqual(json["images"] as? Int, 3)
        XCTAssertEqual(json["texts"] as? Int, 6)
        XCTAssertEqual(json["k_test"] as? Int, 2)
        XCTAssertEqual(json["step"] as? Int, 3)
        for key in ["txt_r1", "txt_r5", "txt_r10", "txt_r_mean", "img_r1", "img_r5", "img_r10", "img_r_mean", "r_mean"] {
            let v = try XCTUnwrap(json[key] as? Double, key)
            XCTAssertTrue(v >= 0 && v <= 100, "\(key) = \(v)")
        }
        // With 3 images and 6 captions every ground truth is within the top 5 and 10.
        XCTAssertEqual(json["txt_r5"] as? Double, 100)
        XCTAssertEqual(json["img_r10"] as? Double, 100)
    }

    func testBadArgumentsAreNamed() throws {
        let missing = tmp.appendingPathComponent("missing").path
        let e1 = try CLI.run(["eval-retrieval", "--checkpoint", missing, "--data", "x.json"])
        XCTAssertNotEqual(e1.status, 0)
        XCTAssertTrue(e1.stderr.contains(missing), e1.stderr)
        let e2 = try CLI.run(["plot", missing, "--out", tmp.appendingPathComponent("p.png").path])
        XCTAssertNotEqual(e2.status, 0)
        XCTAssertTrue(e2.stderr.contains(missing), e2.stderr)
        let e3 = try CLI.run(["eval-retrieval", "--checkpoint", tmp.path, "--data", "x.json", "--k-test", "0"])
        XCTAssertNotEqual(e3.status, 0)
        XCTAssertTrue(e3.stderr.contains("--k-test"), e3.stderr)
        // A run folder without metrics.
        let e4 = try CLI.run(["plot", tmp.path, "--out", tmp.appendingPathComponent("p.png").path])
        XCTAssertNotEqual(e4.status, 0)
        XCTAssertTrue(e4.stderr.contains("metrics.jsonl"), e4.stderr)
        let e5 = try CLI.run(["visualize", "--checkpoint", tmp.path, "--image", missing, "--caption", "x", "--out", "y.png"])
        XCTAssertNotEqual(e5.status, 0)
        XCTAssertTrue(e5.stderr.contains(tmp.path), e5.stderr)
    }
}

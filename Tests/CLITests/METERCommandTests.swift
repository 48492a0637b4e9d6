import Foundation
import Safetensors
import XCTest

/// `model: meter` end to end through the binary: the meter-tiny replay (`check-step`), and a
/// few training steps on the synthetic corpus with the shipped BPE vocabulary followed by
/// pair-ranking retrieval on a subset.
final class METERCommandTests: XCTestCase {
    func testCheckStepPassesOnMeterTiny() throws {
        let dir = try CLI.shared("reference/meter-tiny")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("step.safetensors").path
        let r = try CLI.run(["check-step", dir, "--out", out, "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("kept_index") && r.stdout.contains("gradients"), r.stdout)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        XCTAssertEqual(Set(try SafetensorsFile(path: out).names), Set(expected.names))
    }

    func testTrainsWithTheBPEVocabularyAndRanksPairs() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let configs = Tiny.repo.appendingPathComponent("configs")
        // demo-meter.yaml, shrunk: 32 px (4 patches), batch 4.
        var yaml = try String(contentsOf: configs.appendingPathComponent("demo-meter.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "image_size: 128", with: "image_size: 32")
            .replacingOccurrences(of: "synthetic: {images: 2048, size: 128}", with: "synthetic: {images: 16, size: 32}")
            .replacingOccurrences(of: "batch_size: 24", with: "batch_size: 4")
            .replacingOccurrences(of: "vocab: configs/", with: "vocab: \(configs.path)/")
            .replacingOccurrences(of: "merges: configs/", with: "merges: \(configs.path)/")
        let config = tmp.appendingPathComponent("meter.yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let run = tmp.appendingPathComponent("run").path
        let t = try CLI.run(["train", "--config", config.path, "--out", run, "--max-steps", "2", "--threads", "1"])
        XCTAssertEqual(t.status, 0, t.stdout + t.stderr)
        XCTAssertTrue(t.stdout.contains("model: METER"), t.stdout)

        let corpus = tmp.appendingPathComponent("corpus").path
        XCTAssertEqual(try CLI.run(["synth", "--out", corpus, "--images", "10", "--size", "32", "--seed", "1", "--test-fraction", "0.5"]).status, 0)
        let out = tmp.appendingPathComponent("retrieval.json").path
        let e = try CLI.run(["eval-retrieval", "--checkpoint", run, "--data", corpus + "/test.json", "--image-root", corpus,
                             "--max-images", "3", "--batch", "8", "--threads", "1", "--out", out, "--quiet"])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        XCTAssertEqual(json["images"] as? Int, 3)
        XCTAssertNotNil(json["deviation"], "a subset is recorded as a deviation")
        let bad = try CLI.run(["eval-retrieval", "--checkpoint", run, "--data", corpus + "/test.json", "--image-root", corpus,
                               "--max-images", "0", "--threads", "1", "--quiet"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--max-images"), bad.stderr)
    }
}

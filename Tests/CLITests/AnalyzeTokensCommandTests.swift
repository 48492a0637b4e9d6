import Foundation
import XCTest

/// Issue 18 part 1: `elip analyze-tokens` on tiny ALBEF and BLIP runs, with a baseline.
final class AnalyzeTokensCommandTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testCurvesForBothBackbones() throws {
        let annotations = try Tiny.images(in: tmp)
        for model in Tiny.Model.allCases {
            let (run, _) = try Tiny.train(model, folder: tmp)
            let baselineConfig = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-baseline.yaml", overrides: ["img_prune: null"])
            let baseline = tmp.appendingPathComponent("baseline-\(model)").path
            let t = try CLI.run(["train", "--config", baselineConfig, "--out", baseline, "--threads", "2"])
            XCTAssertEqual(t.status, 0, t.stderr)
            let out = tmp.appendingPathComponent("\(model).json").path, chart = tmp.appendingPathComponent("\(model).png").path
            let r = try CLI.run(["analyze-tokens", "--checkpoint", run, "--baseline", baseline, "--data", annotations,
                                 "--out", out, "--chart", chart, "--batch", "2", "--threads", "2"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
            let models = try XCTUnwrap(json["models"] as? [[String: Any]])
            XCTAssertEqual(models.map { $0["name"] as? String }, ["checkpoint", "baseline"])
            for m in models {
                XCTAssertEqual(m["images"] as? Int, 3)
                let entropy = try XCTUnwrap(m["normalized_entropy"] as? [Double]), cosine = try XCTUnwrap(m["patch_cosine"] as? [Double])
                XCTAssertEqual(entropy.count, 4, "one value per ViT layer (depth 4)")
                XCTAssertEqual(cosine.count, 4)
                XCTAssertTrue(entropy.allSatisfy { $0 >= 0 && $0 <= 1 + 1e-9 }, "\(entropy)")
                XCTAssertTrue(cosine.allSatisfy { $0 >= -1 && $0 <= 1 }, "\(cosine)")
            }
            let png = try Data(contentsOf: URL(fileURLWithPath: chart))
            XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        }
    }

    func testBadInputIsRefused() throws {
        let annotations = try Tiny.images(in: tmp, entries: [["caption": "no image"]])
        let (run, _) = try Tiny.train(.albef, folder: tmp)
        let none = try CLI.run(["analyze-tokens", "--checkpoint", run, "--data", annotations])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("give --out and/or --chart"), none.stderr)
        let out = tmp.appendingPathComponent("x.json").path
        let missing = try CLI.run(["analyze-tokens", "--checkpoint", run, "--data", annotations, "--out", out])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("entry 3 has no \"image\""), missing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let same = try CLI.run(["analyze-tokens", "--checkpoint", run, "--data", annotations, "--out", annotations])
        XCTAssertNotEqual(same.status, 0)
        XCTAssertTrue(same.stderr.contains("--out"), same.stderr)
    }
}

import Foundation
import XCTest

/// Issue 18 part 4: `img_prune: {lambda: X}` and `img_prune: {merge: false}` are config keys of
/// both backbones; bad values are clear errors; a tiny run trains with each.
final class PruningAblationCommandTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testBadAblationValuesAreRefused() throws {
        let cases: [(String, String)] = [
            ("img_prune.lambda: 1.5", "img_prune.lambda: must be in [0, 1], got 1.5"),
            ("img_prune.lambda: -0.1", "img_prune.lambda: must be in [0, 1], got -0.1"),
            ("img_prune.lambda: .nan", "img_prune.lambda: must be a finite number, got .nan"),
            ("img_prune.lambda: high", "img_prune.lambda: must be a number, got 'high'"),
            ("img_prune.lamda: 0.5", "img_prune.lamda: unknown key, did you mean lambda?"),
            ("img_prune.merge: maybe", "img_prune.merge: must be true or false, got 'maybe'"),
            ("img_prune.merg: false", "img_prune.merg: unknown key, did you mean merge?"),
        ]
        for model in Tiny.Model.allCases {
            for (i, (override, expected)) in cases.enumerated() {
                let config = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-\(i).yaml", overrides: [override])
                let r = try CLI.run(["train", "--config", config, "--out", tmp.appendingPathComponent("out").path])
                XCTAssertEqual(r.status, 1, "\(model), \(override): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("\(config): \(expected)"), "\(model), \(override): \(r.stderr)")
            }
            // The older top-level key (ALBEF `prune_lambda`, BLIP `lambda`) and img_prune.lambda together.
            let legacy = model == .albef ? "prune_lambda" : "lambda"
            let config = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-twice.yaml", overrides: ["\(legacy): 0.5", "img_prune.lambda: 0.5"])
            let r = try CLI.run(["train", "--config", config, "--out", tmp.appendingPathComponent("out").path])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("\(config): \(legacy): λ is given twice, here and as img_prune.lambda: keep one"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out").path))
    }

    /// Each ablation trains 2 steps on both backbones; the summary names it, and the legacy
    /// top-level λ key still works.
    func testEachAblationTrains() throws {
        for model in Tiny.Model.allCases {
            let legacy = model == .albef ? "prune_lambda" : "lambda"
            let runs: [([String], String)] = [
                (["img_prune.lambda: 0"], "look_ahead, λ 0.0)"),
                (["img_prune.lambda: 1", "img_prune.scoring: inline"], "inline, λ 1.0)"),
                (["img_prune.merge: false"], "look_ahead, no merge)"),
                (["\(legacy): 0.4"], "look_ahead, λ 0.4)"),
            ]
            for (i, (overrides, summary)) in runs.enumerated() {
                let config = try Tiny.writeConfig(model, folder: tmp, name: "\(model)-\(i).yaml", overrides: overrides)
                let run = tmp.appendingPathComponent("run-\(model)-\(i)").path
                let r = try CLI.run(["train", "--config", config, "--out", run, "--threads", "2"])
                XCTAssertEqual(r.status, 0, "\(model) \(overrides): \(r.stdout)\(r.stderr)")
                XCTAssertTrue(r.stdout.contains(summary), "\(model) \(overrides): expected '\(summary)' in \(r.stdout)")
                let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                XCTAssertEqual(metrics.count, 2, "\(model) \(overrides)")
                XCTAssertFalse(metrics.contains { $0.contains("nan") }, "\(model) \(overrides): \(metrics)")
            }
        }
    }
}

import Foundation
import XCTest

/// `elip eval-caption` on the pycocoevalcap reference case (../shared/reference/caption).
final class EvalCaptionCommandTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testHelpExplainsTheOptions() throws {
        let r = try CLI.run(["eval-caption", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for text in ["--annotations", "--results", "--out", "overwritten", "CIDEr", "Bleu_1"] {
            XCTAssertTrue(r.stdout.contains(text), "eval-caption --help lacks \(text):\n\(r.stdout)")
        }
        XCTAssertTrue(try CLI.run(["--help"]).stdout.contains("eval-caption"))
    }

    /// Every value of expected.json (corpus 1e-6 relative, per image 1e-6 relative + 1e-12), the
    /// keys sorted and pretty printed, an existing --out overwritten.
    func testTheReferenceCase() throws {
        let annotations = try CLI.shared("reference/caption/annotations.json")
        let results = try CLI.shared("reference/caption/results.json")
        let expectedData = try Data(contentsOf: URL(fileURLWithPath: CLI.shared("reference/caption/expected.json")))
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: expectedData) as? [String: Any])
        let out = tmp.appendingPathComponent("metrics.json")
        try Data(String(repeating: "stale ", count: 2000).utf8).write(to: out)

        let r = try CLI.run(["eval-caption", "--annotations", annotations, "--results", results, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("41 images") && r.stdout.contains("CIDEr 2.1457"), r.stdout)

        let text = try String(contentsOf: out, encoding: .utf8)
        XCTAssertFalse(text.contains("stale"))
        XCTAssertTrue(text.contains("\n  \"Bleu_1\""), "not pretty printed:\n\(text.prefix(200))")
        let order = ["\"Bleu_1\"", "\"Bleu_2\"", "\"Bleu_3\"", "\"Bleu_4\"", "\"CIDEr\"", "\"per_image\""].compactMap { text.range(of: $0)?.lowerBound }
        XCTAssertEqual(order.count, 6)
        XCTAssertEqual(order, order.sorted(), "keys not sorted")

        let got = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any])
        for key in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"] {
            let e = try XCTUnwrap(expected[key] as? Double, key), v = try XCTUnwrap(got[key] as? Double, key)
            XCTAssertEqual(v, e, accuracy: 1e-6 * abs(e), key)
        }
        let expectedImages = try XCTUnwrap(expected["per_image"] as? [String: [String: Double]])
        let gotImages = try XCTUnwrap(got["per_image"] as? [String: [String: Double]])
        XCTAssertEqual(Set(gotImages.keys), Set(expectedImages.keys))
        for (id, values) in expectedImages {
            for (key, e) in values {
                let v = try XCTUnwrap(gotImages[id]?[key], "image \(id) \(key)")
                XCTAssertEqual(v, e, accuracy: 1e-6 * abs(e) + 1e-12, "image \(id) \(key)")
            }
        }
    }

    /// The files the official code stops on: non-zero exit, the reason on one line, no output file.
    func testRefusedResultsExitWithTheReason() throws {
        let annotations = try CLI.shared("reference/caption/annotations.json")
        for (file, reason) in [("results_missing.json", "image 397133 has no result"),
                               ("results_extra.json", "a result for image 999999, which is not in the annotations"),
                               ("results_duplicate.json", "image 391895 has 2 results")] {
            let results = try CLI.shared("reference/caption/\(file)")
            let out = tmp.appendingPathComponent("\(file).metrics.json")
            let r = try CLI.run(["eval-caption", "--annotations", annotations, "--results", results, "--out", out.path])
            XCTAssertNotEqual(r.status, 0, file)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(results) && r.stderr.contains(reason), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), file)
        }
    }

    func testMissingAndMalformedFilesAreNamed() throws {
        let absent = tmp.appendingPathComponent("absent.json").path
        let broken = tmp.appendingPathComponent("broken.json")
        try Data("{\"images\": [".utf8).write(to: broken)
        for (annotations, named) in [(absent, absent), (broken.path, broken.path)] {
            let r = try CLI.run(["eval-caption", "--annotations", annotations, "--results", absent])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(named), r.stderr)
        }
        let usage = try CLI.run(["eval-caption", "--annotations", absent])
        XCTAssertNotEqual(usage.status, 0)
        XCTAssertTrue(usage.stderr.contains("--results"), usage.stderr)
    }
}

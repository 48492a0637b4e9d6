import Foundation
import XCTest

/// `elip eval-vqa` on the official VQA evaluation's reference case (../shared/reference/vqa-accuracy).
final class EvalVQACommandTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testHelpExplainsTheOptions() throws {
        let r = try CLI.run(["eval-vqa", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for text in ["--questions", "--annotations", "--results", "--out", "overwritten", "min(1", "last"] {
            XCTAssertTrue(r.stdout.contains(text), "eval-vqa --help lacks \(text):\n\(r.stdout)")
        }
        XCTAssertTrue(try CLI.run(["--help"]).stdout.contains("eval-vqa"))
    }

    private func args(_ results: String, out: URL? = nil) throws -> [String] {
        ["eval-vqa", "--questions", try CLI.shared("reference/vqa-accuracy/questions.json"),
         "--annotations", try CLI.shared("reference/vqa-accuracy/annotations.json"),
         "--results", try CLI.shared("reference/vqa-accuracy/\(results)")] + (out.map { ["--out", $0.path] } ?? [])
    }

    /// The written file has every key of expected.json with equal 2-decimal values; the
    /// duplicate-answer file counts the last answer (variants.json).
    func testTheReferenceCaseAndTheDuplicateAnswer() throws {
        for (results, expectedFile) in [("results.json", "expected.json"), ("results_duplicate.json", "variants.json")] {
            let out = tmp.appendingPathComponent("m-\(results)")
            let r = try CLI.run(args(results, out: out))
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("61 questions"), r.stdout)
            var expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.shared("reference/vqa-accuracy/\(expectedFile)")))) as? [String: Any])
            if expectedFile == "variants.json" {
                expected = try XCTUnwrap((expected["results_duplicate.json"] as? [String: Any])?["expected"] as? [String: Any])
            }
            let got = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any])
            XCTAssertEqual(got["overall"] as? Double, expected["overall"] as? Double, results)
            for key in ["perAnswerType", "perQuestionType", "per_question"] {
                XCTAssertEqual(got[key] as? [String: Double], expected[key] as? [String: Double], "\(results) \(key)")
            }
        }
    }

    /// Missing and extra results, and a malformed file: non-zero exit, one line naming the
    /// problem, no output file.
    func testRefusedInputs() throws {
        let broken = tmp.appendingPathComponent("broken.json")
        try Data("[{\"question_id\": 1,".utf8).write(to: broken)
        for (results, reason) in [("results_missing.json", "no result for question 393225001"),
                                  ("results_extra.json", "not in the annotations: 262148099"),
                                  (broken.path, "not valid JSON")] {
            let out = tmp.appendingPathComponent("never.json")
            var a = try args("results.json", out: out)
            a[a.firstIndex(of: "--results")! + 1] = results.hasPrefix("/") ? results : try CLI.shared("reference/vqa-accuracy/\(results)")
            let r = try CLI.run(a)
            XCTAssertNotEqual(r.status, 0, results)
            XCTAssertTrue(r.stderr.contains(reason), "\(results): \(r.stderr)")
            XCTAssertEqual(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), results)
        }
    }
}

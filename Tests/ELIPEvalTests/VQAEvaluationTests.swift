@testable import ELIPEval
import Foundation
import XCTest

/// VQA accuracy as the official vqaEval.py (ALBEF's vqaTools) computes it; the reference case is
/// ../shared/reference/vqa-accuracy.
final class VQAEvaluationTests: XCTestCase {
    private func reference(_ name: String) throws -> String {
        var root = ProcessInfo.processInfo.environment["ELIP_SHARED"]
        if root == nil {
            // <repo>/Tests/ELIPEvalTests/VQAEvaluationTests.swift -> <repo>/../shared
            let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            root = repo.deletingLastPathComponent().appendingPathComponent("shared").path
        }
        let p = (root! as NSString).appendingPathComponent("reference/vqa-accuracy/\(name)")
        guard FileManager.default.fileExists(atPath: p) else {
            throw XCTSkip("needs ../shared/reference/vqa-accuracy/\(name) (reference data of the official VQA evaluation); not present")
        }
        return p
    }

    private func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    private var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("elip-vqa-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// The examples of the specification (reference README, vqa-accuracy section).
    func testPunctuationRule() {
        let p = VQAAnswerNormalization.punctuation
        XCTAssertEqual(p("cheese,pizza"), "cheese pizza")
        XCTAssertEqual(p("red / white"), "red  white")
        XCTAssertEqual(p("1,000 (approx)"), "1000 approx")
        XCTAssertEqual(p("3.5."), "3.5")
        XCTAssertEqual(p("2,500."), "2500")
        XCTAssertEqual(p("yes!"), "yes ")
        XCTAssertEqual(p("12:30"), "12:30")
        XCTAssertEqual(p("3.0"), "3.0")
        XCTAssertEqual(p("rock & roll"), "rock & roll")
        // At most 32 periods go: 40 trailing periods leave 8.
        XCTAssertEqual(p("yes" + String(repeating: ".", count: 40)), "yes........")
        // The test is on the original text: "a-b c" has no "- " or " -", so "-" becomes a space.
        XCTAssertEqual(p("a-b c"), "a b c")
        XCTAssertEqual(p("a- b"), "a b")
        // Digits of other scripts count as Python's \d does.
        XCTAssertEqual(p("\u{0661},\u{0662}x(y)"), "\u{0661}\u{0662}xy")
    }

    func testResultNormalisation() {
        let r = VQAAnswerNormalization.result
        XCTAssertEqual(r("twenty-three"), "twenty 3")
        XCTAssertEqual(r("The People"), "people")
        XCTAssertEqual(r("the"), "")
        XCTAssertEqual(r(" Two\tdogs\n"), "2 dogs")
        XCTAssertEqual(r("none"), "0")
        XCTAssertEqual(r("eleven"), "eleven")
        XCTAssertEqual(r("dont"), "don't")
        XCTAssertEqual(r("Im"), "im", "the capitalised keys never match a lower-cased word")
        XCTAssertEqual(r("somebody'd"), "somebodyd")
        XCTAssertEqual(r("CAFÉ"), "café")
        XCTAssertEqual(r("yes" + String(repeating: ".", count: 33)), "yes.")
        // Precomposed and decomposed é are different answers, as Python's strings are.
        XCTAssertFalse(VQAAnswerNormalization.same(r("caf\u{E9}"), "cafe\u{301}"))
    }

    private func annotation(_ id: Int, _ humans: [String], type: String = "other") -> VQAEvaluation.Annotation {
        .init(questionID: id, questionType: "what", answerType: type, answers: humans.enumerated().map {
            .init(answer: $0.element, record: ["answer": $0.element, "answer_confidence": "yes", "answer_id": $0.offset + 1])
        })
    }

    /// min(1, #others / 3) averaged over the 10 leave-one-out subsets: 0, .3, .6, .9, 1 for
    /// 0..4 matching humans; identical human answers are never normalised.
    func testAccuracyOverTheLeaveOneOutSubsets() throws {
        var anns: [VQAEvaluation.Annotation] = []
        var results: [(questionID: Int, answer: String)] = []
        for k in 0...4 {
            anns.append(annotation(k, Array(repeating: "red", count: k) + Array(repeating: "blue", count: 10 - k)))
            results.append((k, "Red"))
        }
        anns.append(annotation(5, Array(repeating: "yes.", count: 10)))
        results.append((5, "yes"))
        anns.append(annotation(6, Array(repeating: "yes.", count: 9) + ["no"]))
        results.append((6, "yes"))
        let m = try VQAEvaluation.evaluate(annotations: anns, results: results)
        let accuracies = m.questions.map(\.accuracy)
        for (a, e) in zip(accuracies, [0, 0.3, 0.6, 0.9, 1, 0, 1]) { XCTAssertEqual(a, e, accuracy: 1e-12) }
        XCTAssertEqual(m.overall, 100 * accuracies.reduce(0, +) / 7, accuracy: 1e-9)
        // Equal answer dicts (same id and confidence) are all left out together, as vqaEval's
        // `item != gtAnsDatum` does: for each of the four equal "x" dicts no "x" remains (0),
        // for "y" all four match (1): (4 * 0 + 1) / 5.
        let same = VQAEvaluation.Annotation(questionID: 9, questionType: "q", answerType: "t", answers: (0..<4).map { _ in
            .init(answer: "x", record: ["answer": "x", "answer_id": 1, "answer_confidence": "yes"])
        } + [.init(answer: "y", record: ["answer": "y", "answer_id": 2, "answer_confidence": "yes"])])
        XCTAssertEqual(try VQAEvaluation.evaluate(annotations: [same], results: [(9, "x")]).questions[0].accuracy, 0.2, accuracy: 1e-12)
    }

    /// Every value of expected.json (2-decimal and unrounded) and the normalised forms of
    /// details.json.
    func testTheReferenceCase() throws {
        let expected = try json(reference("expected.json"))
        let metrics = try VQAEvaluation.evaluate(questionsFile: reference("questions.json"), annotationsFile: reference("annotations.json"),
                                                 resultsFile: reference("results.json"))
        let got = metrics.jsonObject()
        XCTAssertEqual(got["overall"] as? Double, expected["overall"] as? Double)
        XCTAssertEqual(try XCTUnwrap(got["overall_unrounded"] as? Double), try XCTUnwrap(expected["overall_unrounded"] as? Double), accuracy: 1e-9)
        for key in ["perAnswerType", "perQuestionType", "per_question"] {
            let e = try XCTUnwrap(expected[key] as? [String: Double], key), g = try XCTUnwrap(got[key] as? [String: Double], key)
            XCTAssertEqual(g, e, key)
            let eu = try XCTUnwrap(expected[key + "_unrounded"] as? [String: Double]), gu = try XCTUnwrap(got[key + "_unrounded"] as? [String: Double])
            XCTAssertEqual(Set(gu.keys), Set(eu.keys))
            for (k, v) in eu { XCTAssertEqual(try XCTUnwrap(gu[k]), v, accuracy: 1e-9, "\(key) \(k)") }
        }
        let details = try XCTUnwrap(json(reference("details.json"))["questions"] as? [[String: Any]])
        XCTAssertEqual(details.count, metrics.questions.count)
        for (d, q) in zip(details, metrics.questions) {
            XCTAssertEqual(d["question_id"] as? Int, q.questionID)
            let what = d["what"] as? String ?? ""
            XCTAssertEqual(d["result_normalised"] as? String, q.normalisedResult, what)
            XCTAssertEqual(d["human_answers_compared"] as? [String], q.comparedHumanAnswers, what)
            XCTAssertEqual(d["humans_matching"] as? Int, q.matchingHumans, what)
        }
    }

    /// A question answered twice counts its last answer (variants.json); missing and extra
    /// results are refused naming the ids.
    func testBadResultFiles() throws {
        let q = try reference("questions.json"), a = try reference("annotations.json")
        let variants = try json(reference("variants.json"))
        let duplicate = try VQAEvaluation.evaluate(questionsFile: q, annotationsFile: a, resultsFile: reference("results_duplicate.json"))
        let expectedObject = try XCTUnwrap((variants["results_duplicate.json"] as? [String: Any])?["expected"] as? [String: Any])
        let got = duplicate.jsonObject()
        XCTAssertEqual(got["overall"] as? Double, expectedObject["overall"] as? Double)
        for key in ["perAnswerType", "perQuestionType", "per_question"] where expectedObject[key] != nil {
            XCTAssertEqual(got[key] as? [String: Double], expectedObject[key] as? [String: Double], key)
        }
        XCTAssertThrowsError(try VQAEvaluation.evaluate(questionsFile: q, annotationsFile: a, resultsFile: reference("results_missing.json"))) {
            XCTAssertTrue("\($0)".contains("no result for question 393225001"), "\($0)")
        }
        XCTAssertThrowsError(try VQAEvaluation.evaluate(questionsFile: q, annotationsFile: a, resultsFile: reference("results_extra.json"))) {
            XCTAssertTrue("\($0)".contains("not in the annotations: 262148099"), "\($0)")
        }
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = tmp.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// Malformed or incomplete files: an error naming the file and what is wrong, never a trap.
    func testMalformedFiles() throws {
        let questions = try write("q.json", #"{"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": {}, "questions": [{"question_id": 1}]}"#)
        let answers = (1...10).map { #"{"answer": "yes", "answer_confidence": "yes", "answer_id": \#($0)}"# }.joined(separator: ",")
        let annotations = try write("a.json", #"{"annotations": [{"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": [\#(answers)]}]}"#)
        let results = try write("r.json", #"[{"question_id": 1, "answer": "yes"}]"#)
        XCTAssertEqual(try VQAEvaluation.evaluate(questionsFile: questions, annotationsFile: annotations, resultsFile: results).overall, 100)

        func refused(_ q: String, _ a: String, _ r: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try VQAEvaluation.evaluate(questionsFile: q, annotationsFile: a, resultsFile: r), file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(text), "\(e)", file: file, line: line)
                XCTAssertFalse("\(e)".contains("\n"), "one line: \(e)", file: file, line: line)
            }
        }
        refused(questions, annotations, try write("bad.json", "[{\"question_id\": 1, \"answer\": \"yes\""), "bad.json: not valid JSON")
        refused(questions, annotations, try write("empty.json", ""), "empty.json: not valid JSON")
        refused(questions, annotations, try write("obj.json", "{}"), "results is not an array")
        refused(questions, annotations, try write("noanswer.json", #"[{"question_id": 1}]"#), "entry 0 has no \"answer\"")
        refused(questions, annotations, try write("num.json", #"[{"question_id": 1, "answer": 3}]"#), "\"answer\" is not a string")
        refused(questions, annotations, try write("id.json", #"[{"question_id": "1", "answer": "yes"}]"#), "\"question_id\" is not an integer")
        refused(questions, annotations, tmp.appendingPathComponent("absent.json").path, "does not exist")
        refused(try write("q2.json", #"{"questions": []}"#), annotations, results, "missing key \"info\"")
        refused(questions, try write("a2.json", #"{"annotations": [{"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": []}]}"#), results,
                "has no human answer")
        refused(questions, try write("a3.json", #"{"annotations": [{"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": [\#(answers)]}, {"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": [\#(answers)]}]}"#), results,
                "question 1 is annotated twice")
        refused(questions, try write("a4.json", #"{"annotations": []}"#), try write("r0.json", "[]"), "nothing to evaluate")
        refused(questions, try write("a5.json", #"{"annotations": [{"question_id": 1, "answer_type": "yes/no", "answers": [\#(answers)]}]}"#), results,
                "annotations[0] has no \"question_type\"")
    }

    /// task_type "Multiple Choice": every answer must be one of its question's choices, as the
    /// official loadRes asserts.
    func testMultipleChoiceAnswersMustBeAmongTheChoices() throws {
        let questions = try write("mc.json", #"{"info": {}, "task_type": "Multiple Choice", "data_type": "mscoco", "data_subtype": "val2014", "license": {}, "questions": [{"question_id": 1, "multiple_choices": ["yes", "no"]}]}"#)
        let answers = (1...10).map { #"{"answer": "no", "answer_confidence": "yes", "answer_id": \#($0)}"# }.joined(separator: ",")
        let annotations = try write("a.json", #"{"annotations": [{"question_id": 1, "question_type": "is", "answer_type": "yes/no", "answers": [\#(answers)]}]}"#)
        XCTAssertEqual(try VQAEvaluation.evaluate(questionsFile: questions, annotationsFile: annotations,
                                                  resultsFile: write("ok.json", #"[{"question_id": 1, "answer": "no"}]"#)).overall, 100)
        XCTAssertThrowsError(try VQAEvaluation.evaluate(questionsFile: questions, annotationsFile: annotations,
                                                        resultsFile: write("bad.json", #"[{"question_id": 1, "answer": "maybe"}]"#))) {
            XCTAssertTrue("\($0)".contains("not one of its multiple choices"), "\($0)")
        }
        let noChoices = try write("mc2.json", #"{"info": {}, "task_type": "Multiple Choice", "data_type": "m", "data_subtype": "v", "license": {}, "questions": [{"question_id": 1}]}"#)
        XCTAssertThrowsError(try VQAEvaluation.loadQuestions(noChoices)) { XCTAssertTrue("\($0)".contains("multiple_choices"), "\($0)") }
    }
}

@testable import ELIPShards
import XCTest

/// The synthetic VQA questions are true of their scene, their answers are in the answer list,
/// and no question type gives its answer away (each has several answers over a few scenes).
final class SyntheticQuestionsTests: XCTestCase {
    func testAnswersAreTrueAndVaried() throws {
        var answersByType: [String: Set<String>] = [:]
        for i in 0..<60 {
            let scene = SyntheticScenes.scene(index: i, seed: 9, size: 32)
            let questions = SyntheticQuestions.questions(for: scene, index: i, seed: 9)
            XCTAssertEqual(questions.count, 3)
            XCTAssertEqual(questions, SyntheticQuestions.questions(for: scene, index: i, seed: 9))  // deterministic
            for q in questions {
                XCTAssertTrue(SyntheticQuestions.answerList.contains(q.answer), q.answer)
                let words = q.question.dropLast().split(separator: " ").map(String.init)
                answersByType[words.prefix(2).joined(separator: " "), default: []].insert(q.answer)
                switch (words[0], words[1]) {
                case ("what", "colour"):
                    let shape = words[4]
                    let matching = scene.objects.filter { $0.shape.rawValue == shape }
                    XCTAssertEqual(matching.count, 1, q.question)
                    XCTAssertEqual(matching.first?.colour.name, q.answer, q.question)
                case ("how", "many"):
                    let n = words[2] == "shapes" ? scene.objects.count
                        : scene.objects.filter { $0.shape.plural == words[2] }.count
                    XCTAssertEqual(q.answer, "\(n)", q.question)
                case ("what", "shape"):
                    let matching = scene.objects.filter { $0.colour.name == words[4] }
                    XCTAssertEqual(matching.count, 1, q.question)
                    XCTAssertEqual(matching.first?.shape.rawValue, q.answer, q.question)
                case ("is", "there"):
                    let present = scene.objects.contains { $0.colour.name == words[3] && $0.shape.rawValue == words[4] }
                    XCTAssertEqual(q.answer, present ? "yes" : "no", q.question)
                default: XCTFail("unexpected question \(q.question)")
                }
            }
        }
        for (type, answers) in answersByType { XCTAssertGreaterThan(answers.count, 1, type) }
        XCTAssertEqual(Set(answersByType.keys), ["what colour", "how many", "what shape", "is there"])
    }
}

import Foundation

/// A VQA-evaluation input the official code would refuse or that cannot be read: one line naming
/// the file and the problem.
public struct VQAEvaluationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// VQA accuracy as the official VQA API computes it (ALBEF's `vqaTools`: `VQA(annotations,
/// questions)`, `loadRes(results, questions)`, `VQAEval(n=2).evaluate()`).
public enum VQAEvaluation {
    /// One human answer as recorded (the whole dict takes part in the "other answers" test).
    public struct HumanAnswer {
        public var answer: String
        /// The answer dict itself: vqaEval leaves out every answer dict EQUAL to the current one,
        /// so with repeated ids and confidences more than one is left out.
        public var record: NSDictionary
    }

    /// One annotated question.
    public struct Annotation {
        public var questionID: Int
        public var questionType: String
        public var answerType: String
        public var answers: [HumanAnswer]
    }

    /// The accuracy of one question.
    public struct QuestionScore: Equatable, Sendable {
        public let questionID: Int
        public let result: String
        public let normalisedResult: String
        public let comparedHumanAnswers: [String]
        /// Humans whose compared answer equals the normalised result.
        public let matchingHumans: Int
        /// In [0, 1].
        public let accuracy: Double
    }

    public struct Metrics: Sendable {
        /// Per question, in the annotation file's order.
        public let questions: [QuestionScore]
        /// 100 x mean accuracy, not rounded.
        public let overall: Double
        public let perAnswerType: [String: Double]
        public let perQuestionType: [String: Double]

        /// Python's `round(x, 2)`: correctly rounded from the double (exact ties to even), as
        /// printing with two decimals and parsing back gives.
        public static func round2(_ x: Double) -> Double { Double(String(format: "%.2f", x)) ?? x }

        /// What `elip eval-vqa` writes: `overall`, `perAnswerType`, `perQuestionType`,
        /// `per_question` {"<question_id>": acc} in percent rounded to 2 decimals (VQAEval with
        /// n=2), and the same before rounding under `*_unrounded`.
        public func jsonObject() -> [String: Any] {
            var perQuestion: [String: Double] = [:]
            var perQuestionUnrounded: [String: Double] = [:]
            for q in questions {
                perQuestion[String(q.questionID)] = Self.round2(100 * q.accuracy)
                perQuestionUnrounded[String(q.questionID)] = 100 * q.accuracy
            }
            return [
                "overall": Self.round2(overall), "overall_unrounded": overall,
                "perAnswerType": perAnswerType.mapValues(Self.round2), "perAnswerType_unrounded": perAnswerType,
                "perQuestionType": perQuestionType.mapValues(Self.round2), "perQuestionType_unrounded": perQuestionType,
                "per_question": perQuestion, "per_question_unrounded": perQuestionUnrounded,
            ]
        }
    }

    /// Reads the three files and evaluates.
    public static func evaluate(questionsFile: String, annotationsFile: String, resultsFile: String) throws -> Metrics {
        let taskType = try loadQuestions(questionsFile)
        let annotations = try loadAnnotations(annotationsFile)
        let results = try loadResults(resultsFile)
        return try evaluate(annotations: annotations, results: results, multipleChoices: taskType.multipleChoices, resultsFile: resultsFile)
    }

    /// Scores `results` ((question id, answer) in file order; a question answered twice counts
    /// its last answer) against `annotations`; the sets of question ids must be equal, as
    /// `loadRes` asserts. With `multipleChoices` (task type "Multiple Choice") every answer must
    /// be one of its question's choices.
    public static func evaluate(annotations: [Annotation], results: [(questionID: Int, answer: String)],
                                multipleChoices: [Int: [String]]? = nil, resultsFile: String = "results") throws -> Metrics {
        guard !annotations.isEmpty else { throw VQAEvaluationError("the annotations hold no question: there is nothing to evaluate") }
        let annotated = Set(annotations.map(\.questionID))
        let answered = Set(results.map(\.questionID))
        if annotated != answered {
            let missing = annotations.map(\.questionID).filter { !answered.contains($0) }
            var seen = Set<Int>()
            let extra = results.map(\.questionID).filter { !annotated.contains($0) && seen.insert($0).inserted }
            var parts: [String] = []
            if !missing.isEmpty { parts.append("no result for question\(missing.count == 1 ? "" : "s") \(list(missing))") }
            if !extra.isEmpty { parts.append("result\(extra.count == 1 ? "" : "s") for question\(extra.count == 1 ? "" : "s") not in the annotations: \(list(extra))") }
            throw VQAEvaluationError("\(resultsFile): the results do not correspond to the annotated questions (\(parts.joined(separator: "; ")))")
        }
        var last: [Int: String] = [:]
        for r in results {
            if let choices = multipleChoices {
                guard choices[r.questionID]?.contains(where: { VQAAnswerNormalization.same($0, r.answer) }) == true else {
                    throw VQAEvaluationError("\(resultsFile): the answer to question \(r.questionID) is not one of its multiple choices")
                }
            }
            last[r.questionID] = r.answer
        }

        var scores: [QuestionScore] = []
        var byAnswerType: [String: [Double]] = [:], byQuestionType: [String: [Double]] = [:]
        var answerTypeOrder: [String] = [], questionTypeOrder: [String] = []
        for a in annotations {
            let result = last[a.questionID]!
            let normalised = VQAAnswerNormalization.result(result)
            let compared = VQAAnswerNormalization.humans(a.answers.map(\.answer))
            let records: [NSDictionary] = zip(a.answers, compared).map { human, answer in
                let d = human.record.mutableCopy() as! NSMutableDictionary
                d["answer"] = answer
                return d
            }
            // min(1, #matching among the others / 3) averaged over the humans, where "the
            // others" are the answer dicts not equal to the current one.
            var total = 0.0
            for current in records {
                let matching = records.filter { !$0.isEqual(current) && VQAAnswerNormalization.same(($0["answer"] as? String) ?? "", normalised) }.count
                total += min(1, Double(matching) / 3)
            }
            let accuracy = total / Double(records.count)
            scores.append(QuestionScore(questionID: a.questionID, result: result, normalisedResult: normalised, comparedHumanAnswers: compared,
                                        matchingHumans: compared.filter { VQAAnswerNormalization.same($0, normalised) }.count, accuracy: accuracy))
            if byAnswerType[a.answerType] == nil { answerTypeOrder.append(a.answerType) }
            byAnswerType[a.answerType, default: []].append(accuracy)
            if byQuestionType[a.questionType] == nil { questionTypeOrder.append(a.questionType) }
            byQuestionType[a.questionType, default: []].append(accuracy)
        }
        // Sums in question order, then 100 * sum / count, as setAccuracy does.
        func percent(_ values: [Double]) -> Double { 100 * values.reduce(0, +) / Double(values.count) }
        return Metrics(questions: scores, overall: percent(scores.map(\.accuracy)),
                       perAnswerType: byAnswerType.mapValues(percent), perQuestionType: byQuestionType.mapValues(percent))
    }

    private static func list(_ ids: [Int]) -> String {
        ids.prefix(5).map(String.init).joined(separator: ", ") + (ids.count > 5 ? " and \(ids.count - 5) more" : "")
    }

    // MARK: reading the files

    /// A VQA questions file: `loadRes` copies its `info`, `task_type`, `data_type`,
    /// `data_subtype`, `license` (each must be present) and indexes `questions`. Returns the
    /// multiple choices per question when the task type is "Multiple Choice".
    public static func loadQuestions(_ path: String) throws -> (taskType: String, multipleChoices: [Int: [String]]?) {
        let object = try wrap { try EvalJSON.object(EvalJSON.read(path), path, what: "a VQA questions file (info, task_type, data_type, data_subtype, license, questions)") }
        for key in ["info", "task_type", "data_type", "data_subtype", "license", "questions"] where object[key] == nil {
            throw VQAEvaluationError("\(path): missing key \"\(key)\" (the official loadRes reads it)")
        }
        let taskType = try wrap { try EvalJSON.string(object, "task_type", in: path, at: "the file") }
        let questions = try wrap { try EvalJSON.list(object, "questions", in: path) }
        var choices: [Int: [String]] = [:]
        for (i, q) in questions.enumerated() {
            let id = try wrap { try EvalJSON.integer(q, "question_id", in: path, at: "questions[\(i)]") }
            if taskType == "Multiple Choice" {
                guard let c = (q as? [String: Any])?["multiple_choices"] as? [String] else {
                    throw VQAEvaluationError("\(path): questions[\(i)]: \"multiple_choices\" is not a list of strings (task_type is Multiple Choice)")
                }
                choices[id] = c
            }
        }
        return (taskType, taskType == "Multiple Choice" ? choices : nil)
    }

    /// A VQA annotations file: `annotations` [{`question_id`, `question_type`, `answer_type`,
    /// `answers` [{`answer`, ...}]}], evaluated in file order. A question id listed twice is
    /// refused (the official index would keep the last entry and count it twice).
    public static func loadAnnotations(_ path: String) throws -> [Annotation] {
        let object = try wrap { try EvalJSON.object(EvalJSON.read(path), path, what: "a VQA annotations file with \"annotations\"") }
        let entries = try wrap { try EvalJSON.list(object, "annotations", in: path) }
        var seen = Set<Int>()
        return try entries.enumerated().map { i, entry in
            let place = "annotations[\(i)]"
            let id = try wrap { try EvalJSON.integer(entry, "question_id", in: path, at: place) }
            guard seen.insert(id).inserted else { throw VQAEvaluationError("\(path): \(place): question \(id) is annotated twice") }
            let questionType = try wrap { try EvalJSON.string(entry, "question_type", in: path, at: place) }
            let answerType = try wrap { try EvalJSON.string(entry, "answer_type", in: path, at: place) }
            let answers = try wrap { try EvalJSON.list(entry as? [String: Any] ?? [:], "answers", in: path) }
            guard !answers.isEmpty else { throw VQAEvaluationError("\(path): \(place) (question \(id)) has no human answer") }
            let humans: [HumanAnswer] = try answers.enumerated().map { j, a in
                let text = try wrap { try EvalJSON.string(a, "answer", in: path, at: "\(place).answers[\(j)]") }
                return HumanAnswer(answer: text, record: NSDictionary(dictionary: a as? [String: Any] ?? [:]))
            }
            return Annotation(questionID: id, questionType: questionType, answerType: answerType, answers: humans)
        }
    }

    /// A results file: a list of {`question_id`, `answer`} (other keys ignored), in file order.
    public static func loadResults(_ path: String) throws -> [(questionID: Int, answer: String)] {
        let root = try wrap { try EvalJSON.read(path) }
        guard let entries = root as? [Any] else {
            throw VQAEvaluationError("\(path): expected a JSON list of {\"question_id\": ..., \"answer\": ...} (results is not an array of objects)")
        }
        return try entries.enumerated().map { i, entry in
            try wrap { (try EvalJSON.integer(entry, "question_id", in: path, at: "entry \(i)"), try EvalJSON.string(entry, "answer", in: path, at: "entry \(i)")) }
        }
    }

    private static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as EvalJSONError { throw VQAEvaluationError(e.message) }
    }
}

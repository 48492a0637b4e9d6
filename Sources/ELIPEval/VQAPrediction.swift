import ELIPDistributed
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation

/// A VQA question split as VQA.py's evaluation reads it (vqa_dataset.py, split "test"): entries
/// `{"question_id", "question", "image", ...}`, the image `<root>/<image>`, the question through
/// `pre_question(q, 50)`. Entries may carry the human answers (`"answer": [str, ...]`, as
/// vqa_val.json does); then the split can be scored without the official annotation files. A
/// bad entry is an error naming it: an evaluation never drops questions.
public struct VQAQuestionSet {
    public let annotationFile: String
    public let imagePaths: [String]
    public let questions: [String]
    public let questionIDs: [Int]
    /// The human answers of every entry, or nil when any entry has none (a test split).
    public let humanAnswers: [[String]]?
    public var count: Int { questionIDs.count }

    public static func load(annotation path: String, imageRoot: String, cleaning style: CaptionStyle) throws -> VQAQuestionSet {
        guard let data = EvalFile.contents(path) else {
            throw VQAEvaluationError("\(path): cannot read (\(EvalFile.reason(path)))")
        }
        let node: Any
        do { node = try JSONSerialization.jsonObject(with: data) } catch {
            throw VQAEvaluationError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard let entries = node as? [Any] else {
            throw VQAEvaluationError("\(path): expected a JSON list of {\"question_id\", \"question\", \"image\"} entries")
        }
        guard !entries.isEmpty else { throw VQAEvaluationError("\(path): the question list is empty") }
        let root = try ImageRoot(imageRoot)
        var paths: [String] = [], questions: [String] = [], ids: [Int] = [], answers: [[String]] = []
        var allAnswered = true
        var seen: [Int: Int] = [:]
        for (k, e) in entries.enumerated() {
            let place = "entry \(k)"
            let id: Int
            do { id = try EvalJSON.integer(e, "question_id", in: path, at: place) } catch { throw VQAEvaluationError("\(error)") }
            if let first = seen[id] { throw VQAEvaluationError("\(path): \(place): question_id \(id) was already given by entry \(first)") }
            seen[id] = k
            guard let d = e as? [String: Any], let image = d["image"] as? String, !image.isEmpty else {
                throw VQAEvaluationError("\(path): \(place) (question \(id)) has no \"image\" string")
            }
            guard let question = d["question"] as? String else {
                throw VQAEvaluationError("\(path): \(place) (question \(id)) has no \"question\" string")
            }
            let cleaned = style.clean(question)
            guard !cleaned.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw VQAEvaluationError("\(path): \(place) (question \(id)): the question has no words after cleaning")
            }
            switch d["answer"] {
            case let list as [Any]:
                let strings = list.compactMap { $0 as? String }
                guard strings.count == list.count, !strings.isEmpty else {
                    throw VQAEvaluationError("\(path): \(place) (question \(id)): \"answer\" must be a non-empty list of strings (the human answers)")
                }
                answers.append(strings)
            case nil: allAnswered = false
            default:
                // A Visual Genome entry's single answer is training data, not a scored split.
                throw VQAEvaluationError("\(path): \(place) (question \(id)): \"answer\" must be a list of human answers")
            }
            do { paths.append(try root.file(image, what: "\(path): \(place)")) } catch { throw VQAEvaluationError("\(error)") }
            questions.append(cleaned)
            ids.append(id)
        }
        return VQAQuestionSet(annotationFile: path, imagePaths: paths, questions: questions, questionIDs: ids,
                              humanAnswers: allAnswered ? answers : nil)
    }

    /// The entries rank `rank` of `worldSize` answers: a contiguous block, the blocks of all ranks
    /// covering every entry exactly once (no padding with repeated questions).
    public func block(rank: Int, worldSize: Int) -> Range<Int> {
        evaluationBlock(count: count, rank: rank, worldSize: worldSize)
    }

    /// The split's human answers as official annotations (answer ids 1..n as in the VQA files:
    /// vqaEval leaves out the answer dicts equal to the current one, so the ids keep equal answers
    /// apart), or nil for a split without answers.
    public var annotations: [VQAEvaluation.Annotation]? {
        guard let humanAnswers else { return nil }
        return zip(questionIDs, humanAnswers).map { id, answers in
            VQAEvaluation.Annotation(questionID: id, questionType: "", answerType: "",
                                     answers: answers.enumerated().map { j, a in
                                         VQAEvaluation.HumanAnswer(answer: a, record: ["answer": a, "answer_id": j + 1] as NSDictionary)
                                     })
        }
    }

    /// The majority-answer baseline: the answer most questions have as their most frequent human
    /// answer (first in file order among equals), given to every question.
    public var majorityAnswer: String? {
        guard let humanAnswers else { return nil }
        var votes: [String: Int] = [:], order: [String] = []
        for answers in humanAnswers {
            var counts: [String: Int] = [:], first: [String] = []
            for a in answers {
                if counts[a] == nil { first.append(a) }
                counts[a, default: 0] += 1
            }
            let top = first.max { counts[$0]! < counts[$1]! || (counts[$0]! == counts[$1]! && first.firstIndex(of: $0)! > first.firstIndex(of: $1)!) }!
            if votes[top] == nil { order.append(top) }
            votes[top, default: 0] += 1
        }
        return order.max { votes[$0]! < votes[$1]! || (votes[$0]! == votes[$1]! && order.firstIndex(of: $0)! > order.firstIndex(of: $1)!) }
    }
}

/// VQA.py's evaluation: `rank_answer` with k candidates of the answer list for every question,
/// the best-ranked answer as the result. Under several ranks each answers a contiguous block;
/// the answers are summed over ranks, so every rank gets every question's answer, each
/// computed exactly once.
public final class VQAPredictor {
    let model: ALBEFVQAModel
    let tokenizer: BertTokenizer
    let comm: Communicator
    public var progress: (String) -> Void = { _ in }

    public init(model: ALBEFVQAModel, tokenizer: BertTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        comm = communicator
    }

    public func predict(_ d: VQAQuestionSet, answerList: [String], k: Int, batchSize: Int) throws -> [VQAAnswerResult] {
        guard !answerList.isEmpty else { throw VQAEvaluationError("the answer list is empty") }
        guard (1...answerList.count).contains(k) else {
            throw VQAEvaluationError("k_test \(k) must be in 1...\(answerList.count) (the answer list's size)")
        }
        let res = model.config.imageRes
        let answerTokens = try tokenizer.encodeBatch(answerList.map { $0 + "[SEP]" }, style: model.config.answerStyle, cleaned: true)
        let answers = try TextBatch(ids: answerTokens.inputIds.map(Int.init), mask: answerTokens.attentionMask.map(Int.init),
                                    batch: answerTokens.batchSize, length: answerTokens.length)
        // chosen[i] = answer-list index + 1 of question i (0: not answered on this rank).
        var chosen = [Int64](repeating: 0, count: d.count)
        var answeredBy = [Int64](repeating: 0, count: d.count)
        let mine = d.block(rank: comm.rank, worldSize: comm.size)
        var done = 0
        for lo in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let rows = lo..<min(lo + batchSize, mine.upperBound)
            var pixels: [Float] = []
            pixels.reserveCapacity(rows.count * 3 * res * res)
            for i in rows { try EvalImage.load(d.imagePaths[i], res: res, into: &pixels) }
            let tokens = try tokenizer.encodeBatch(rows.map { d.questions[$0] }, style: model.config.testQuestionStyle, cleaned: true)
            let questions = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                          batch: tokens.batchSize, length: tokens.length)
            let ranking = try model.rankAnswers(images: try Tensor(pixels, shape: [rows.count, 3, res, res]), questions: questions,
                                                answerList: answers, k: k)
            for (b, i) in rows.enumerated() {
                guard let best = ranking.topkIds[b].first, answerList.indices.contains(best),
                      ranking.topkProbs[b].allSatisfy(\.isFinite) else {
                    throw VQAEvaluationError("\(d.annotationFile): question \(d.questionIDs[i]): the ranking is not finite; the weights are damaged or diverged")
                }
                chosen[i] = Int64(best + 1)
                answeredBy[i] += 1
            }
            done += rows.count
            progress("eval-vqa: \(done)/\(mine.count) questions on rank \(comm.rank)")
        }
        try comm.allReduce(&chosen, op: .sum)
        try comm.allReduce(&answeredBy, op: .sum)
        return try d.questionIDs.indices.map { i in
            let id = d.questionIDs[i], c = chosen[i]
            guard answeredBy[i] == 1, c >= 1, c <= Int64(answerList.count) else {
                throw VQAEvaluationError("question \(id) was not answered exactly once over the ranks (internal error)")
            }
            return VQAAnswerResult(questionId: id, answer: answerList[Int(c) - 1])
        }
    }
}

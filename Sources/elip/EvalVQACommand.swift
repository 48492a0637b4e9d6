import ArgumentParser
import ELIPEval
import Foundation

struct EvalVQACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-vqa",
        abstract: "VQA accuracy of a results file as the official VQA evaluation (vqaEval.py, as ALBEF ships it) computes it.",
        discussion: """
        Every annotated question is scored: the result's answer is normalised (newlines and tabs to spaces, stripped, \
        punctuation rule, lower case, number words none/zero..ten to digits, articles a/an/the dropped, contractions \
        such as dont -> don't); the human answers get the punctuation rule only, and only when they are not all \
        identical. A question's accuracy is the mean over its human answers h of min(1, #(other answers equal to the \
        result) / 3). Reported in percent rounded to 2 decimals as VQAEval(n=2) does: overall, per answer type, per \
        question type, per question (unrounded values under *_unrounded).

        The results must answer exactly the annotated questions, as the official loadRes asserts; otherwise this \
        exits non-zero naming the missing or extra question ids. A question answered more than once counts its last \
        answer in file order (as the official index does).

        Example:
          elip eval-vqa --questions v2_OpenEnded_mscoco_val2014_questions.json \\
              --annotations v2_mscoco_val2014_annotations.json --results vqa_val_results.json --out vqa-metrics.json
        """
    )

    @Option(help: "VQA questions file (info, task_type, data_type, data_subtype, license, questions).")
    var questions: String
    @Option(help: "VQA annotations file: annotations [{question_id, question_type, answer_type, answers [{answer, ...}]}].")
    var annotations: String
    @Option(help: "Results file: [{\"question_id\", \"answer\"}], one per annotated question.")
    var results: String
    @Option(help: """
        Write the metrics as JSON to this file (overwritten if it exists): overall, perAnswerType, perQuestionType, \
        per_question {"<question_id>": acc} and the *_unrounded values.
        """)
    var out: String?

    func run() throws {
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--questions", questions), OutputGuard.Input("--annotations", annotations),
                                            OutputGuard.Input("--results", results)])
        let metrics: VQAEvaluation.Metrics
        do { metrics = try VQAEvaluation.evaluate(questionsFile: questions, annotationsFile: annotations, resultsFile: results) } catch let e as VQAEvaluationError {
            throw EvalCommandError(e.message)
        }
        let types = metrics.perAnswerType.keys.sorted().map { String(format: "%@ %.2f", $0, VQAEvaluation.Metrics.round2(metrics.perAnswerType[$0]!)) }
        print("eval-vqa: \(metrics.questions.count) questions: overall " + String(format: "%.2f", VQAEvaluation.Metrics.round2(metrics.overall))
              + (types.isEmpty ? "" : " (" + types.joined(separator: ", ") + ")"))
        if let out {
            let json = try JSONSerialization.data(withJSONObject: metrics.jsonObject(), options: [.prettyPrinted, .sortedKeys])
            do { try json.write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
            }
            print("wrote \(out)")
        }
    }
}

import ArgumentParser
import ELIPDistributed
import ELIPEval
import ELIPModel
import Foundation

struct EvalVQACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-vqa",
        abstract: "VQA: answer a question split with a fine-tuned checkpoint (rank_answer), and/or score results as the official VQA evaluation (vqaEval.py) does.",
        discussion: """
        Two modes.

        Answering (--checkpoint, --data, --answer-list, --write-results): the questions of --data \
        (ALBEF's vqa_test.json / vqa_val.json format: [{"question_id", "question", "image", ...}]; \
        images under --image-root, resized to image_res bicubically; questions through \
        pre_question(q, 50)) are answered as VQA.py does: rank_answer scores the k_test answers of the \
        answer list whose first token is likeliest and the best one is the answer. The results are \
        written in the official upload format [{"question_id", "answer"}] (test-dev / test-std go to \
        the evaluation server). Under mpirun rank r answers the r-th contiguous block of questions: \
        every question exactly once (the official sampler pads with repeats). They are then scored \
        when the split can be: against --questions/--annotations (the official files) if given, \
        else against the human answers the entries carry ("answer": [...], as vqa_val.json and \
        `elip synth`'s vqa_test.json do), with the majority-answer baseline (the answer most \
        questions have as their most frequent human answer, given to every question).

        Scoring (--questions, --annotations, --results): every annotated question is scored: the \
        result's answer is normalised (newlines and tabs to spaces, stripped, \
        punctuation rule, lower case, number words none/zero..ten to digits, articles a/an/the dropped, contractions \
        such as dont -> don't); the human answers get the punctuation rule only, and only when they are not all \
        identical. A question's accuracy is the mean over its human answers h of min(1, #(other answers equal to the \
        result) / 3). Reported in percent rounded to 2 decimals as VQAEval(n=2) does: overall, per answer type, per \
        question type, per question (unrounded values under *_unrounded).

        The results must answer exactly the annotated questions, as the official loadRes asserts; otherwise this \
        exits non-zero naming the missing or extra question ids. A question answered more than once counts its last \
        answer in file order (as the official index does).

        Examples:
          elip eval-vqa --questions v2_OpenEnded_mscoco_val2014_questions.json \\
              --annotations v2_mscoco_val2014_annotations.json --results vqa_val_results.json --out vqa-metrics.json
          mpirun -np 4 elip eval-vqa --checkpoint runs/vqa --data vqa_test.json --image-root /data/coco \\
              --answer-list answer_list.json --write-results vqa_test_result.json
        """
    )

    @Option(help: "VQA questions file (info, task_type, data_type, data_subtype, license, questions).")
    var questions: String?
    @Option(help: "VQA annotations file: annotations [{question_id, question_type, answer_type, answers [{answer, ...}]}].")
    var annotations: String?
    @Option(help: "Results file to score: [{\"question_id\", \"answer\"}], one per annotated question.")
    var results: String?
    @Option(help: """
        Write the metrics as JSON to this file (overwritten if it exists): overall, perAnswerType, perQuestionType, \
        per_question {"<question_id>": acc} and the *_unrounded values (answering mode: also majority_baseline and the run).
        """)
    var out: String?

    @Option(help: "Answering: checkpoint folder, run folder (newest valid checkpoint) of `elip finetune --task vqa`, or a state dict with --config.")
    var checkpoint: String?
    @Option(help: "Answering: question split [{\"question_id\", \"question\", \"image\"} (+ \"answer\": human answers)].")
    var data: String?
    @Option(help: "Answering: folder the split's image paths are relative to.")
    var imageRoot: String = "."
    @Option(help: "Answering: the candidate answers (answer_list.json: a JSON list of strings).")
    var answerList: String?
    @Option(help: "Answering: write the results here ([{\"question_id\", \"answer\"}], the upload format).")
    var writeResults: String?
    @Option(help: "Answering: candidates rank_answer re-scores per question (default: the config's k_test).")
    var k: Int?
    @Option(help: "Answering: task config (default: the one recorded in the checkpoint).")
    var config: String?
    @Option(help: "Answering: questions per forward (VQA.yaml's batch_size_test: 16).")
    var batch: Int = 16
    @Option(help: "Answering: WordPiece vocabulary (default: the config's data.vocab, else assets/bert-base-uncased-vocab.txt).")
    var vocab: String?
    @Option(help: "Answering: threads per rank for BLAS and the engine.")
    var threads: Int?
    @Flag(help: "No progress messages.")
    var quiet = false

    var answering: Bool { checkpoint != nil }

    func validate() throws {
        if answering {
            guard data != nil, answerList != nil, writeResults != nil else {
                throw ValidationError("--checkpoint answers questions: give --data, --answer-list and --write-results too")
            }
            guard results == nil else { throw ValidationError("--results scores an existing file; with --checkpoint the results are --write-results") }
            guard (questions == nil) == (annotations == nil) else { throw ValidationError("--questions and --annotations go together") }
            guard (1...(1 << 20)).contains(batch) else { throw ValidationError("--batch must be in [1, 1048576], got \(batch)") }
            if let k, k < 1 { throw ValidationError("--k must be at least 1, got \(k)") }
            try checkThreads(threads)
        } else {
            guard questions != nil, annotations != nil, results != nil else {
                throw ValidationError("give --questions, --annotations and --results (scoring), or --checkpoint with --data, --answer-list and --write-results (answering)")
            }
            for (name, given) in [("--data", data != nil), ("--answer-list", answerList != nil), ("--write-results", writeResults != nil)] where given {
                throw ValidationError("\(name) needs --checkpoint (answering mode)")
            }
        }
    }

    func run() throws {
        if answering { return try answer() }
        guard let questions, let annotations, let results else { return }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--questions", questions), OutputGuard.Input("--annotations", annotations),
                                            OutputGuard.Input("--results", results)])
        let metrics: VQAEvaluation.Metrics
        do { metrics = try VQAEvaluation.evaluate(questionsFile: questions, annotationsFile: annotations, resultsFile: results) } catch let e as VQAEvaluationError {
            throw EvalCommandError(e.message)
        }
        try report(metrics, extra: [:])
    }

    func report(_ metrics: VQAEvaluation.Metrics, extra: [String: Any], baseline: Double? = nil) throws {
        let named: [String] = metrics.perAnswerType.keys.filter { !$0.isEmpty }.sorted()
        let types: [String] = named.map { String(format: "%@ %.2f", $0, VQAEvaluation.Metrics.round2(metrics.perAnswerType[$0] ?? 0)) }
        var line = "eval-vqa: \(metrics.questions.count) questions: overall " + String(format: "%.2f", VQAEvaluation.Metrics.round2(metrics.overall))
        if !types.isEmpty { line += " (" + types.joined(separator: ", ") + ")" }
        if let baseline { line += String(format: "; majority-answer baseline %.2f", VQAEvaluation.Metrics.round2(baseline)) }
        print(line)
        if let out {
            var object = metrics.jsonObject()
            for (k, v) in extra { object[k] = v }
            let json = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            do { try json.write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
            }
            print("wrote \(out)")
        }
    }

    func answer() throws {
        guard let checkpoint, let data, let answerList, let writeResults else { return }
        try configureThreads(threads)
        let comm = try Communicator.world()
        let say: (String) -> Void = { m in if comm.isRoot && !quiet { fputs(m + "\n", stderr) } }
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config, defaultModel: ALBEFVQAModel.kind.name) { w in
            if comm.isRoot { fputs("warning: \(w)\n", stderr) }
        }
        let tokenizer = try loadTokenizer(vocab ?? ckpt.vocabulary)
        let model = try ckpt.loadModel(ALBEFVQAModel.self, for: "VQA evaluation")
        let split: VQAQuestionSet, candidates: [String]
        do {
            split = try VQAQuestionSet.load(annotation: data, imageRoot: imageRoot, cleaning: model.config.testQuestionStyle)
            candidates = try Self.readAnswerList(answerList)
        } catch let e as VQAEvaluationError {
            throw EvalCommandError(e.message)
        }
        var inputs = [OutputGuard.Input("--data", data), OutputGuard.Input("--answer-list", answerList)] + OutputGuard.inputs(of: ckpt, config: config, vocab: vocab)
        if let questions, let annotations { inputs += [OutputGuard.Input("--questions", questions), OutputGuard.Input("--annotations", annotations)] }
        for (option, path) in [("--write-results", writeResults), ("--out", out)] {
            try OutputGuard.check(path, option: option, inputs: inputs)
            try OutputGuard.check(path, option: option, against: split.imagePaths, what: "an image of --data")
        }
        if let out, (URL(fileURLWithPath: out).standardizedFileURL == URL(fileURLWithPath: writeResults).standardizedFileURL) {
            throw EvalCommandError("--out and --write-results name the same file \(out)")
        }
        let k = self.k ?? model.config.kTest
        say("eval-vqa: \(split.count) questions, \(candidates.count) candidate answers (k \(k)), weights \(ckpt.weightsPath)"
            + (ckpt.step.map { " (step \($0))" } ?? "") + ", image_res \(model.config.imageRes), \(comm.size) rank(s)")
        let start = Date()
        let predictor = VQAPredictor(model: model, tokenizer: tokenizer, communicator: comm)
        predictor.progress = { m in if !quiet && comm.isRoot { fputs(m + "\r", stderr) } }
        let answers: [VQAAnswerResult]
        do { answers = try predictor.predict(split, answerList: candidates, k: k, batchSize: batch) } catch let e as VQAEvaluationError {
            throw EvalCommandError(e.message)
        }
        let seconds = Date().timeIntervalSince(start)
        if comm.isRoot {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            do { try encoder.encode(answers).write(to: URL(fileURLWithPath: writeResults), options: .atomic) } catch {
                throw EvalCommandError("--write-results \(writeResults): cannot write (\(error.localizedDescription))")
            }
            print(String(format: "eval-vqa: answered %d questions in %.1f s; wrote %@", answers.count, seconds, writeResults))
            let pairs = answers.map { (questionID: $0.questionId, answer: $0.answer) }
            var extra: [String: Any] = ["checkpoint": checkpoint, "weights": ckpt.weightsPath, "data": data, "world_size": comm.size,
                                        "k_test": k, "results": writeResults, "metric": "vqa_accuracy"]
            if let step = ckpt.step { extra["step"] = step }
            do {
                if let questions, let annotations {
                    _ = try VQAEvaluation.loadQuestions(questions)
                    try report(VQAEvaluation.evaluate(annotations: VQAEvaluation.loadAnnotations(annotations), results: pairs, resultsFile: writeResults), extra: extra)
                } else if let annotated = split.annotations, let majority = split.majorityAnswer {
                    let baseline = try VQAEvaluation.evaluate(annotations: annotated, results: split.questionIDs.map { ($0, majority) })
                    extra["majority_baseline"] = VQAEvaluation.Metrics.round2(baseline.overall)
                    extra["majority_answer"] = majority
                    try report(VQAEvaluation.evaluate(annotations: annotated, results: pairs, resultsFile: writeResults), extra: extra, baseline: baseline.overall)
                } else {
                    print("eval-vqa: \(data) carries no human answers: not scored (upload \(writeResults) to the evaluation server)")
                }
            } catch let e as VQAEvaluationError {
                throw EvalCommandError(e.message)
            }
        }
        try comm.finalize()
    }

    /// answer_list.json: a non-empty JSON list of strings.
    static func readAnswerList(_ path: String) throws -> [String] {
        let node = try EvalJSON.read(path)
        guard let list = node as? [Any], !list.isEmpty else { throw VQAEvaluationError("\(path): expected a non-empty JSON list of answer strings") }
        return try list.enumerated().map { i, a in
            guard let s = a as? String, !s.isEmpty else { throw VQAEvaluationError("\(path): entry \(i) is not a non-empty string") }
            return s
        }
    }
}

import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

/// The answers of a VQA batch: every question's answers concatenated in question order
/// (`[CLS] answer [SEP]`, padded), their weights, and how many belong to each question.
public struct AnswerBatch {
    public let text: TextBatch
    public let weights: [Float]
    public let counts: [Int]
    public init(text: TextBatch, weights: [Float], counts: [Int]) {
        self.text = text
        self.weights = weights
        self.counts = counts
    }
}

/// ALBEF's answer decoder (`text_decoder`, a BertLMHeadModel): embeddings, causal BERT layers
/// that all cross-attend to the question states, and the MLM-style LM head tied to its word
/// embeddings.
public struct ALBEFAnswerDecoder {
    public let embeddings: BertEmbeddings, layers: BertLayerStack, head: BertLMHead

    init(_ scope: Scope, config: BertConfig) throws {
        let bert = scope["bert"]
        embeddings = try BertEmbeddings(bert["embeddings"], config: config)
        layers = try BertLayerStack(bert["encoder"], config: config, layers: 0..<config.numHiddenLayers, crossAttention: { _ in true }, causal: true)
        head = try BertLMHead(scope["cls"]["predictions"], config: config, wordEmbeddings: embeddings.wordEmbeddings.weight)
    }

    /// Decoder states [A, L, H] of `answers`; row a cross-attends to `questions[a]` [A, Lq, H]
    /// with the additive key mask `questionMask` [A * Lq] (question padding).
    func states(_ answers: TextBatch, questions: Tensor, questionMask: [Float], dropout: DropoutStream?) throws -> Tensor {
        guard questions.rank == 3, questions.shape[0] == answers.batch, questionMask.count == questions.shape[0] * questions.shape[1] else {
            throw TensorError.shapeMismatch(op: "answer decoder (answers vs question states)", lhs: [answers.batch, answers.length], rhs: questions.shape)
        }
        let selfMask: AttentionMask = .causal(keyPadding: answers.additiveMask)
        var x = try embeddings(answers, dropout: dropout)
        for layer in layers.layers {
            x = try layer(x, mask: selfMask, cross: .context(questions, mask: .keyPadding(questionMask)), dropout: dropout)
        }
        return x
    }

    /// Vocabulary logits of the rows of `states` [A, L, H] that predict a token, and what they
    /// predict: targets are the ids shifted by one with [PAD] ignored (answer_targets of model_vqa.py).
    func predictions(_ states: Tensor, answers: TextBatch, pad: Int) throws -> (logits: Tensor, labels: [Int], sequenceOf: [Int]) {
        let targets = answers.ids.map { $0 == pad ? -100 : $0 }
        let (rows, labels) = CausalLanguageModeling.predictingRows(targets: targets, batch: answers.batch, length: answers.length)
        guard !rows.isEmpty else {
            throw TensorError.invalidArgument(op: "answer decoder", reason: "no answer has a token after [CLS]")
        }
        let h = states.shape[2]
        let logits = try head(states.reshaped([answers.batch * answers.length, h]).gatherRows(rows))
        return (logits, labels, rows.map { $0 / answers.length })
    }
}

/// What `rank_answer` found for a batch of questions (model_vqa.py, SPEC-ALBEF-TASKS §3).
public struct AnswerRanking {
    /// [questions, answer list]: probability of each answer's first token after [CLS].
    public var probFirstToken: [Float]
    /// [questions * k]: summed token loss of each question's k candidates (first-token order).
    public var answerLoss: [Float]
    /// Per question, k answer-list indices, best first, and their re-ranked probabilities.
    public var topkIds: [[Int]]
    public var topkProbs: [[Float]]
    public init(probFirstToken: [Float], answerLoss: [Float], topkIds: [[Int]], topkProbs: [[Float]]) {
        self.probFirstToken = probFirstToken
        self.answerLoss = answerLoss
        self.topkIds = topkIds
        self.topkProbs = topkProbs
    }
}

/// VQA fine-tuning of ALBEF (SPEC-ALBEF-TASKS §3; models/model_vqa.py, VQA.py): question states
/// from the ViT and the fusion text encoder, a causal answer decoder cross-attending to them, the
/// weighted answer loss (token sums, divided by the number of questions) distilled from a
/// momentum copy, and `rank_answer` over a fixed answer list at test time.
public final class ALBEFVQAModel: TrainableModel {
    public static let kind = ModelKind(
        name: "albef-vqa", about: "ALBEF VQA fine-tuning (ViT + BERT fusion question encoder, 6-layer answer decoder, momentum distillation, rank_answer)",
        readConfig: { try ALBEFVQAConfig.read($0, location: $1) },
        presets: ["albef-vqa-base": { ALBEFVQAConfig() }],
        referenceCase: { try ALBEFVQAModel.referenceCase($0) }, isReferenceCase: { ALBEFVQAModel.isReferenceCase($0) })

    public let config: ALBEFVQAConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig? {
        get { nil }
        set {}  // fine-tuning never prunes
    }
    public let parameters: ParameterArena
    public let momentumParameters: ParameterArena
    public let encoders: ALBEFTaskEncoders, decoder: ALBEFAnswerDecoder
    let encodersM: ALBEFTaskEncoders?, decoderM: ALBEFAnswerDecoder?
    public let momentum: MomentumTwin?

    public convenience init(config: ALBEFVQAConfig) throws {
        let probe = try ALBEFVQAModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used),
                      momentumParameters: ParameterArena(capacity: max(probe.momentumParameters.used, 1), withGradients: false))
    }

    /// Parameter counts of a configuration without allocating it: trainable (online), of which
    /// the answer decoder, and momentum.
    public static func parameterCounts(_ config: ALBEFVQAConfig) throws -> (trainable: Int, decoder: Int, momentum: Int) {
        let probe = try ALBEFVQAModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        let decoder = probe.parameters.entries.filter { $0.name.hasPrefix("text_decoder.") }.reduce(0) { $0 + $1.count }
        return (probe.parameters.parameterCount, decoder, probe.momentumParameters.parameterCount)
    }

    init(config: ALBEFVQAConfig, parameters: ParameterArena, momentumParameters: ParameterArena) throws {
        self.config = config
        self.parameters = parameters
        self.momentumParameters = momentumParameters
        // model_vqa.py's order: visual_encoder, text_encoder, text_decoder (then the momentum copies).
        let on = Scope(arena: parameters)
        encoders = try ALBEFTaskEncoders(on, vision: config.vision, imageRes: config.imageRes, bert: config.bert)
        decoder = try ALBEFAnswerDecoder(on["text_decoder"], config: config.decoderBert)
        if config.distill {
            let mo = Scope(arena: momentumParameters)
            encodersM = try ALBEFTaskEncoders(mo, suffix: "_m", vision: config.vision, imageRes: config.imageRes, bert: config.bert)
            decoderM = try ALBEFAnswerDecoder(mo["text_decoder_m"], config: config.decoderBert)
            momentum = try MomentumTwin(online: parameters, momentum: momentumParameters, coefficient: config.momentum)
        } else {
            encodersM = nil
            decoderM = nil
            momentum = nil
        }
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable)]
        if let momentum {
            l.arenas.append(.init(momentumParameters, role: .momentum, whenAbsent: { momentum.copyOnlineToMomentum() }))
        }
        let n = config.bert.maxPositionEmbeddings
        let text = config.distill ? ["text_encoder", "text_encoder_m"] : ["text_encoder"]
        let decoders = config.distill ? ["text_decoder.bert", "text_decoder_m.bert"] : ["text_decoder.bert"]
        l.constants = (text + decoders).map { ("\($0).embeddings.position_ids", (0..<n).map(Int64.init), [1, n]) }
        return l
    }

    /// Random online weights, momentum = online (model_vqa.py's copy_params at construction).
    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        momentum?.copyOnlineToMomentum()
    }

    /// Loads a pre-training checkpoint as VQA.py does (`bert.` dropped; text layers >= 6, or
    /// >= `decoder_init_from_layer`, become decoder layers 0.., embeddings and MLM head the
    /// decoder's; position grids resized).
    @discardableResult
    public func loadPretrainingCheckpoint(_ file: SafetensorsFile) throws -> ALBEFTaskCheckpoint.Plan {
        try ALBEFTaskCheckpoint.load(.vqa, from: file, into: stateLayout, scriptFusion: config.decoderInitFromLayer)
    }

    public var pretrainedSources: [String] { [] }
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        throw CheckpointError(file: "import", message: "VQA starts from an ALBEF pre-training checkpoint (loadPretrainingCheckpoint), not from DeiT/BERT files")
    }

    /// Question states [B, Lq, H]: text_encoder in multi_modal mode over the image tokens.
    static func questionStates(_ images: Tensor, _ questions: TextBatch, _ encoders: ALBEFTaskEncoders, dropout: DropoutStream?) throws -> Tensor {
        try encoders.multimodal(questions, imageTokens: encoders.images(images), dropout: dropout)
    }

    /// Question b's states and key mask repeated for each of its rows in `rows` (answers in order).
    static func repeated(_ states: Tensor, _ questions: TextBatch, rows: [Int]) throws -> (states: Tensor, mask: [Float]) {
        (try states.gatherRows(rows), try questions.rows(rows).additiveMask)
    }

    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let questions = batch.text, bs = questions.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "VQA batch (images vs questions)", lhs: batch.images.shape, rhs: [bs, questions.length])
        }
        guard let answers = batch.answers else {
            throw TensorError.invalidArgument(op: "VQA step", reason: "the batch has no answers (answer ids, weights and counts per question)")
        }
        let a = answers.text.batch
        guard answers.counts.count == bs else {
            throw TensorError.invalidArgument(op: "VQA step", reason: "answer_count has \(answers.counts.count) entries for \(bs) questions")
        }
        if let bad = answers.counts.first(where: { $0 < 0 }) {
            throw TensorError.invalidArgument(op: "VQA step", reason: "answer count \(bad) is negative")
        }
        guard answers.counts.reduce(0, +) == a, a > 0 else {
            throw TensorError.invalidArgument(op: "VQA step", reason: "answer counts sum to \(answers.counts.reduce(0, +)) but the batch has \(a) answers (need at least one)")
        }
        guard answers.weights.count == a, answers.weights.allSatisfy({ $0.isFinite }) else {
            throw TensorError.invalidArgument(op: "VQA step", reason: "need one finite weight per answer (\(a)), got \(answers.weights.count)")
        }
        let alpha = c.recorded.float("alpha") ?? (config.warmUp
            ? distillationWeight(config.alpha, rampEpochs: 1, epoch: c.progress.epoch, iteration: c.progress.iteration,
                                 iterationsPerEpoch: c.progress.iterationsPerEpoch)
            : config.alpha)
        let b = config.bert, pad = config.specialTokens.pad
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil
        let rows = answers.counts.enumerated().flatMap { Array(repeating: $0.offset, count: $0.element) }

        let states = try Self.questionStates(batch.images, questions, encoders, dropout: dropout)
        let (q, qMask) = try Self.repeated(states, questions, rows: rows)
        var teacher: Tensor? = nil
        if let momentum, let encodersM, let decoderM {
            teacher = try Autograd.noGrad {
                momentum.update()
                let statesM = try Self.questionStates(batch.images, questions, encodersM, dropout: nil)
                let (qm, _) = try Self.repeated(statesM, questions, rows: rows)
                let hiddenM = try decoderM.states(answers.text, questions: qm, questionMask: qMask, dropout: nil)
                return try decoderM.predictions(hiddenM, answers: answers.text, pad: pad).logits.softmax()
            }
        }
        let hidden = try decoder.states(answers.text, questions: q, questionMask: qMask, dropout: dropout)
        let p = try decoder.predictions(hidden, answers: answers.text, pad: pad)
        let (loss, perAnswer) = try AnswerSequenceLoss.loss(logits: p.logits, labels: p.labels, sequenceOf: p.sequenceOf, sequences: a,
                                                             teacherProbabilities: teacher, alpha: alpha, weights: answers.weights,
                                                             scale: 1 / Float(bs))
        var out = StepOutput(total: loss, losses: ["loss": loss])
        out.tensors = ["answer_loss": try Tensor(perAnswer, shape: [a])]
        if teacher != nil { out.scalars = ["alpha": Double(alpha)] }
        return out
    }

    /// model_vqa.py's `rank_answer` (no gradient): per question, the `k` answers of `answerList`
    /// (`[CLS] answer [SEP]`, padded) whose first token is likeliest after [CLS], re-scored by
    /// `log p(first token) - sum of the answer's token losses` (the first token counts twice, as
    /// in the official code) and re-sorted by the softmax of those scores. Both selections order
    /// ties as PyTorch's CPU topk does (`TorchTopK`): answers sharing a first token tie.
    public func rankAnswers(images: Tensor, questions: TextBatch, answerList: TextBatch, k: Int) throws -> AnswerRanking {
        let bs = questions.batch, n = answerList.batch, la = answerList.length
        guard images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "rank_answer (images vs questions)", lhs: images.shape, rhs: [bs, questions.length])
        }
        guard la >= 2, n >= 1 else {
            throw TensorError.invalidArgument(op: "rank_answer", reason: "the answer list needs at least one answer of [CLS] plus a token (got \(n) x \(la))")
        }
        guard k >= 1, k <= n else {
            throw TensorError.invalidArgument(op: "rank_answer", reason: "k_test \(k) must be in 1...\(n) (the answer list's size)")
        }
        let pad = config.specialTokens.pad
        return try Autograd.noGrad {
            let states = try Self.questionStates(images, questions, encoders, dropout: nil)
            // Step 1: the decoder on [CLS] alone (column 0 of the first answer, as the official code takes it).
            let start = try TextBatch(ids: Array(repeating: answerList.ids[0], count: bs), mask: Array(repeating: 1, count: bs), batch: bs, length: 1)
            let first = try decoder.states(start, questions: states, questionMask: questions.additiveMask, dropout: nil)
            let vocab = try decoder.head(first.reshaped([bs, first.shape[2]])).softmax().toArray()
            let v = vocab.count / bs
            let firstTokens = (0..<n).map { answerList.ids[$0 * la + 1] }
            if let bad = firstTokens.first(where: { $0 < 0 || $0 >= v }) {
                throw TensorError.invalidArgument(op: "rank_answer", reason: "answer token id \(bad) outside the vocabulary [0, \(v))")
            }
            var ranking = AnswerRanking(probFirstToken: [], answerLoss: [], topkIds: [], topkProbs: [])
            var candidates: [Int] = [], firstProbs: [Float] = []
            for q in 0..<bs {
                let probs = firstTokens.map { vocab[q * v + $0] }
                ranking.probFirstToken += probs
                let top = try TorchTopK.largest(probs, k: k)
                candidates += top
                firstProbs += top.map { probs[$0] }
            }
            // Step 2: the k candidates of each question, its states tiled k times.
            let rows = (0..<bs).flatMap { Array(repeating: $0, count: k) }
            let (q, qMask) = try Self.repeated(states, questions, rows: rows)
            let answers = try answerList.rows(candidates)
            let hidden = try decoder.states(answers, questions: q, questionMask: qMask, dropout: nil)
            let p = try decoder.predictions(hidden, answers: answers, pad: pad)
            let losses = try AnswerSequenceLoss.loss(logits: p.logits, labels: p.labels, sequenceOf: p.sequenceOf, sequences: bs * k,
                                                     teacherProbabilities: nil, alpha: 0).perSequence
            ranking.answerLoss = losses
            for qi in 0..<bs {
                let scores = (0..<k).map { j in log(firstProbs[qi * k + j]) - losses[qi * k + j] }
                let m = scores.max()!
                let e = scores.map { exp($0 - m) }, z = e.reduce(0, +)
                let probs = e.map { $0 / z }
                let order = try TorchTopK.largest(probs, k: k)
                ranking.topkIds.append(order.map { candidates[qi * k + $0] })
                ranking.topkProbs.append(order.map { probs[$0] })
            }
            return ranking
        }
    }

    // MARK: reference case (shared/reference/albef-vqa-tiny layout)

    static func isReferenceCase(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("VQA.yaml"))
    }

    /// VQA.yaml (+ its bert_config), weights.safetensors, batch.safetensors (image, question and
    /// answer ids/masks, answer_weights, answer_count, alpha, eval.*). The evaluation
    /// (`rank_answer` on eval.image/eval.question_* against eval.answer_list_*) runs with the
    /// weights before the step.
    static func referenceCase(_ dir: String) throws -> ReferenceCase {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let root = try ConfigSection.load(path("VQA.yaml"), ignoring: .trainingFile)
        let config = try ALBEFVQAConfig.read(root, location: ConfigLocation(searchFolders: [dir]))
        // Training keys: the batch file fixes the batch and the answer list; the schedule is not part of one step.
        try ALBEFTaskReference.readTrainingKeys(root, task: "vqa")
        _ = try root.int("batch_size_train", in: 1...(1 << 20))
        _ = try root.int("batch_size_test", in: 1...(1 << 20))
        _ = try root.choice("eos", ["[SEP]"])
        let answerListName = try root.string("answer_list") ?? "answer_list.json"
        try root.finish()
        try config.validate(file: root.file)
        let model = try ALBEFVQAModel(config: config)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: path("weights.safetensors")))
        let f = try SafetensorsFile(path: path("batch.safetensors"))
        func text(_ prefix: String) throws -> TextBatch {
            let e = try f.entry(prefix + "input_ids")
            guard e.shape.count == 2 else { throw CheckpointError(file: f.path, message: "\(prefix)input_ids must be [N, L], got \(e.shape)") }
            return try TextBatch(ids: f.int64s(prefix + "input_ids").map { Int($0) }, mask: f.int64s(prefix + "attention_mask").map { Int($0) },
                                 batch: e.shape[0], length: e.shape[1])
        }
        func images(_ name: String) throws -> Tensor { try Tensor(f.floats(name), shape: f.entry(name).shape) }
        var batch = ImageTextBatch(images: try images("image"), text: try text("question_"))
        batch.answers = AnswerBatch(text: try text("answer_"), weights: try f.floats("answer_weights"),
                                    counts: try f.int64s("answer_count").map { Int($0) })
        var context = StepContext(seed: 0, dropout: false)
        context.recorded.floats["alpha"] = [try f.floats("alpha").first ?? config.alpha]
        let evalImages = try images("eval.image"), evalQuestions = try text("eval.question_"), answerList = try text("eval.answer_list_")
        let questionIds = try f.int64s("eval.question_id").map { Int($0) }
        let ranking = RankingBox()
        var c = ReferenceCase(model: model, batch: batch, context: context, normFloor: 1e-6) {
            let r = try model.rankAnswers(images: evalImages, questions: evalQuestions, answerList: answerList, k: config.kTest)
            ranking.value = r
            let bs = evalQuestions.batch, k = config.kTest
            return ["eval.prob_first_token": try Tensor(r.probFirstToken, shape: [bs, answerList.batch]),
                    "eval.answer_loss": try Tensor(r.answerLoss, shape: [bs * k]),
                    "eval.topk_ids": try Tensor(r.topkIds.flatMap { $0.map(Float.init) }, shape: [bs, k]),
                    "eval.topk_probs": try Tensor(r.topkProbs.flatMap { $0 }, shape: [bs, k])]
        }
        c.keyBiasGradientFloor = 1e-5
        c.integerEvaluationOutputs = ["eval.topk_ids"]
        c.absoluteEvaluationTolerance = ["eval.topk_probs": 1e-4]
        if FileManager.default.fileExists(atPath: path("eval_result.json")) {
            let answerFile = path(answerListName)
            c.extraChecks = {
                guard let r = ranking.value else { return [] }
                return [try answerCheck(ranking: r, questionIds: questionIds, answerListFile: answerFile, resultFile: path("eval_result.json"))]
            }
        }
        return c
    }

    /// Set by the evaluation closure, read by the answer check that runs after it.
    private final class RankingBox { var value: AnswerRanking? }

    /// The answers VQA.py writes (`{"question_id", "answer"}` per question: the best-ranked
    /// answer-list entry) compared with the case's `eval_result.json`: the number of questions
    /// whose answer or id differs (0 to pass).
    static func answerCheck(ranking: AnswerRanking, questionIds: [Int], answerListFile: String, resultFile: String) throws -> ReferenceStep.GroupResult {
        let list = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: answerListFile)))
        guard let answers = list as? [String] else {
            throw CheckpointError(file: answerListFile, message: "the answer list must be a JSON array of strings")
        }
        let mine = try VQAAnswerResult.results(ranking: ranking, questionIds: questionIds, answerList: answers)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: resultFile)))
        guard let rows = ((json as? [String: Any])?["result"] ?? json) as? [[String: Any]] else {
            throw CheckpointError(file: resultFile, message: "expected a list of {question_id, answer} (or {\"result\": [...]})")
        }
        let expected: [(Int, String)] = try rows.enumerated().map { i, row in
            guard let id = row["question_id"] as? Int, let answer = row["answer"] as? String else {
                throw CheckpointError(file: resultFile, message: "entry \(i) needs an integer question_id and a string answer")
            }
            return (id, answer)
        }
        var wrong = abs(expected.count - mine.count), first = ""
        for (e, m) in zip(expected, mine) where e.0 != m.questionId || e.1 != m.answer {
            wrong += 1
            if first.isEmpty { first = "question \(e.0): \"\(m.answer)\" (expected \"\(e.1)\")" }
        }
        return ReferenceStep.GroupResult(group: "answers", worstName: first.isEmpty ? "eval_result.json" : first, worstError: Double(wrong), tolerance: 0, compared: expected.count)
    }
}

/// One line of VQA.py's result file (`[{"question_id": int, "answer": str}]`, the server format).
public struct VQAAnswerResult: Codable, Equatable {
    public var questionId: Int
    public var answer: String
    public init(questionId: Int, answer: String) {
        self.questionId = questionId
        self.answer = answer
    }
    enum CodingKeys: String, CodingKey {
        case questionId = "question_id"
        case answer
    }

    /// The best-ranked answer of each question.
    public static func results(ranking: AnswerRanking, questionIds: [Int], answerList: [String]) throws -> [VQAAnswerResult] {
        guard questionIds.count == ranking.topkIds.count else {
            throw TensorError.shapeMismatch(op: "VQA results (question ids vs ranked questions)", lhs: [questionIds.count], rhs: [ranking.topkIds.count])
        }
        return try zip(questionIds, ranking.topkIds).map { id, top in
            guard let best = top.first, answerList.indices.contains(best) else {
                throw TensorError.invalidArgument(op: "VQA results", reason: "question \(id): ranked index \(top.first ?? -1) outside the answer list of \(answerList.count)")
            }
            return VQAAnswerResult(questionId: id, answer: answerList[best])
        }
    }
}

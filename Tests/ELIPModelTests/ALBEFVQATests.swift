import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// The VQA task model against the official step (../shared/reference/albef-vqa-tiny), its
/// checkpoint loading from a pre-training state dict, rank_answer's invariants and its input checks.
final class ALBEFVQATests: XCTestCase {
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/albef-vqa-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "albef-vqa")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "evaluation", "evaluation indices", "absolute: topk_probs",
                                                   "gradients", ReferenceStep.keyBiasGroup, "momentum (after EMA)", "answers"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        XCTAssertEqual(results.first { $0.group == "answers" }?.compared, 3)
        for n in expected.names { XCTAssertTrue(output.floats[n] != nil || output.ints[n] != nil, n) }
        XCTAssertGreaterThan(expected.names.filter { $0.hasPrefix("grad.") }.count, 500)
        XCTAssertEqual(output.ints["eval.topk_ids"]?.values, try expected.int64s("eval.topk_ids"))
    }

    /// The base model's size as SPEC-ALBEF-TASKS §3 counts it (PyTorch's parameters(): ties once).
    func testBaseParameterCounts() throws {
        let counts = try ALBEFVQAModel.parameterCounts(ALBEFVQAConfig())
        XCTAssertEqual(counts.trainable, 290_336_058)
        XCTAssertEqual(counts.decoder, 81_170_490)
        XCTAssertEqual(counts.momentum, 290_336_058)
    }

    /// A result file whose answer differs from the ranking is reported (not silently passed).
    func testAnswerMismatchIsReported() throws {
        let dir = try SharedData.path("reference/albef-vqa-tiny")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("elip-vqa-case-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where f != "eval_result.json" {
            try FileManager.default.createSymbolicLink(atPath: tmp.appendingPathComponent(f).path, withDestinationPath: (dir as NSString).appendingPathComponent(f))
        }
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("eval_result.json")))) as! [String: Any]
        var rows = original["result"] as! [[String: Any]]
        rows[1]["answer"] = "no such answer"
        try JSONSerialization.data(withJSONObject: ["result": rows]).write(to: tmp.appendingPathComponent("eval_result.json"))
        let output = try ReferenceStep.run(caseDirectory: tmp.path)
        let results = try ReferenceStep.compare(output, expected: SafetensorsFile(path: tmp.appendingPathComponent("expected.safetensors").path))
        let answers = try XCTUnwrap(results.first { $0.group == "answers" })
        XCTAssertFalse(answers.passed)
        XCTAssertEqual(answers.worstError, 1)
        XCTAssertTrue(answers.worstName.contains("no such answer"), answers.worstName)
    }

    /// 8 BERT layers with fusion from 6 (the scripts hard-code 6): the VQA decoder has 2 layers.
    private func tinyPretrain() throws -> ALBEFConfig {
        var c = try tinyConfig(imageRes: 32, prune: nil)
        c.bert.numHiddenLayers = 8
        c.bert.fusionLayer = 6
        try c.validate(file: "tiny")
        return c
    }

    private func tinyVQA(imageRes: Int = 32, distill: Bool = true) throws -> ALBEFVQAConfig {
        let p = try tinyPretrain()
        var c = ALBEFVQAConfig()
        c.imageRes = imageRes
        c.vision = p.vision
        c.bert = p.bert
        c.decoderLayers = 2
        c.distill = distill
        c.kTest = 3
        try c.validate(file: "tiny")
        return c
    }

    /// VQA.py's loading: encoder = the pre-trained text+fusion encoder, decoder layers 0-1 =
    /// fusion layers 6-7, decoder embeddings and LM head = the pre-trained ones (tied table
    /// included), momentum likewise, position grids resized 4x4 -> 6x6; nothing kept at init.
    func testLoadsAPretrainingCheckpoint() throws {
        let pretrain = try ALBEFModel(config: tinyPretrain())
        try pretrain.initialiseRandomly(seed: 3)
        pretrain.momentumParameters.initialise(seed: 9)
        var w = SafetensorsWriter()
        try StateDict.add(pretrain.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-vqa-load-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)

        let vqa = try ALBEFVQAModel(config: tinyVQA(imageRes: 48))
        try vqa.initialiseRandomly(seed: 5)
        let plan = try vqa.loadPretrainingCheckpoint(SafetensorsFile(path: path))
        XCTAssertEqual(plan.keptAtInit, [])
        func online(_ n: String) -> [Float] { (vqa.parameters.tensor(n) ?? vqa.momentumParameters.tensor(n))!.toArray() }
        func source(_ n: String) -> [Float] { (pretrain.parameters.tensor(n) ?? pretrain.momentumParameters.tensor(n))!.toArray() }
        for (mine, theirs) in [("text_decoder.bert.encoder.layer.0.crossattention.self.key.weight", "text_encoder.bert.encoder.layer.6.crossattention.self.key.weight"),
                               ("text_decoder.bert.encoder.layer.1.output.dense.weight", "text_encoder.bert.encoder.layer.7.output.dense.weight"),
                               ("text_decoder.bert.embeddings.word_embeddings.weight", "text_encoder.bert.embeddings.word_embeddings.weight"),
                               ("text_decoder.cls.predictions.transform.dense.weight", "text_encoder.cls.predictions.transform.dense.weight"),
                               ("text_decoder.cls.predictions.bias", "text_encoder.cls.predictions.bias"),
                               ("text_encoder.encoder.layer.7.attention.self.query.weight", "text_encoder.bert.encoder.layer.7.attention.self.query.weight"),
                               ("text_decoder_m.bert.encoder.layer.0.attention.self.value.bias", "text_encoder_m.bert.encoder.layer.6.attention.self.value.bias"),
                               ("text_decoder_m.cls.predictions.bias", "text_encoder_m.cls.predictions.bias")] {
            XCTAssertEqual(online(mine), source(theirs), mine)
        }
        // The LM head's output projection is the (loaded) decoder word table.
        XCTAssertTrue(vqa.decoder.head.decoderWeight === vqa.decoder.embeddings.wordEmbeddings.weight)
        for name in ["visual_encoder.pos_embed", "visual_encoder_m.pos_embed"] {
            let s = (pretrain.parameters.tensor(name) ?? pretrain.momentumParameters.tensor(name))!
            XCTAssertEqual(online(name), try PretrainedImport.resizePositionEmbedding(s.toArray(), shape: s.shape, toTokens: 37), name)
        }
    }

    private func inputs(_ config: ALBEFVQAConfig) throws -> (images: Tensor, questions: TextBatch, answers: TextBatch) {
        var g = SeededGenerator(seed: 2)
        let r = config.imageRes
        let images = try Tensor((0..<(2 * 3 * r * r)).map { _ in g.nextUniform() - 0.5 }, shape: [2, 3, r, r])
        let questions = try TextBatch(ids: [101, 7, 8, 0, 101, 9, 10, 11], mask: [1, 1, 1, 0, 1, 1, 1, 1], batch: 2, length: 4)
        // [CLS] answer [SEP] padded; answers 1 and 2 share their first token (a first-token tie).
        let answers = try TextBatch(ids: [101, 20, 102, 0, 101, 21, 22, 102, 101, 21, 102, 0, 101, 23, 102, 0],
                                    mask: [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0], batch: 4, length: 4)
        return (images, questions, answers)
    }

    /// Without distillation the loss is sum_a weight_a * (token-sum CE of answer a) / questions,
    /// checked against rank_answer's independent per-answer losses of the same answers.
    func testLossIsTheWeightedTokenSumOverQuestions() throws {
        let config = try tinyVQA(distill: false)
        let model = try ALBEFVQAModel(config: config)
        try model.initialiseRandomly(seed: 1)
        XCTAssertEqual(model.stateLayout.arenas.count, 1)
        let (images, questions, answers) = try inputs(config)
        var batch = ImageTextBatch(images: images, text: questions)
        // Question 0 has answers 0, 1, 2; question 1 has answer 3.
        batch.answers = AnswerBatch(text: answers, weights: [0.5, 0.25, 0.25, 1], counts: [3, 1])
        var context = StepContext(seed: 0, dropout: false)
        let out = try model.step(batch, context: &context)
        let perAnswer = try XCTUnwrap(out.tensors["answer_loss"]).toArray()
        XCTAssertEqual(Double(out.total.scalar), Double(0.5 * perAnswer[0] + 0.25 * perAnswer[1] + 0.25 * perAnswer[2] + perAnswer[3]) / 2, accuracy: 1e-5)
        // rank_answer with k = all 4 answers scores every answer for each question.
        let ranking = try model.rankAnswers(images: images, questions: questions, answerList: answers, k: 4)
        let order0 = try TorchTopK.largest(Array(ranking.probFirstToken[0..<4]), k: 4)
        for (j, a) in order0.enumerated() where a < 3 {
            XCTAssertEqual(ranking.answerLoss[j], perAnswer[a], accuracy: 1e-4 * max(1, abs(perAnswer[a])))
        }
        // Answers 1 and 2 share their first token: a tie, ordered as PyTorch's topk orders it.
        XCTAssertEqual(ranking.probFirstToken[1], ranking.probFirstToken[2])
        for (ids, probs) in zip(ranking.topkIds, ranking.topkProbs) {
            XCTAssertEqual(Set(ids), [0, 1, 2, 3])
            XCTAssertEqual(Double(probs.reduce(0, +)), 1, accuracy: 1e-5)
            XCTAssertEqual(probs, probs.sorted(by: >))
        }
    }

    /// Distillation mixes the momentum decoder's soft targets with weight alpha: alpha 0 gives the
    /// plain loss of the model without distillation (same weights), alpha > 0 changes it.
    func testDistillationWeight() throws {
        let config = try tinyVQA()
        let model = try ALBEFVQAModel(config: config)
        try model.initialiseRandomly(seed: 1)
        model.momentumParameters.initialise(seed: 4)  // a teacher that differs from the student
        var plainConfig = config
        plainConfig.distill = false
        let plain = try ALBEFVQAModel(config: plainConfig)
        try plain.initialiseRandomly(seed: 1)
        let (images, questions, answers) = try inputs(config)
        var batch = ImageTextBatch(images: images, text: questions)
        batch.answers = AnswerBatch(text: answers, weights: [0.5, 0.25, 0.25, 1], counts: [3, 1])
        func loss(_ m: ALBEFVQAModel, alpha: Float) throws -> Float {
            var context = StepContext(seed: 0, dropout: false)
            context.recorded.floats["alpha"] = [alpha]
            return try m.step(batch, context: &context).total.scalar
        }
        let reference = try loss(plain, alpha: 0)
        XCTAssertEqual(try loss(model, alpha: 0), reference, accuracy: 1e-5)
        XCTAssertGreaterThan(abs(try loss(model, alpha: 0.4) - reference), 1e-3)
    }

    /// The loss divides by the number of questions, so W ranks x B questions with gradients
    /// averaged (DDP) equal one rank x W*B: here the step on 2 questions equals the mean of the
    /// steps on each question alone (fresh models, so each sees the same single EMA update).
    func testTwoHalvesEqualTheWholeBatch() throws {
        let config = try tinyVQA()
        func fresh() throws -> ALBEFVQAModel {
            let m = try ALBEFVQAModel(config: config)
            try m.initialiseRandomly(seed: 1)
            m.momentumParameters.initialise(seed: 4)
            return m
        }
        let (images, questions, answers) = try inputs(config)
        func run(_ rows: [Int], answerRows: [Int], counts: [Int], weights: [Float]) throws -> (loss: Float, grad: [Float]) {
            let m = try fresh()
            let r = config.imageRes
            var batch = ImageTextBatch(images: try images.gatherRows(rows).reshaped([rows.count, 3, r, r]), text: try questions.rows(rows))
            batch.answers = AnswerBatch(text: try answers.rows(answerRows), weights: weights, counts: counts)
            var context = StepContext(seed: 0, dropout: false)
            context.recorded.floats["alpha"] = [0.4]
            m.parameters.zeroGradients()
            let out = try m.step(batch, context: &context)
            try Autograd.backward(from: out.total)
            return (out.total.scalar, Array(m.parameters.gradients))
        }
        let whole = try run([0, 1], answerRows: [0, 1, 2, 3], counts: [3, 1], weights: [0.5, 0.25, 0.25, 1])
        let first = try run([0], answerRows: [0, 1, 2], counts: [3], weights: [0.5, 0.25, 0.25])
        let second = try run([1], answerRows: [3], counts: [1], weights: [1])
        XCTAssertEqual(whole.loss, (first.loss + second.loss) / 2, accuracy: 1e-5 * abs(whole.loss))
        var diff = 0.0, norm = 0.0
        for i in whole.grad.indices {
            let mean = (Double(first.grad[i]) + Double(second.grad[i])) / 2
            diff += (Double(whole.grad[i]) - mean) * (Double(whole.grad[i]) - mean)
            norm += mean * mean
        }
        XCTAssertGreaterThan(norm, 0)
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-4)
    }

    /// Bad batches and k values get errors naming what is wrong.
    func testInputChecks() throws {
        let config = try tinyVQA(distill: false)
        let model = try ALBEFVQAModel(config: config)
        try model.initialiseRandomly(seed: 1)
        let (images, questions, answers) = try inputs(config)
        var context = StepContext(seed: 0, dropout: false)
        let cases: [(AnswerBatch?, String)] = [
            (nil, "no answers"),
            (AnswerBatch(text: answers, weights: [1, 1, 1, 1], counts: [4]), "answer_count"),
            (AnswerBatch(text: answers, weights: [1, 1, 1, 1], counts: [2, 1]), "sum to 3"),
            (AnswerBatch(text: answers, weights: [1, 1, 1, 1], counts: [5, -1]), "negative"),
            (AnswerBatch(text: answers, weights: [1, 1, 1], counts: [2, 2]), "weight"),
            (AnswerBatch(text: answers, weights: [1, .nan, 1, 1], counts: [2, 2]), "weight"),
        ]
        for (a, message) in cases {
            var batch = ImageTextBatch(images: images, text: questions)
            batch.answers = a
            XCTAssertThrowsError(try model.step(batch, context: &context)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        for k in [0, 5] {
            XCTAssertThrowsError(try model.rankAnswers(images: images, questions: questions, answerList: answers, k: k)) {
                XCTAssertTrue("\($0)".contains("k_test \(k)"), "\($0)")
            }
        }
        let oneColumn = try TextBatch(ids: [101, 101], mask: [1, 1], batch: 2, length: 1)
        XCTAssertThrowsError(try model.rankAnswers(images: images, questions: questions, answerList: oneColumn, k: 1)) {
            XCTAssertTrue("\($0)".contains("answer list"), "\($0)")
        }
        XCTAssertThrowsError(try VQAAnswerResult.results(ranking: AnswerRanking(probFirstToken: [], answerLoss: [], topkIds: [[7]], topkProbs: [[1]]),
                                                         questionIds: [1], answerList: ["yes"])) {
            XCTAssertTrue("\($0)".contains("outside the answer list"), "\($0)")
        }
    }
}

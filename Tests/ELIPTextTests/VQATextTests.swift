import ELIPText
import Foundation
import XCTest

/// VQA's text path (vqa_dataset.py + VQA.py's tokenizer calls) against the official case
/// ../shared/reference/albef-vqa-tiny: cleaned questions, answers with "[SEP]" and their weights
/// and counts (texts.json), and the ids and masks the model received (batch.safetensors).
final class VQATextTests: XCTestCase {
    func testPreQuestion() {
        XCTAssertEqual(preQuestion("What color is the bus?"), "what color is the bus")
        XCTAssertEqual(preQuestion("Is it a T-shirt/top, (really)?  "), "is it a t shirt top really")
        XCTAssertEqual(preQuestion(" two  spaces stay "), " two  spaces stay")  // no collapsing, leading space kept
        XCTAssertEqual(preQuestion("a b c d", maxWords: 2), "a b")
        XCTAssertEqual(preQuestion("#1: what's ~this~;", maxWords: 30), "1 whats this")
    }

    func testTrainingAnswersAndWeights() {
        let vqa = vqaTrainingAnswers(["red", "red and white", "red", "white", "red and white", "red", "blue", "red", "red and white", "white"], visualGenome: false)
        XCTAssertEqual(vqa.map(\.answer), ["red[SEP]", "red and white[SEP]", "white[SEP]", "blue[SEP]"])
        XCTAssertEqual(vqa.map(\.weight), [Float(0.4), 0.3, 0.2, 0.1])
        let vg = vqaTrainingAnswers(["two"], visualGenome: true)
        XCTAssertEqual(vg.map(\.answer), ["two[SEP]"])
        XCTAssertEqual(vg.map(\.weight), [0.5])
    }

    func testMatchesTheOfficialCase() throws {
        let dir = try Self.shared("reference/albef-vqa-tiny")
        let tokenizer = try BertTokenizer(vocabularyFile: Self.shared("data/bert-base-uncased-vocab.txt"))
        func json(_ f: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + f))) }
        let texts = try XCTUnwrap(json("texts.json") as? [String: Any])
        let train = try XCTUnwrap(json("ann_train.json") as? [[String: Any]])
        let test = try XCTUnwrap(json("ann_test.json") as? [[String: Any]])
        let answerList = try XCTUnwrap(json("answer_list.json") as? [String])

        let questions = train.map { preQuestion($0["question"] as! String, maxWords: 30) }
        XCTAssertEqual(questions, texts["questions"] as? [String])
        var answers: [String] = [], weights: [Float] = [], counts: [Int] = []
        for ann in train {
            let vg = ann["dataset"] as? String == "vg"
            let given = vg ? [ann["answer"] as! String] : ann["answer"] as! [String]
            let a = vqaTrainingAnswers(given, visualGenome: vg)
            answers += a.map(\.answer)
            weights += a.map(\.weight)
            counts.append(a.count)
        }
        XCTAssertEqual(answers, texts["answers"] as? [String])
        XCTAssertEqual(weights, (texts["weights"] as? [Double])?.map(Float.init))
        XCTAssertEqual(counts, texts["answer_count"] as? [Int])
        let evalQuestions = test.map { preQuestion($0["question"] as! String, maxWords: 50) }
        XCTAssertEqual(evalQuestions, texts["eval_questions"] as? [String])

        // tokenizer(texts, padding='longest'): ALBEF framing [CLS] tokens, "[SEP]" kept whole (id 102).
        let batch = try Self.safetensorsInt64s(dir + "/batch.safetensors")
        func check(_ texts: [String], _ prefix: String) throws {
            let tokens = TokenBatch(sequences: try texts.map { try tokenizer.encode($0, framing: .albef) }, padId: tokenizer.specialIds.pad)
            XCTAssertEqual(tokens.inputIds.map(Int64.init), batch[prefix + "input_ids"], prefix)
            XCTAssertEqual(tokens.attentionMask.map(Int64.init), batch[prefix + "attention_mask"], prefix)
        }
        try check(questions, "question_")
        try check(answers, "answer_")
        try check(evalQuestions, "eval.question_")
        try check(answerList.map { $0 + "[SEP]" }, "eval.answer_list_")
        XCTAssertEqual(batch["answer_input_ids"]?[2], 102)  // "red[SEP]": [CLS] red [SEP]
    }

    /// The int64 tensors of a safetensors file (header JSON + little-endian data).
    private static func safetensorsInt64s(_ path: String) throws -> [String: [Int64]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        var out: [String: [Int64]] = [:]
        for (name, v) in header {
            guard let e = v as? [String: Any], e["dtype"] as? String == "I64", let o = e["data_offsets"] as? [Int] else { continue }
            let bytes = data.subdata(in: (8 + n + o[0])..<(8 + n + o[1]))
            out[name] = stride(from: 0, to: bytes.count, by: 8).map { i in
                bytes[bytes.startIndex + i..<bytes.startIndex + i + 8].enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * $1.offset) }
            }
        }
        return out
    }

    private static func shared(_ relative: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = ProcessInfo.processInfo.environment["ELIP_SHARED"].map { URL(fileURLWithPath: $0) }
            ?? root.deletingLastPathComponent().appendingPathComponent("shared")
        let path = shared.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("needs ../shared/\(relative) (or ELIP_SHARED); not present") }
        return path
    }
}

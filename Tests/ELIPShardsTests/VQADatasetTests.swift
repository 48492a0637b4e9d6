import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// VQA annotations through build-dataset and the loader (issue 14 part 5): one ELQ1 record per
/// image holding all of its questions with vqa_dataset.py's answer weights, bad entries rejected
/// by reason and every good question kept; the record format round-trips, and damaged bytes are
/// errors, never traps; the loader delivers each sample's question with its answers.
final class VQADatasetTests: XCTestCase {
    var dirs: [String] = []
    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
    func temporary() throws -> String {
        let d = try DatasetFixtures.temporaryDirectory("vqa")
        dirs.append(d)
        return d
    }

    func testRecordFormatAndDamage() throws {
        let record = VQARecord(questions: [
            VQARecord.Question(id: 7, text: "what colour is the star?", answers: [.init("red", weight: 0.9), .init("orange", weight: 0.1)]),
            VQARecord.Question(id: -3_000_000_000, text: "is it?", answers: [.init("yes", weight: 0.5)]),
        ], sourceID: "vqa_train.json:4", jpeg: [1, 2, 3, 4])
        let bytes = record.encoded()
        XCTAssertEqual(Array(bytes.prefix(4)), Array("ELQ1".utf8))
        XCTAssertEqual(try VQARecord.decode(bytes), record)
        // Tools that need only image, texts and source see the questions as captions.
        XCTAssertEqual(try DatasetRecord.decodeAny(bytes), DatasetRecord(captions: ["what colour is the star?", "is it?"], sourceID: "vqa_train.json:4", jpeg: [1, 2, 3, 4]))
        // Every truncation is an error, never a trap; so is every flipped byte (CRC).
        for n in 0..<bytes.count { XCTAssertThrowsError(try VQARecord.decode(Array(bytes.prefix(n)))) }
        for i in 0..<bytes.count {
            var b = bytes
            b[i] ^= 0x40
            XCTAssertThrowsError(try VQARecord.decode(b), "byte \(i)")
        }
        // A huge question or answer count with a valid CRC is refused before allocating.
        var forged = Array("ELQ1".utf8) + [0xFF, 0xFF, 0xFF, 0x7F]
        forged += withUnsafeBytes(of: CRC32.checksum(forged).littleEndian, Array.init)
        XCTAssertThrowsError(try VQARecord.decode(forged)) { XCTAssertTrue("\($0)".contains("questions"), "\($0)") }
        // A captions record is not a VQA record.
        XCTAssertThrowsError(try VQARecord.decode(DatasetRecord(captions: ["a"], sourceID: "x", jpeg: [1]).encoded())) {
            XCTAssertEqual($0 as? DatasetRecord.DecodeError, .badMagic)
        }
    }

    func testBuildOneRecordPerImageRejectsAndLoader() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        for i in 0..<3 { try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/img/\(i).jpg") }
        func human(_ a: [String]) -> String { "[" + a.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        let entries = [
            // Image 0: three questions (two "vqa", one "vg").
            "{\"question_id\": 1, \"question\": \"What colour?\", \"answer\": \(human(["red", "red", "red", "white", "red", "red", "blue", "red", "red", "white"])), \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",
            "{\"question_id\": 2, \"question\": \"How many?\", \"answer\": \(human(Array(repeating: "2", count: 10))), \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",
            "{\"question_id\": 3, \"question\": \"What shape?\", \"answer\": \"circle\", \"image\": \"img/0.jpg\", \"dataset\": \"vg\"}",
            // Image 1 and 2: one question each.
            "{\"question_id\": 4, \"question\": \"Is it red?\", \"answer\": \(human(["yes", "no"])), \"image\": \"img/1.jpg\", \"dataset\": \"vqa\"}",
            "{\"question_id\": 5, \"question\": \"Is it blue?\", \"answer\": \(human(["no"])), \"image\": \"./img/2.jpg\", \"dataset\": \"vqa\"}",
            // Rejected, by reason:
            "{\"question_id\": 6, \"question\": \"Where?\", \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",                          // bad_label (test entry)
            "{\"question_id\": 7, \"question\": \"Where?\", \"answer\": [1, 2], \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",       // bad_label
            "{\"question_id\": 8, \"question\": \"Where?\", \"answer\": \"x\", \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",       // bad_label (string for vqa)
            "{\"question_id\": 9, \"question\": \"Where?\", \"answer\": [\"x\"], \"image\": \"img/0.jpg\", \"dataset\": \"coco\"}",    // bad_annotation
            "{\"question_id\": 1.5, \"question\": \"Where?\", \"answer\": [\"x\"], \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",   // bad_annotation
            "{\"question\": \"Where?\", \"answer\": [\"x\"], \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",                        // bad_annotation
            "{\"question_id\": 2, \"question\": \"Again?\", \"answer\": [\"x\"], \"image\": \"img/1.jpg\", \"dataset\": \"vqa\"}",     // duplicate
            "{\"question_id\": 10, \"answer\": [\"x\"], \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",                             // missing_caption
            "{\"question_id\": 11, \"question\": \"?!\", \"answer\": [\"x\"], \"image\": \"img/0.jpg\", \"dataset\": \"vqa\"}",        // empty_caption
            "{\"question_id\": 12, \"question\": \"Where?\", \"answer\": [\"x\"], \"image\": \"img/9.jpg\", \"dataset\": \"vqa\"}",    // missing_file
            "{\"question_id\": 13, \"question\": \"Where?\", \"answer\": [\"x\"], \"image\": \"../img/0.jpg\", \"dataset\": \"vqa\"}", // path_escapes_root
        ]
        let ann = root + "/vqa_train.json"
        try DatasetFixtures.write("[\n" + entries.joined(separator: ",\n") + "\n]\n", ann)
        var o = DatasetFixtures.options(out, shards: 2, annotations: [ann], root: root, imageSize: 32)
        o.format = .vqa
        o.maxRejectFraction = 1
        let report = try DatasetFixtures.build(o)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.totalRecords, 3)
        XCTAssertTrue(report.manifest.recordFormat.hasPrefix("ELQ1"), report.manifest.recordFormat)
        let rejects = try DatasetFixtures.rejects(in: out).map(\.reason.rawValue).sorted()
        XCTAssertEqual(rejects, ["bad_annotation", "bad_annotation", "bad_annotation", "bad_label", "bad_label", "bad_label",
                                 "duplicate", "empty_caption", "missing_caption", "missing_file", "path_escapes_root"])

        // The records: each image once, with every good question and vqa_dataset.py's weights.
        let m = try DatasetManifest.load(fromDirectory: out)
        var records: [VQARecord] = []
        for i in 0..<m.shardCount {
            let env = try LMDBEnvironment(path: m.shardPath(i, in: out), readOnly: true)
            try env.read { txn in try txn.forEach { _, v in records.append(try VQARecord.decode(v)); return true } }
        }
        let byID = Dictionary(uniqueKeysWithValues: records.flatMap(\.questions).map { ($0.id, $0) })
        XCTAssertEqual(byID.keys.sorted(), [1, 2, 3, 4, 5])
        XCTAssertEqual(records.map(\.questions.count).sorted(), [1, 1, 3])
        XCTAssertEqual(byID[1]?.answers, [.init("red", weight: 0.7), .init("white", weight: 0.2), .init("blue", weight: 0.1)])
        XCTAssertEqual(byID[1]?.text, "What colour?")
        XCTAssertEqual(byID[2]?.answers, [.init("2", weight: 1)])
        XCTAssertEqual(byID[3]?.answers, [.init("circle", weight: 0.5)])
        XCTAssertEqual(byID[4]?.answers, [.init("yes", weight: 0.5), .init("no", weight: 0.5)])

        // The loader: a question of the sample's image, cleaned by pre_question, with its answers.
        var options = ShardLoader.Options.pretrain(imageSize: 32)
        options.workerThreads = 0
        options.captionStyle = CaptionStyle(cleaning: .question, framing: .albef, maxLength: 25, padToMaxLength: false, maxWords: 30)
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "colour", "how", "many", "shape", "is", "it", "red", "blue"]
        let loader = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 3, seed: 3,
                                     tokenizer: try BertTokenizer(vocabulary: Vocabulary(tokens: vocabulary, source: "vqa-tests")), options: options)
        let expected = ["what colour": 1, "how many": 2, "what shape": 3, "is it red": 4, "is it blue": 5]
        for epoch in 0..<4 {
            let b = try loader.batch(epoch: epoch, index: 0)
            let answers = try XCTUnwrap(b.answers)
            XCTAssertNil(b.labels)
            XCTAssertEqual(answers.count, 3)
            for (question, a) in zip(b.captions, answers) {
                let id = try XCTUnwrap(expected[question], question)
                XCTAssertEqual(a, byID[id]?.answers, question)
            }
        }

        // Fine-tuning reads one sample per question (vqa_dataset.py lists every question): an epoch
        // yields each of the 5 questions exactly once, each with its own answers.
        options.samplePerCaption = true
        let perQuestion = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 1, seed: 3,
                                          tokenizer: try BertTokenizer(vocabulary: Vocabulary(tokens: vocabulary, source: "vqa-tests")), options: options)
        XCTAssertEqual(perQuestion.batchesPerEpoch, expected.count)
        var seen: [String] = []
        for i in 0..<perQuestion.batchesPerEpoch {
            let b = try perQuestion.batch(epoch: 1, index: i)
            let question = try XCTUnwrap(b.captions.first)
            XCTAssertEqual(try XCTUnwrap(b.answers).first, byID[try XCTUnwrap(expected[question], question)]?.answers, question)
            seen.append(question)
        }
        XCTAssertEqual(seen.sorted(), expected.keys.sorted())
    }
}

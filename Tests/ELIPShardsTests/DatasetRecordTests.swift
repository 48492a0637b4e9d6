@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

final class DatasetRecordTests: XCTestCase {
    func testCRC32KnownValue() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
    }

    func testRoundTripAndCorruptionIsDetected() throws {
        let r = DatasetRecord(captions: ["a red circle", "ünïcödé 😀", ""], sourceID: "coco.json:17", jpeg: [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9])
        let bytes = r.encoded()
        XCTAssertEqual(try DatasetRecord.decode(bytes), r)
        // Every single-byte flip and every truncation is an error, never a crash.
        for i in 0..<bytes.count {
            var b = bytes
            b[i] ^= 0x5A
            XCTAssertThrowsError(try DatasetRecord.decode(b), "flip at \(i)")
        }
        for n in 0..<bytes.count { XCTAssertThrowsError(try DatasetRecord.decode(Array(bytes.prefix(n))), "prefix \(n)") }
    }
}

final class SyntheticScenesTests: XCTestCase {
    func testScenesAreDeterministicAndCaptionsNameTheObjects() {
        for i in 0..<50 {
            let s = SyntheticScenes.scene(index: i, seed: 9, size: 64)
            let again = SyntheticScenes.scene(index: i, seed: 9, size: 64)
            XCTAssertEqual(s.pixels, again.pixels)
            XCTAssertTrue((1...3).contains(s.objects.count))
            XCTAssertEqual(s.pixels.count, 64 * 64 * 3)
            XCTAssertGreaterThanOrEqual(s.captions.count, 4)
            for o in s.objects {
                XCTAssertTrue(s.captions[0].contains(o.colour.name) && s.captions[0].contains(o.shape.rawValue), s.captions[0])
            }
            // Every object is visible in the mask, and the mask labels match object pixels.
            for k in 1...s.objects.count { XCTAssertTrue(s.mask.contains(UInt8(k)), "object \(k) of scene \(i) hidden") }
            for (p, m) in s.mask.enumerated() where m > 0 {
                let c = s.objects[Int(m) - 1].colour.rgb
                XCTAssertEqual([s.pixels[3 * p], s.pixels[3 * p + 1], s.pixels[3 * p + 2]], [c.0, c.1, c.2])
            }
        }
        XCTAssertNotEqual(SyntheticScenes.scene(index: 1, seed: 9, size: 64).pixels, SyntheticScenes.scene(index: 2, seed: 9, size: 64).pixels)
    }

    /// configs/synthetic-vocab.txt (the BLIP demo's vocabulary) covers every word the scenes'
    /// captions use, as raw text and after ALBEF's and BLIP's caption cleaning: no [UNK], ever.
    func testSyntheticVocabularyCoversEveryCaption() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs/synthetic-vocab.txt").path
        let tokenizer = try BertTokenizer(vocabularyFile: file)
        XCTAssertEqual(tokenizer.specialIds.pad, 0, "[PAD] must be id 0 (BERT's padding_idx)")
        var captions = 0
        for seed: UInt64 in [1, 9, 42] {
            for size in [64, 128] {
                for i in 0..<250 {
                    for caption in SyntheticScenes.scene(index: i, seed: seed, size: size).captions {
                        for text in [caption, preCaption(caption), preCaptionBLIP(caption)] {
                            let ids = tokenizer.tokenIds(text)
                            XCTAssertFalse(ids.isEmpty, caption)
                            XCTAssertFalse(ids.contains(tokenizer.specialIds.unknown), "'\(text)' has a word outside \(file)")
                        }
                        captions += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(captions, 5000)
    }

    /// configs/demo-vocab.txt (the ALBEF demo's and its fine-tuning tasks' vocabulary) keeps
    /// configs/synthetic-vocab.txt's ids and covers every caption, VE statement, VQA question and
    /// answer and NLVR2 statement the synthetic corpus writes, as the task loaders clean them.
    func testDemoVocabularyCoversEveryTaskSentence() throws {
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
        let file = configs.appendingPathComponent("demo-vocab.txt").path
        let demo = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        let synthetic = try String(contentsOfFile: configs.appendingPathComponent("synthetic-vocab.txt").path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(Array(demo.prefix(synthetic.count)), synthetic, "demo-vocab.txt starts with synthetic-vocab.txt")
        XCTAssertEqual(Set(demo).count, demo.count, "no word twice")
        let bert = try JSONSerialization.jsonObject(with: Data(contentsOf: configs.appendingPathComponent("config_bert_demo.json"))) as? [String: Any]
        XCTAssertEqual(bert?["vocab_size"] as? Int, demo.count, "config_bert_demo.json's vocab_size is the vocabulary's \(demo.count) words")
        let tokenizer = try BertTokenizer(vocabularyFile: file)
        var sentences: [String] = SyntheticQuestions.answerList
        for seed: UInt64 in [1, 9] {
            let scenes = (0..<120).map { SyntheticScenes.scene(index: $0, seed: seed, size: 64) }
            for (i, scene) in scenes.enumerated() {
                sentences += scene.captions
                sentences += SyntheticEntailment.statements(for: scene, index: i, seed: seed).map(\.sentence)
                for q in SyntheticQuestions.questions(for: scene, index: i, seed: seed) { sentences += [preQuestion(q.question), q.answer] }
            }
            sentences += SyntheticNLVR.pairs(indices: Array(scenes.indices), perImage: 2, seed: seed) { scenes[$0].objects }.map(\.sentence)
        }
        XCTAssertGreaterThan(sentences.count, 2000)
        for text in sentences {
            for cleaned in [text, preCaption(text)] {
                let ids = tokenizer.tokenIds(cleaned)
                XCTAssertFalse(ids.isEmpty, text)
                XCTAssertFalse(ids.contains(tokenizer.specialIds.unknown), "'\(cleaned)' has a word outside \(file)")
            }
        }
    }
}

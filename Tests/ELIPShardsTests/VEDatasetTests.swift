import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// SNLI-VE annotations through build-dataset and the loader (issue 14 part 5): one record per
/// entry with its label (entailment 2, neutral 1, contradiction 0), bad entries rejected by
/// reason, labels delivered with the sentences; the labelled record format round-trips and
/// unlabelled records stay ELR1.
final class VEDatasetTests: XCTestCase {
    var dirs: [String] = []
    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
    func temporary() throws -> String {
        let d = try DatasetFixtures.temporaryDirectory("ve")
        dirs.append(d)
        return d
    }

    func testRecordFormat() throws {
        let plain = DatasetRecord(captions: ["a"], sourceID: "x:0", jpeg: [1, 2, 3])
        XCTAssertEqual(Array(plain.encoded().prefix(4)), Array("ELR1".utf8))
        let labelled = DatasetRecord(captions: ["a b", "c"], sourceID: "x:1", jpeg: [9], labels: [2, 0])
        let bytes = labelled.encoded()
        XCTAssertEqual(Array(bytes.prefix(4)), Array("ELR2".utf8))
        XCTAssertEqual(try DatasetRecord.decode(bytes), labelled)
        XCTAssertEqual(try DatasetRecord.decode(plain.encoded()), plain)
        // Every truncation of a labelled record is an error, never a trap.
        for n in 0..<bytes.count { XCTAssertThrowsError(try DatasetRecord.decode(Array(bytes.prefix(n)))) }
    }

    func testBuildRejectsAndLoaderLabels() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        for i in 0..<4 { try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/flickr/\(1000 + i).jpg") }
        let words = ["red circle", "red photo", "a circle", "a photo"]
        let names = ["contradiction", "neutral", "entailment"]
        var entries: [String] = []
        var expected: [String: Int] = [:]
        for i in 0..<4 {
            for (k, name) in names.enumerated() {
                let sentence = "\(words[i]) \(k)"
                entries.append("{\"image\": \"flickr/\(1000 + i)\", \"sentence\": \"\(sentence)\", \"label\": \"\(name)\"}")
                expected[sentence] = k
            }
        }
        entries += [
            "{\"image\": \"flickr/1000\", \"sentence\": \"red circle 5\", \"label\": \"Entailment\"}",   // bad_label
            "{\"image\": \"flickr/1000\", \"sentence\": \"red circle 6\", \"label\": 2}",                // bad_label
            "{\"image\": \"flickr/1000\", \"sentence\": \"red circle 7\"}",                              // bad_label
            "{\"image\": \"flickr/1000\", \"label\": \"neutral\"}",                                      // missing_caption
            "{\"image\": \"flickr/1000\", \"sentence\": \"  \", \"label\": \"neutral\"}",                // empty_caption
            "{\"image\": \"flickr/9999\", \"sentence\": \"red circle 8\", \"label\": \"neutral\"}",      // missing_file
            "{\"image\": \"../flickr/1000\", \"sentence\": \"red circle 9\", \"label\": \"neutral\"}",   // path_escapes_root
        ]
        let ann = root + "/ve_train.json"
        try DatasetFixtures.write("[\n" + entries.joined(separator: ",\n") + "\n]\n", ann)
        var o = DatasetFixtures.options(out, shards: 2, annotations: [ann], root: root, imageSize: 32)
        o.format = .ve
        o.maxRejectFraction = 1
        let report = try DatasetFixtures.build(o)
        XCTAssertNil(report.failure)
        let records = try DatasetFixtures.records(in: out)
        XCTAssertEqual(records.count, 12)
        for r in records.values {
            XCTAssertEqual(r.captions.count, 1)
            XCTAssertEqual(r.labels, [expected[r.captions[0]]!], r.sourceID)
        }
        let rejects = try DatasetFixtures.rejects(in: out).map(\.reason.rawValue).sorted()
        XCTAssertEqual(rejects, ["bad_label", "bad_label", "bad_label", "empty_caption", "missing_caption", "missing_file", "path_escapes_root"])

        var options = ShardLoader.Options.pretrain(imageSize: 32)
        options.workerThreads = 0
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "photo"] + (0..<10).map(String.init)
        let loader = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 4, seed: 3,
                                     tokenizer: try BertTokenizer(vocabulary: Vocabulary(tokens: vocabulary, source: "ve-tests")), options: options)
        var seen = 0
        for index in 0..<loader.batchesPerEpoch {
            let b = try loader.batch(epoch: 0, index: index)
            let labels = try XCTUnwrap(b.labels)
            for (caption, label) in zip(b.captions, labels) {
                XCTAssertEqual(label, expected[caption], caption)
                seen += 1
            }
        }
        XCTAssertEqual(seen, 12)
        // A format the builder does not know is an argument error; tar inputs are refused for ve.
        o.tarInputs = [root]
        XCTAssertThrowsError(try DatasetFixtures.build(o)) { XCTAssertTrue("\($0)".contains("--format ve"), "\($0)") }
    }
}

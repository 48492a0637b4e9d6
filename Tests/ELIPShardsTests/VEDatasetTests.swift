import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// SNLI-VE annotations through build-dataset and the loader (issue 14 part 5): one record per
/// image (stored once) holding its entries' sentences with their labels (entailment 2, neutral 1,
/// contradiction 0), bad entries rejected by reason, every sentence delivered once per epoch with
/// its label; shards of the older one-record-per-entry build stay readable; the labelled record
/// format round-trips and unlabelled records stay ELR1.
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
        XCTAssertEqual(records.count, 4, "one record per image")
        for r in records.values {
            XCTAssertEqual(r.captions.count, 3, r.sourceID)
            XCTAssertEqual(r.labels, r.captions.map { expected[$0]! }, r.sourceID)
        }
        let manifest = try DatasetManifest.load(fromDirectory: out)
        XCTAssertEqual(manifest.taskFormat, "ve")
        XCTAssertEqual(manifest.shards.map(\.captionCounts), ["3,3", "3,3"])
        let rejects = try DatasetFixtures.rejects(in: out).map(\.reason.rawValue).sorted()
        XCTAssertEqual(rejects, ["bad_label", "bad_label", "bad_label", "empty_caption", "missing_caption", "missing_file", "path_escapes_root"])

        var options = ShardLoader.Options.pretrain(imageSize: 32)
        options.workerThreads = 0
        options.samplePerCaption = true
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "photo"] + (0..<10).map(String.init)
        let loader = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 4, seed: 3,
                                     tokenizer: try BertTokenizer(vocabulary: Vocabulary(tokens: vocabulary, source: "ve-tests")), options: options)
        XCTAssertEqual(loader.batchesPerEpoch, 3)
        var seen: [String] = []
        for index in 0..<loader.batchesPerEpoch {
            let b = try loader.batch(epoch: 0, index: index)
            let labels = try XCTUnwrap(b.labels)
            for (caption, label) in zip(b.captions, labels) {
                XCTAssertEqual(label, expected[caption], caption)
                seen.append(caption)
            }
        }
        XCTAssertEqual(seen.sorted(), expected.keys.sorted(), "every sentence exactly once per epoch")
        // A format the builder does not know is an argument error; tar inputs are refused for ve.
        o.tarInputs = [root]
        XCTAssertThrowsError(try DatasetFixtures.build(o)) { XCTAssertTrue("\($0)".contains("--format ve"), "\($0)") }
    }

    /// Shards of the earlier VE build (one sentence per record, no caption_counts or task_format in
    /// the manifest) are still read: the task is recognised from record_format and every record
    /// is one sample; a record holding more sentences than its manifest lists is a bad record.
    func testShardsOfTheOneRecordPerEntryBuildStayReadable() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        var entries: [String] = []
        for i in 0..<5 {
            try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/\(2000 + i).jpg")
            entries.append("{\"image\": \"\(2000 + i)\", \"sentence\": \"a photo \(i)\", \"label\": \"neutral\"}")
        }
        try DatasetFixtures.write("[" + entries.joined(separator: ",") + "]", root + "/ve.json")
        var o = DatasetFixtures.options(out, shards: 1, annotations: [root + "/ve.json"], root: root, imageSize: 32)
        o.format = .ve
        XCTAssertNil(try DatasetFixtures.build(o).failure)
        // What the earlier build wrote: the same records, a manifest without the two fields.
        let path = out + "/manifest.json"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        var old = json
        old["task_format"] = nil
        old["shards"] = (json["shards"] as! [[String: Any]]).map { var e = $0; e["caption_counts"] = nil; return e }
        try JSONSerialization.data(withJSONObject: old).write(to: URL(fileURLWithPath: path))
        text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertFalse(text.contains("caption_counts") || text.contains("task_format"))
        let listing = try ShardListing.read(directory: out)
        XCTAssertEqual(listing.taskFormat, "ve", "recognised from record_format")
        XCTAssertNil(listing.shards[0].captionCounts)
        var options = ShardLoader.Options.pretrain(imageSize: 32)
        options.workerThreads = 0
        options.samplePerCaption = true
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo"] + (0..<10).map(String.init)
        let tokenizer = try BertTokenizer(vocabulary: Vocabulary(tokens: vocabulary, source: "ve-tests"))
        let loader = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 5, seed: 1, tokenizer: tokenizer, options: options)
        let b = try loader.batch(epoch: 0, index: 0)
        XCTAssertEqual(b.captions.sorted(), (0..<5).map { "a photo \($0)" })
        XCTAssertEqual(b.labels, [1, 1, 1, 1, 1])
        XCTAssertEqual(b.replacedSamples, 0)

        // A manifest listing fewer sentences than a record holds: that record is bad (named), the
        // others are read; strict mode fails naming it.
        var tampered = json
        tampered["shards"] = (json["shards"] as! [[String: Any]]).map { var e = $0; e["caption_counts"] = "1,1,1,1,1"; return e }
        try JSONSerialization.data(withJSONObject: tampered).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try ShardListing.read(directory: out).shards[0].captionCounts, [1, 1, 1, 1, 1])
        tampered["shards"] = (json["shards"] as! [[String: Any]]).map { var e = $0; e["caption_counts"] = "1,1,0,1,1"; return e }
        try JSONSerialization.data(withJSONObject: tampered).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ShardListing.read(directory: out)) { XCTAssertTrue("\($0)".contains("caption_counts entry 2 ('0')"), "\($0)") }
        tampered["shards"] = (json["shards"] as! [[String: Any]]).map { var e = $0; e["caption_counts"] = "1,1"; return e }
        try JSONSerialization.data(withJSONObject: tampered).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ShardListing.read(directory: out)) { XCTAssertTrue("\($0)".contains("lists 2 records, the shard has 5"), "\($0)") }
        tampered["shards"] = (json["shards"] as! [[String: Any]]).map { var e = $0; e["caption_counts"] = "2,1,1,1,1"; return e }
        try JSONSerialization.data(withJSONObject: tampered).write(to: URL(fileURLWithPath: path))
        let mismatched = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 6, seed: 1, tokenizer: tokenizer, options: options)
        let m = try mismatched.batch(epoch: 0, index: 0)
        XCTAssertEqual(m.replacedSamples, 2, "both samples of the first record are replaced")
        XCTAssertEqual(mismatched.statistics.badRecords.map(\.reason), ["record holds 1 captions, the manifest lists 2"])
        options.strict = true
        let strict = try ShardLoader(directory: out, rank: 0, worldSize: 1, batchSize: 6, seed: 1, tokenizer: tokenizer, options: options)
        XCTAssertThrowsError(try strict.batch(epoch: 0, index: 0)) { XCTAssertTrue("\($0)".contains("the manifest lists 2"), "\($0)") }
    }
}

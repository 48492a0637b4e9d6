import ELIPImage
@testable import ELIPShards
import ELIPText
import Foundation
import XCTest

/// Retrieval training annotations (coco_train.json / flickr30k_train.json: one {image, caption,
/// image_id} per caption) through build-dataset --format retrieval and the loader: one record per
/// image holding all its captions, each labelled with the index of its image_id in order of first
/// appearance (re_train_dataset's `img_ids`); bad entries rejected by reason; the loader yields
/// every (image, caption, image index) once per epoch, split over ranks.
final class RetrievalDatasetTests: XCTestCase {
    var dirs: [String] = []
    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
    func temporary() throws -> String {
        let d = try DatasetFixtures.temporaryDirectory("retrieval")
        dirs.append(d)
        return d
    }

    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "circle", "photo", "of"] + (0..<10).map(String.init)

    func testBuildGroupsCaptionsPerImageWithImageIndices() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        for i in 0..<4 { try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/img/\(i).jpg") }
        // image_id: numbers and strings (7 and "7" are different ids, as dict keys in Python);
        // img/3.jpg carries img/2.jpg's id (two files of one image id share its index).
        var entries: [String] = []
        var expected: [String: (image: String, index: Int)] = [:]
        let ids = ["7", "\"7\"", "\"b\"", "\"b\""], indices = [0, 1, 2, 2]
        for i in [0, 1, 2, 3, 0, 1, 2, 0] {
            let caption = "a photo \(entries.count)"
            entries.append("{\"image\": \"img/\(i).jpg\", \"caption\": \"\(caption)\", \"image_id\": \(ids[i])}")
            expected[caption] = ("img/\(i).jpg", indices[i])
        }
        // A repeated (image, caption) entry stays a sample of its own, as in the official file.
        entries.append("{\"image\": \"img/1.jpg\", \"caption\": \"a photo 1\", \"image_id\": \"7\"}")
        entries += [
            "{\"image\": \"img/0.jpg\", \"caption\": \"a red circle\"}",                                  // bad_annotation: no image_id
            "{\"image\": \"img/0.jpg\", \"caption\": \"a red circle\", \"image_id\": [1]}",              // bad_annotation: id type
            "{\"image\": \"img/0.jpg\", \"caption\": [\"a\", \"b\"], \"image_id\": 7}",                  // bad_annotation: caption list
            "{\"image\": \"img/0.jpg\", \"image_id\": 7}",                                              // missing_caption
            "{\"image\": \"img/0.jpg\", \"caption\": \" ... \", \"image_id\": 7}",                       // empty_caption
            "{\"image\": \"img/9.jpg\", \"caption\": \"a blue circle\", \"image_id\": 9}",               // missing_file
            "{\"image\": \"../img/0.jpg\", \"caption\": \"a blue circle\", \"image_id\": 7}",            // path_escapes_root
            "{\"caption\": \"a blue circle\", \"image_id\": 7}",                                        // bad_annotation: no image
        ]
        let ann = root + "/coco_train.json"
        try DatasetFixtures.write("[\n" + entries.joined(separator: ",\n") + "\n]\n", ann)
        var o = DatasetFixtures.options(out, shards: 2, annotations: [ann], root: root, imageSize: 32)
        o.format = .retrieval
        o.maxRejectFraction = 1
        XCTAssertNil(try DatasetFixtures.build(o).failure)
        let records = try DatasetFixtures.records(in: out)
        XCTAssertEqual(records.count, 4, "one record per image file")
        var stored: [String] = []
        for r in records.values {
            XCTAssertEqual(r.labels.count, r.captions.count)
            for (c, l) in zip(r.captions, r.labels) {
                XCTAssertEqual(l, expected[c]?.index, "\(r.sourceID): \(c)")
                stored.append(c)
            }
        }
        XCTAssertEqual(stored.sorted(), (expected.keys.sorted() + ["a photo 1"]).sorted(), "every good entry kept, the repeat too")
        let rejects = try DatasetFixtures.rejects(in: out)
        XCTAssertEqual(rejects.map(\.reason.rawValue).sorted(),
                       ["bad_annotation", "bad_annotation", "bad_annotation", "bad_annotation", "empty_caption", "missing_caption", "missing_file", "path_escapes_root"])
        XCTAssertTrue(rejects.contains { $0.detail.contains("has no \"image_id\" field") }, "\(rejects)")
        let manifest = try DatasetManifest.load(fromDirectory: out)
        XCTAssertEqual(manifest.taskFormat, "retrieval")
        XCTAssertEqual(manifest.totalRecords, 4)
        XCTAssertEqual(manifest.captionStats.captions, 9)

        // The loader: every caption once per epoch with its image index, over 1 and 2 ranks.
        let tokenizer = try BertTokenizer(vocabulary: Vocabulary(tokens: Self.vocabulary, source: "retrieval-tests"))
        var options = ShardLoader.Options.pretrain(imageSize: 32)
        options.workerThreads = 0
        options.samplePerCaption = true
        func epoch(rank: Int, worldSize: Int, batch: Int) throws -> [(String, Int)] {
            let loader = try ShardLoader(directory: out, rank: rank, worldSize: worldSize, batchSize: batch, seed: 4, tokenizer: tokenizer, options: options)
            var samples: [(String, Int)] = []
            for i in 0..<loader.batchesPerEpoch {
                let b = try loader.batch(epoch: 1, index: i)
                samples += zip(b.captions, try XCTUnwrap(b.labels)).map { ($0, $1) }
            }
            return samples
        }
        let one = try epoch(rank: 0, worldSize: 1, batch: 3)
        XCTAssertEqual(one.map(\.0).sorted(), stored.sorted())
        for (c, l) in one { XCTAssertEqual(l, expected[c]?.index, c) }
        // Two ranks own whole shards (2 shards): their samples are disjoint; each epoch is cut to
        // the smaller rank's full batches.
        let a = try epoch(rank: 0, worldSize: 2, batch: 2), b = try epoch(rank: 1, worldSize: 2, batch: 2)
        XCTAssertEqual(a.count, b.count)
        let listing = try ShardListing.read(directory: out)
        let perRank = try (0..<2).map { try ShardAssignment(listing: listing, rank: $0, worldSize: 2, perCaption: true).sampleCount }
        XCTAssertEqual(perRank.reduce(0, +), 9)
        XCTAssertEqual(a.count, 2 * (perRank.min()! / 2))
        // Three ranks over two shards: key ranges; the samples together are still each caption once.
        let three = try (0..<3).map { try ShardAssignment(listing: listing, rank: $0, worldSize: 3, perCaption: true) }
        var all: [String] = []
        for s in three {
            for i in 0..<s.sampleCount {
                let (shard, key, caption, count) = try XCTUnwrap(s.sample(at: i))
                XCTAssertEqual(count, listing.shards[shard].captionCounts?[key])
                all.append("\(shard):\(key):\(try XCTUnwrap(caption))")
            }
        }
        XCTAssertEqual(all.count, 9)
        XCTAssertEqual(Set(all).count, 9)
    }

    /// Image indices number the image_ids over all annotation files in order, and entries of one
    /// image in different files join one record.
    func testRetrievalEntriesAcrossFilesShareIndices() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        for i in 0..<2 { try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/\(i).jpg") }
        try DatasetFixtures.write("[{\"image\": \"0.jpg\", \"caption\": \"a red circle\", \"image_id\": 5}]", root + "/a.json")
        try DatasetFixtures.write("[{\"image\": \"1.jpg\", \"caption\": \"a blue circle\", \"image_id\": 6}, {\"image\": \"0.jpg\", \"caption\": \"a photo\", \"image_id\": 5}]", root + "/b.json")
        var o = DatasetFixtures.options(out, shards: 1, annotations: [root + "/a.json", root + "/b.json"], root: root, imageSize: 32)
        o.format = .retrieval
        XCTAssertNil(try DatasetFixtures.build(o).failure)
        let records = try DatasetFixtures.records(in: out).values.sorted { $0.sourceID < $1.sourceID }
        XCTAssertEqual(records.map(\.captions), [["a red circle", "a photo"], ["a blue circle"]])
        XCTAssertEqual(records.map(\.labels), [[0, 0], [1]])
    }
}

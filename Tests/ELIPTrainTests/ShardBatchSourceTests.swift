import ELIPImage
import ELIPModel
import ELIPShards
import ELIPTensor
import ELIPText
@testable import ELIPTrain
import Foundation
import XCTest

/// ShardBatchSource: the loader's batches as trainer batches (shapes, values, resumable positions).
final class ShardBatchSourceTests: XCTestCase {
    func testConvertsLoadedBatchesAndResumesByPosition() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-shard-source-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = "shard-00000-of-00001"
        let env = try LMDBEnvironment(path: dir.appendingPathComponent(name).path, readOnly: false, mapSize: 16 << 20)
        try env.write { txn in
            for k in 0..<10 {
                let img = try RGBImage(width: 24, height: 20, fill: RGB(UInt8(20 * k), 100, 200))
                try txn.put(UInt64(k), DatasetRecord(captions: ["a red circle", "a photo \(k)"], sourceID: "t:\(k)",
                                                     jpeg: try JPEG.encode(img)).encoded())
            }
        }
        try "{\"shards\": [{\"name\": \"\(name)\", \"records\": 10}]}".write(
            to: dir.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        let tokenizer = try BertTokenizer(vocabulary: Vocabulary(
            tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "photo"] + (0..<10).map(String.init)))
        let source = try ShardBatchSource(directory: dir.path, rank: 0, worldSize: 1, seed: 3, batchSize: 4, imageSize: 16,
                                          tokenizer: tokenizer, captionStyle: .albef(maxLength: 25), workerThreads: 2)
        XCTAssertEqual(source.batchesPerEpoch, 2)
        XCTAssertTrue(source.summary.contains("10 records"), source.summary)
        let b = try source.batch(epoch: 1, index: 1)
        XCTAssertEqual(b.images.shape, [4, 3, 16, 16])
        XCTAssertEqual(b.text.batch, 4)
        let loaded = try source.loader.batch(epoch: 1, index: 1)
        XCTAssertEqual(b.text.ids, loaded.ids.map { Int($0) })
        XCTAssertEqual(b.text.mask, loaded.mask.map { Int($0) })
        XCTAssertEqual(b.text.length, loaded.length)
        XCTAssertEqual(b.images.toArray(), loaded.images)
        // A second source (a resumed run, other thread count) gives the same batch at the same position.
        let resumed = try ShardBatchSource(directory: dir.path, rank: 0, worldSize: 1, seed: 3, batchSize: 4, imageSize: 16,
                                           tokenizer: tokenizer, workerThreads: 0)
        XCTAssertEqual(try resumed.batch(epoch: 1, index: 1).images.toArray(), loaded.images)
        XCTAssertThrowsError(try source.batch(epoch: 0, index: 2))
        XCTAssertEqual(ShardBatchSource.defaultWorkerThreads(environment: ["ELIP_LOADER_THREADS": "3"]), 3)
        XCTAssertEqual(ShardBatchSource.defaultWorkerThreads(environment: [:]), 2)
    }
}

import ELIPModel
import ELIPTrain
import XCTest

/// What a step takes grows with the ranks: the feature queue must hold batch_size x ranks
/// columns, and a synthetic corpus at least that many images (issue 15, class 11).
final class WorldSizeChecksTests: XCTestCase {
    func config(batch: Int, queue: Int, images: Int) -> TrainingConfig {
        var m = ALBEFConfig()
        m.queueSize = queue
        var c = TrainingConfig(model: m)
        c.batchSize = batch
        c.syntheticImages = images
        return c
    }

    func testQueueAndSyntheticCorpusScaleWithTheRanks() throws {
        let c = config(batch: 4, queue: 8, images: 8)
        XCTAssertNoThrow(try c.checkQueue(ranks: 2, file: "t.yaml"))
        XCTAssertNoThrow(try c.checkSyntheticCorpus(ranks: 2, file: "t.yaml"))
        XCTAssertThrowsError(try c.checkQueue(ranks: 3, file: "t.yaml")) { e in
            XCTAssertEqual("\(e)", "t.yaml: queue_size: 8 is smaller than the 12 features each step enqueues (batch_size 4 x 3 ranks); make it at least that")
        }
        XCTAssertThrowsError(try c.checkSyntheticCorpus(ranks: 3, file: "t.yaml")) { e in
            XCTAssertEqual("\(e)", "t.yaml: data.synthetic.images: 8 images are fewer than the 12 one step takes (batch_size 4 x 3 ranks): images would repeat inside a batch")
        }
        var shards = c
        shards.dataDirectory = "/data/shards"  // the corpus size is the loader's to check
        XCTAssertNoThrow(try shards.checkSyntheticCorpus(ranks: 3, file: "t.yaml"))
    }
}

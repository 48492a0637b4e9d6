import ELIPNN
import ELIPObjectives
import ELIPTensor
import XCTest

/// The id-aware variant of ITC and ITM negatives (ALBEF retrieval fine-tuning): positives by
/// image id over batch and id queue, the id queue's enqueue, and negatives that never share an id.
final class IdAwareContrastiveTests: XCTestCase {
    func testPositivesShareEachRowsWeightOverBatchAndIdQueue() throws {
        let q = try ContrastiveQueue(dim: 2, size: 4, tracksIds: true)
        XCTAssertEqual(q.idQueue, [-100, -100, -100, -100])
        q.idQueue = [7, -100, 5, 7]
        let p = try q.idAwarePositives(rowIds: [7, 5, 9], batchIds: [7, 5, 9]).toArray()
        XCTAssertEqual(p, [1.0 / 3, 0, 0, 1.0 / 3, 0, 0, 1.0 / 3,
                           0, 0.5, 0, 0, 0, 0.5, 0,
                           0, 0, 1, 0, 0, 0, 0].map(Float.init))
        // A row whose id no candidate carries (or the empty id) has no positive: an error.
        XCTAssertThrowsError(try q.idAwarePositives(rowIds: [3], batchIds: [4]))
        XCTAssertThrowsError(try q.idAwarePositives(rowIds: [-100], batchIds: [-100]))
        // A queue without ids refuses.
        XCTAssertThrowsError(try ContrastiveQueue(dim: 2, size: 4).idAwarePositives(rowIds: [1], batchIds: [1]))
    }

    /// With given positives the targets are alpha softmax(momentum sims) + (1 - alpha) positives.
    func testTeacherUsesTheGivenPositives() throws {
        let q = try ContrastiveQueue(dim: 2, size: 2, tracksIds: true)
        q.idQueue = [1, 4]
        try q.imageQueue.assign([1, 0, 0, 1])
        try q.textQueue.assign([0, 1, 1, 0])
        let img = try Tensor([1, 0, 0, 1], shape: [2, 2]), txt = try Tensor([0.6, 0.8, 1, 0], shape: [2, 2])
        let pos = try q.idAwarePositives(rowIds: [1, 2], batchIds: [1, 2])
        let t = try q.teacher(imageFeatM: img, textFeatM: txt, batchImages: img, batchTexts: txt, temperature: 0.5, alpha: 0.25,
                              positiveOffset: 0, positives: pos)
        let sims = try img.matmul(t.textCandidates).scaled(2).softmax().toArray(), p = pos.toArray()
        for (a, (s, y)) in zip(t.imageToText.toArray(), zip(sims, p)) { XCTAssertEqual(a, 0.25 * s + 0.75 * y, accuracy: 1e-6) }
        XCTAssertEqual(p, [0.5, 0, 0.5, 0, 0, 1, 0, 0])
        // Positives of the wrong shape are an error.
        XCTAssertThrowsError(try q.teacher(imageFeatM: img, textFeatM: txt, batchImages: img, batchTexts: txt, temperature: 0.5, alpha: 0.25,
                                           positiveOffset: 0, positives: Tensor.zeros([2, 3])))
    }

    func testEnqueueWritesIdsAndWraps() throws {
        let q = try ContrastiveQueue(dim: 1, size: 3, tracksIds: true)
        q.pointer = 2
        let f = try Tensor([0.1, 0.2], shape: [2, 1])
        try q.enqueue(imageFeatures: f, textFeatures: f, ids: [8, 9])
        XCTAssertEqual(q.idQueue, [9, -100, 8])
        XCTAssertEqual(q.imageQueue.toArray(), [0.2, 0, 0.1])
        XCTAssertEqual(q.pointer, 1)
        // Ids are required exactly when the queue keeps them, one per row.
        XCTAssertThrowsError(try q.enqueue(imageFeatures: f, textFeatures: f))
        XCTAssertThrowsError(try q.enqueue(imageFeatures: f, textFeatures: f, ids: [1]))
        XCTAssertThrowsError(try ContrastiveQueue(dim: 1, size: 3).enqueue(imageFeatures: f, textFeatures: f, ids: [1, 2]))
        q.initialiseRandomly(seed: 1)
        XCTAssertEqual(q.idQueue, [-100, -100, -100])
    }

    func testNegativeWeightsAndGivenNegativesExcludeSameIds() throws {
        var g = SeededGenerator(seed: 3)
        let sim = try Tensor((0..<12).map { _ in g.nextNormal() }, shape: [3, 4])  // a queue column beyond the batch
        let ids = [2, 2, 6]
        let w = try HardNegatives.idAwareWeights(sim, candidateIds: ids, rowOffset: 0).toArray()
        let soft = try sim.slice(axis: 1, start: 0, length: 3).softmax().toArray()
        for b in 0..<3 {
            for j in 0..<3 { XCTAssertEqual(w[b * 3 + j], ids[j] == ids[b] ? 0 : soft[b * 3 + j], accuracy: 1e-7) }
        }
        XCTAssertThrowsError(try HardNegatives.idAwareWeights(sim, candidateIds: [1, 1, 1], rowOffset: 0)) {
            XCTAssertTrue("\($0)".contains("shares its id 1"), "\($0)")
        }
        XCTAssertEqual(try HardNegatives.checkGiven(imageForText: [2, 2, 0], textForImage: [2, 2, 1], count: 3, ids: ids, rowOffset: 0).0, [2, 2, 0])
        XCTAssertThrowsError(try HardNegatives.checkGiven(imageForText: [1, 2, 0], textForImage: [2, 2, 1], count: 3, ids: ids, rowOffset: 0))
        XCTAssertThrowsError(try HardNegatives.checkGiven(imageForText: [2, 2, 0], textForImage: [2, 2, 2], count: 3, ids: ids, rowOffset: 0))
        XCTAssertThrowsError(try HardNegatives.checkGiven(imageForText: [2, 2, 3], textForImage: [2, 2, 1], count: 3, ids: ids, rowOffset: 0))
    }
}

@testable import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation
import XCTest

/// NLVR2's text-assignment stage (model_pretrain_nlvr.py): the pair draws and labels, the
/// batch-size limit, and a step whose loss is the cross-entropy of `ta_head` over the drawn pairs
/// with gradients reaching the ViT, the paired fusion layers and the head (not text_proj/temp).
final class NLVR2TextAssignmentTests: XCTestCase {
    func testDrawPairs() throws {
        // Uniform 0.1 picks each row's first candidate with weight (cumulative sum > 0.1 x total).
        let w: [Float] = [0, 0.7, 0.3,
                          0.3, 0, 0.7,
                          0.7, 0.3, 0]
        // kind u > 1/3: one partner; side u > 0.5: (b, j) label 0, else (j, b) label 1.
        let one = try ALBEFNLVRTextAssignmentModel.drawPairs(weights: w, batch: 3) { k in [0.9, 0.9, 0.1, 0.1][k % 4] }
        XCTAssertEqual(one.map { [$0.left, $0.right, $0.label] }, [[0, 1, 0], [1, 0, 0], [2, 0, 0]])
        let other = try ALBEFNLVRTextAssignmentModel.drawPairs(weights: w, batch: 3) { k in [0.9, 0.1, 0.1, 0.1][k % 4] }
        XCTAssertEqual(other.map { [$0.left, $0.right, $0.label] }, [[1, 0, 1], [0, 1, 1], [0, 2, 1]])
        // A draw near 1 picks the last candidate.
        let last = try ALBEFNLVRTextAssignmentModel.drawPairs(weights: w, batch: 3) { k in [0.9, 0.9, 0.99, 0.1][k % 4] }
        XCTAssertEqual(last.map(\.right), [2, 2, 1])
        // kind u <= 1/3: two distinct images other than b, label 2; the second draw excludes the
        // first, and the diagonal is never drawn even when the weights give it mass.
        var diag = w
        for b in 0..<3 { diag[b * 3 + b] = 5 }
        let neither = try ALBEFNLVRTextAssignmentModel.drawPairs(weights: diag, batch: 3) { k in [0.2, 0.9, 0.1, 0.1][k % 4] }
        XCTAssertEqual(neither.map { [$0.left, $0.right, $0.label] }, [[1, 2, 2], [0, 2, 2], [0, 1, 2]])
        // A row with no other image (all weight on itself) is an error naming the sample.
        XCTAssertThrowsError(try ALBEFNLVRTextAssignmentModel.drawPairs(weights: [1, 0, 0, 1], batch: 2) { _ in 0.9 }) {
            XCTAssertTrue("\($0)".contains("sample 0"), "\($0)")
        }
        XCTAssertThrowsError(try ALBEFNLVRTextAssignmentModel.drawPairs(weights: [0, .nan, 1, 0], batch: 2) { _ in 0.9 })
    }

    func tinyConfig() -> ALBEFNLVRTextAssignmentConfig {
        var c = ALBEFNLVRTextAssignmentConfig()
        c.imageRes = 32
        c.vision.patchSize = 16
        c.vision.embedDim = 16
        c.vision.depth = 2
        c.vision.numHeads = 2
        c.vision.mlpRatio = 2
        c.visionWidth = 16
        c.embedDim = 8
        c.bert.hiddenSize = 16
        c.bert.numAttentionHeads = 2
        c.bert.intermediateSize = 32
        c.bert.vocabSize = 64
        c.bert.maxPositionEmbeddings = 16
        c.bert.fusionLayer = 2
        c.bert.numHiddenLayers = 6
        c.bert.encoderWidth = 16
        return c
    }

    func testStep() throws {
        let config = tinyConfig()
        try config.validate(file: "tiny")
        let model = try ALBEFNLVRTextAssignmentModel(config: config)
        try model.initialiseRandomly(seed: 4)
        var g = SeededGenerator(seed: 2)
        let bs = 4
        let images = try Tensor((0..<(bs * 3 * 32 * 32)).map { _ in g.nextUniform() - 0.5 }, shape: [bs, 3, 32, 32])
        let text = try TextBatch(ids: (0..<bs).flatMap { [1, 5 + $0, 9, 0] }, mask: (0..<bs).flatMap { _ in [1, 1, 1, 0] }, batch: bs, length: 4)
        var context = StepContext(seed: 7, dropout: false)
        model.parameters.zeroGradients()
        let out = try model.step(ImageTextBatch(images: images, text: text), context: &context)
        let loss = out.total.toArray()[0]
        XCTAssertTrue(loss.isFinite && loss > 0)
        try Autograd.backward(from: out.total)
        func gradNorm(_ name: String) throws -> Float {
            let e = try XCTUnwrap(model.parameters.entries.first { $0.name == name }, name)
            return model.parameters.gradients[e.offset..<(e.offset + e.count)].map { $0 * $0 }.reduce(0, +)
        }
        for reached in ["ta_head.weight", "visual_encoder.patch_embed.proj.weight", "text_encoder.encoder.layer.2.crossattention.self.key.weight",
                        "text_encoder.encoder.layer.5.crossattention.self.query.weight"] {
            XCTAssertGreaterThan(try gradNorm(reached), 0, reached)
        }
        for unused in ["text_proj.weight", "temp", "vision_proj.weight"] { XCTAssertEqual(try gradNorm(unused), 0, unused) }
        // Fewer than 3 images per rank cannot make "neither" pairs: refused.
        let two = try TextBatch(ids: [1, 5, 1, 6], mask: [1, 1, 1, 1], batch: 2, length: 2)
        var c2 = StepContext(seed: 7, dropout: false)
        XCTAssertThrowsError(try model.step(ImageTextBatch(images: images.slice(axis: 0, start: 0, length: 2), text: two), context: &c2))
    }
}

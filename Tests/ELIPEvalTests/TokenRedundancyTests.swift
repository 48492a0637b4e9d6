import ELIPEncoders
import ELIPEval
import ELIPNN
import ELIPTensor
import XCTest

/// Issue 18 part 1: [CLS] attention entropy and patch-token similarity per ViT layer.
final class TokenRedundancyTests: XCTestCase {
    func testEntropyAndCosineByHand() {
        // [CLS] key 0.5, patches 0.25, 0.25: renormalised to 1/2, 1/2 -> log 2.
        [Float(0.5), 0.25, 0.25].withUnsafeBufferPointer { p in
            XCTAssertEqual(TokenRedundancy.entropy(p, row: 0, length: 3), log(2), accuracy: 1e-12)
        }
        // All attention on one patch: 0.
        [Float(0.2), 0.8, 0, 0].withUnsafeBufferPointer { p in
            XCTAssertEqual(TokenRedundancy.entropy(p, row: 0, length: 4), 0, accuracy: 1e-12)
        }
        // Tokens (1,0), (2,0), (0,3): pairs 1, 0, 0 -> mean 1/3. Identical tokens: 1; u and -u: -1.
        [Float(1), 0, 2, 0, 0, 3].withUnsafeBufferPointer { v in
            XCTAssertEqual(TokenRedundancy.meanPairwiseCosine(v, start: 0, tokens: 3, width: 2), 1.0 / 3, accuracy: 1e-12)
        }
        [Float(1), 2, 1, 2].withUnsafeBufferPointer { v in
            XCTAssertEqual(TokenRedundancy.meanPairwiseCosine(v, start: 0, tokens: 2, width: 2), 1, accuracy: 1e-12)
        }
        [Float(9), 9, 1, 2, -1, -2].withUnsafeBufferPointer { v in  // start skips the first row
            XCTAssertEqual(TokenRedundancy.meanPairwiseCosine(v, start: 2, tokens: 2, width: 2), -1, accuracy: 1e-12)
        }
    }

    /// On a tiny random ViT the curves agree with a direct computation from the full attention
    /// matrices and tokens of each block, and lie in their ranges.
    func testCurvesOfATinyViT() throws {
        var vision = VisionConfig()
        vision.embedDim = 16; vision.numHeads = 2; vision.mlpRatio = 2; vision.depth = 3
        let arena = ParameterArena(capacity: 1 << 20)
        let vit = try VisionTransformer(Scope(arena: arena), config: vision, imageRes: 48)  // 9 patches
        var g = SeededGenerator(seed: 90)
        for t in arena.tensors { try t.assign((0..<t.count).map { _ in g.nextNormal() * 0.5 }) }
        let images = try Tensor((0..<(3 * 3 * 48 * 48)).map { _ in g.nextNormal() }, shape: [3, 3, 48, 48])
        let r = try TokenRedundancy.measure(vit, batches: [images.slice(axis: 0, start: 0, length: 2), images.slice(axis: 0, start: 2, length: 1)])
        XCTAssertEqual(r.images, 3)
        XCTAssertEqual(r.clsAttentionEntropy.count, 3)
        for i in 0..<3 {
            XCTAssertTrue(r.clsAttentionEntropy[i] >= 0 && r.clsAttentionEntropy[i] <= log(9) + 1e-9)
            XCTAssertEqual(r.normalizedEntropy[i], r.clsAttentionEntropy[i] / log(9), accuracy: 1e-12)
            XCTAssertTrue(r.patchCosine[i] >= -1 && r.patchCosine[i] <= 1)
        }
        // Direct: full attention matrices, per-pair cosines.
        var x = try Autograd.noGrad { try vit.embed(images) }
        for layer in 0..<3 {
            let probs = try Autograd.noGrad { try vit.blocks[layer].attentionProbabilities(x) }.toArray()  // [3, 2, 10, 10]
            var entropy = 0.0
            for b in 0..<3 {
                for h in 0..<2 {
                    let row = (0..<10).map { Double(probs[((b * 2 + h) * 10) * 10 + $0]) }
                    let total = row[1...].reduce(0, +)
                    entropy -= row[1...].map { $0 / total }.reduce(0) { $0 + $1 * log($1) } / 2
                }
            }
            XCTAssertEqual(r.clsAttentionEntropy[layer], entropy / 3, accuracy: 1e-5)
            x = try Autograd.noGrad { try vit.runBlock(layer, x) }
            let v = x.toArray()
            var cosine = 0.0
            for b in 0..<3 {
                var s = 0.0
                for j in 1..<10 {
                    for k in 1..<10 where k != j {
                        let u = (0..<16).map { Double(v[(b * 10 + j) * 16 + $0]) }, w = (0..<16).map { Double(v[(b * 10 + k) * 16 + $0]) }
                        let dot = zip(u, w).reduce(0) { $0 + $1.0 * $1.1 }
                        s += dot / (u.reduce(0) { $0 + $1 * $1 }.squareRoot() * w.reduce(0) { $0 + $1 * $1 }.squareRoot())
                    }
                }
                cosine += s / 72
            }
            XCTAssertEqual(r.patchCosine[layer], cosine / 3, accuracy: 1e-5)
        }
    }
}

import XCTest
@testable import ELIPTensor

/// A finite-difference check for every differentiable op, on odd sizes.
final class GradientCheckTests: XCTestCase {
    func testLinearWithAndWithoutBias() {
        let x = randomTensor([2, 3, 5], seed: 1), w = randomTensor([7, 5], seed: 2), b = randomTensor([7], seed: 3)
        assertGradients([x, w, b]) { try x.linear(w, b) }
        assertGradients([x, w]) { try x.linear(w) }
    }

    func testMatmulAllTransposes() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randomTensor(ta ? [4, 3] : [3, 4], seed: 4), b = randomTensor(tb ? [5, 4] : [4, 5], seed: 5)
            assertGradients([a, b]) { try a.matmul(b, transposeSelf: ta, transposeOther: tb) }
        }
    }

    func testBatchedMatmulAllTransposes() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randomTensor(ta ? [2, 4, 3] : [2, 3, 4], seed: 6), b = randomTensor(tb ? [2, 5, 4] : [2, 4, 5], seed: 7)
            assertGradients([a, b]) { try a.batchedMatmul(b, transposeSelf: ta, transposeOther: tb) }
        }
    }

    func testBinaryOpsWithBroadcasting() {
        let shapes: [([Int], [Int])] = [([3, 5], [3, 5]), ([2, 3, 5], [5]), ([2, 3, 5], [3, 5]), ([3, 1], [1, 4]),
                                        ([2, 3, 4], [2, 1, 4]), ([3, 4], []), ([], [3, 4])]
        for (i, (sa, sb)) in shapes.enumerated() {
            let a = randomTensor(sa, seed: UInt64(10 + i))
            // Keep divisors away from zero.
            let b = randomTensor(sb, seed: UInt64(20 + i), scale: 0.5)
            let bpos = try! b.detached().scaled(1, plus: 1.5).detached().requiringGrad()
            assertGradients([a, b]) { try a + b }
            assertGradients([a, b]) { try a - b }
            assertGradients([a, b]) { try a * b }
            assertGradients([a, bpos]) { try a / bpos }
        }
    }

    func testScaleSumMean() {
        let x = randomTensor([3, 7], seed: 30)
        assertGradients([x]) { x.scaled(-1.7, plus: 0.3) }
        assertGradients([x]) { x.sum() }
        assertGradients([x]) { x.mean() }
        assertGradients([x]) { x.sumLastDim() }
        assertGradients([x]) { x.meanLastDim() }
    }

    func testReshapeAndTranspose() {
        let x = randomTensor([2, 3, 4], seed: 31)
        assertGradients([x]) { try x.reshaped([6, -1]) }
        let m = randomTensor([3, 5], seed: 32)
        assertGradients([m]) { try m.transposed() }
    }

    func testLayerNorm() {
        for cols in [1 + 4, 17, 64] {
            let x = randomTensor([3, cols], seed: 33, scale: 2), w = randomTensor([cols], seed: 34), b = randomTensor([cols], seed: 35)
            assertGradients([x, w, b]) { try x.layerNorm(weight: w, bias: b, eps: 1e-6) }
            assertGradients([x, w, b]) { try x.layerNorm(weight: w, bias: b, eps: 1e-12) }
        }
    }

    func testSoftmaxLogSoftmaxGelu() {
        let x = randomTensor([4, 9], seed: 36, scale: 3)
        assertGradients([x]) { x.softmax() }
        assertGradients([x]) { x.logSoftmax() }
        assertGradients([x]) { x.gelu() }
    }

    func testDropoutWithFixedSeed() {
        let x = randomTensor([5, 13], seed: 37)
        assertGradients([x]) { try x.dropout(0.3, seed: 99) }
    }

    func testAttentionWithMaskDropoutAndPacking() {
        let q = randomTensor([2, 3, 8], seed: 40), k = randomTensor([2, 5, 8], seed: 41), v = randomTensor([2, 5, 8], seed: 42)
        var mask = [Float](repeating: 0, count: 10)
        mask[3] = -10000; mask[4] = -10000; mask[9] = -10000  // padded keys
        assertGradients([q, k, v]) { try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .keyPadding(mask)).output }
        assertGradients([q, k, v]) {
            try Tensor.attention(query: q, key: k, value: v, heads: 4, dropout: (0.25, 5)).output
        }
        let qkv = randomTensor([2, 5, 12], seed: 43)
        assertGradients([qkv]) { try qkv.packedSelfAttention(heads: 2).output }
    }

    func testAttentionToSharedKeysAndValues() {
        // Four query batches over two cached key/value batches, one used three times (ITM style):
        // gradients from every query that shares a key batch add up.
        let q = randomTensor([4, 3, 8], seed: 44), k = randomTensor([2, 5, 8], seed: 45), v = randomTensor([2, 5, 8], seed: 46)
        let rows = [1, 0, 1, 1]
        assertGradients([q, k, v]) { try Tensor.attention(query: q, key: k, value: v, keyRows: rows, heads: 2).output }
        assertGradients([q, k, v]) {
            try Tensor.attention(query: q, key: k, value: v, keyRows: rows, heads: 4, dropout: (0.2, 9)).output
        }
    }

    func testSharedKeysEqualGatheredKeys() throws {
        // Same values and gradients as materialising the gathered keys and values.
        let rows = [1, 0, 1]
        let q1 = randomTensor([3, 4, 8], seed: 60), k1 = randomTensor([2, 6, 8], seed: 61), v1 = randomTensor([2, 6, 8], seed: 62)
        let q2 = randomTensor([3, 4, 8], seed: 60), k2 = randomTensor([2, 6, 8], seed: 61), v2 = randomTensor([2, 6, 8], seed: 62)
        let w = randomTensor([3, 4, 8], seed: 63, grad: false)
        // One graph at a time: the tape is global.
        let shared = try Tensor.attention(query: q1, key: k1, value: v1, keyRows: rows, heads: 2).output
        try Autograd.backward(from: (shared * w).sum())
        let gathered = try Tensor.attention(query: q2, key: k2.gatherRows(rows), value: v2.gatherRows(rows), heads: 2).output
        try Autograd.backward(from: (gathered * w).sum())
        for (a, b, name) in [(shared, gathered, "output"), (q1.grad!, q2.grad!, "dq"), (k1.grad!, k2.grad!, "dk"), (v1.grad!, v2.grad!, "dv")] {
            let x = a.toArray(), y = b.toArray()
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, "\(name): shared vs gathered keys differ by \(worst)")
        }
        XCTAssertThrowsError(try Tensor.attention(query: q1, key: k1, value: v1, keyRows: [0, 2, 1], heads: 2))
    }

    func testEmbeddingGatherConcatSliceMerge() {
        let table = randomTensor([7, 5], seed: 50)
        assertGradients([table]) { try table.embeddingLookup([3, 0, 3, 6, 3]) }
        let x = randomTensor([4, 3, 5], seed: 51)
        assertGradients([x]) { try x.gatherRows([2, 2, 0]) }
        let a = randomTensor([2, 3, 5], seed: 52), b = randomTensor([2, 1, 5], seed: 53), c = randomTensor([2, 2, 5], seed: 54)
        assertGradients([a, b, c]) { try Tensor.concat([a, b, c], axis: 1) }
        let d = randomTensor([2, 3, 2], seed: 55)
        assertGradients([a, d]) { try Tensor.concat([a, d], axis: -1) }
        assertGradients([a, a]) { try Tensor.concat([a, a], axis: 0) }
        assertGradients([a]) { try a.slice(axis: 1, start: 1, length: 2) }
        let w: [Float] = [0.5, 0.25, 0.25, 0.1, 0, 0.9]
        assertGradients([a]) { try a.mergeRows(weights: w) }
    }

    func testNormalizeAndLosses() {
        let x = randomTensor([4, 6], seed: 60)
        assertGradients([x]) { x.l2Normalized() }
        let logits = randomTensor([5, 7], seed: 61, scale: 2)
        assertGradients([logits]) { try logits.crossEntropy(labels: [3, -100, 0, 6, -100]) }
        var rng = SeededGenerator(seed: 62)
        let t = (0..<35).map { _ in rng.nextUniform() }
        let targets = try! Tensor(t, shape: [5, 7]).softmax()
        assertGradients([logits]) { try logits.softCrossEntropy(targets: targets) }
    }

    /// A small composite: the gradient of a layer built from several ops (residual, pre-LN).
    func testCompositePreLNBlock() {
        let x = randomTensor([2, 5, 8], seed: 70)
        let g = randomTensor([8], seed: 71), bb = randomTensor([8], seed: 72)
        let wqkv = randomTensor([24, 8], seed: 73, scale: 0.5), wo = randomTensor([8, 8], seed: 74, scale: 0.5)
        assertGradients([x, g, bb, wqkv, wo]) {
            let h = try x.layerNorm(weight: g, bias: bb, eps: 1e-6)
            let a = try h.linear(wqkv).packedSelfAttention(heads: 2).output
            return try x + (try a.linear(wo)).gelu()
        }
    }
}

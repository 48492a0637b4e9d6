import ELIPEncoders
import ELIPNN
import ELIPTensor
import XCTest

/// The stack reading chosen rows (its last layer runs only those): the rows are the full stack's,
/// and so are the gradients of any loss on them.
final class BertLayerStackReadingTests: XCTestCase {
    private func tinyConfig() -> BertConfig {
        var c = BertConfig()
        c.hiddenSize = 8
        c.numAttentionHeads = 2
        c.intermediateSize = 12
        c.numHiddenLayers = 3
        c.encoderWidth = 6
        return c
    }

    private func fill(_ t: Tensor, seed: UInt64, scale: Float) {
        var g = SeededGenerator(seed: seed)
        t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = g.nextNormal() * scale } }
    }

    func testReadRowsEqualTheFullStackWithGradients() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let config = tinyConfig()
        let stack = try BertLayerStack(Scope(arena: arena)["encoder"], config: config, layers: 0..<3, crossAttention: { $0 != 1 })
        for (k, t) in arena.tensors.enumerated() { fill(t, seed: 100 + UInt64(k), scale: 0.3) }
        let b = 5, l = 4, h = 8
        let hidden = try Tensor.zeros([b, l, h]).requiringGrad()
        fill(hidden, seed: 7, scale: 1)
        let images = try Tensor.zeros([3, 5, 6])
        fill(images, seed: 8, scale: 1)
        let mask = try TextBatch(ids: [Int](repeating: 1, count: b * l), mask: [1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0],
                                 batch: b, length: l)
        let rows = [2, 0, 1, 1, 2]
        // A loss that weighs every output it reads differently, so a wrong row or entry shows.
        let weights = try Tensor.zeros([b, l, h])
        fill(weights, seed: 9, scale: 1)

        // ITM-like [CLS] rows, MLM-like scattered rows (unsorted, an entry reading none), whole entries.
        let readings: [[[Int]]] = [
            [[0], [0], [0], [0], [0]],
            [[0], [0], [3, 1], [], [2, 0]],
            [[0], [0, 1, 2, 3], [1], [0, 1, 2, 3], [2]],
        ]
        for reading in readings {
            for withImages in [true, false] {
                func run(full wanted: Bool) throws -> (values: [Float], grads: [[Float]]) {
                    arena.zeroGradients()
                    hidden.zeroGradient()
                    // Projected per run: a backward pass consumes the graph behind the keys.
                    let context = withImages ? try stack.crossAttentionContext(images) : nil
                    let flat = reading.enumerated().flatMap { e, ps in ps.map { e * l + $0 } }
                    let read: Tensor
                    if wanted {
                        let full = try stack(hidden, mask: mask, images: context, imageRows: rows, dropout: nil)
                        read = try full.reshaped([b * l, h]).gatherRows(flat)
                    } else {
                        read = try stack(hidden, mask: mask, images: context, imageRows: rows, dropout: nil, reading: reading)
                    }
                    XCTAssertEqual(read.shape, [flat.count, h])
                    let loss = try (read * weights.reshaped([b * l, h]).gatherRows(flat)).sum()
                    try Autograd.backward(from: loss)
                    return (read.toArray(), [hidden.grad!.toArray()] + arena.tensors.map { $0.grad?.toArray() ?? [] })
                }
                let full = try run(full: true), split = try run(full: false)
                XCTAssertEqual(split.values.count, full.values.count)
                XCTAssertTrue((withImages ? full.grads : [full.grads[0]]).allSatisfy { $0.contains { $0 != 0 } },
                              "the input (and with images every parameter) gets a gradient")
                for (a, e) in zip(split.values, full.values) { XCTAssertEqual(a, e, accuracy: 1e-5, "\(reading), images \(withImages)") }
                for (k, (ga, ge)) in zip(split.grads, full.grads).enumerated() {
                    XCTAssertEqual(ga.count, ge.count, "gradient \(k)")
                    for (a, e) in zip(ga, ge) { XCTAssertEqual(a, e, accuracy: 1e-4, "gradient \(k), \(reading), images \(withImages)") }
                }
            }
        }
        Autograd.reset()
    }

    func testReadingRejectsBadRowsAndCausalStacks() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let config = tinyConfig()
        let scope = Scope(arena: arena)
        let stack = try BertLayerStack(scope["encoder"], config: config, layers: 0..<2, crossAttention: { _ in false })
        let hidden = try Tensor.zeros([2, 3, 8])
        let mask = try TextBatch(ids: [Int](repeating: 1, count: 6), mask: [Int](repeating: 1, count: 6), batch: 2, length: 3)
        for bad in [[[0]], [[], []], [[0], [3]], [[0], [-1]]] {
            XCTAssertThrowsError(try stack(hidden, mask: mask, dropout: nil, reading: bad), "\(bad)") { error in
                XCTAssertTrue("\(error)".contains("rows"), "\(error)")
            }
        }
        let decoder = BertLayerStack(layers: stack.layers, config: config, range: 0..<2, causal: true)
        XCTAssertThrowsError(try decoder(hidden, mask: mask, dropout: nil, reading: [[0], [0]])) { error in
            XCTAssertTrue("\(error)".contains("causal"), "\(error)")
        }
    }
}

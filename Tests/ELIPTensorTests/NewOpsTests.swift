import Foundation
import XCTest
@testable import ELIPTensor

/// The engine pieces the next backbones need: causal and 2-D masks, QuickGELU, label smoothing,
/// backward errors, weight tying and initialisation by layer type.
final class NewOpsTests: XCTestCase {
    func testQuickGELUValuesAndGradient() throws {
        let x = randomTensor([3, 7], seed: 1, scale: 4)
        let y = x.quickGELU().toArray(), xs = x.toArray()
        for (a, b) in zip(y, xs) { XCTAssertEqual(Double(a), Double(b) / (1 + exp(-1.702 * Double(b))), accuracy: 1e-6) }
        assertGradients([x]) { x.quickGELU() }
    }

    /// The row maximum (lane-wise in the kernel) wherever it sits: in any of the 16 lanes, in the
    /// tail after the last full 16, in rows shorter than 16. With a maximum of 1000 every other
    /// entry must come out exactly 0 and the maximum exactly 1; a missed maximum overflows exp and
    /// leaves tiny non-zero values.
    func testSoftmaxFindsTheRowMaximumInEveryLaneAndTheTail() throws {
        for n in [1, 5, 16, 17, 31, 33, 257] {
            for position in Set([0, n / 2, n - 1] + (0..<min(n, 16)).map { $0 }) {
                var row = (0..<n).map { Float(($0 * 37) % 11) / 4 - 1 }
                row[position] = 1000
                let y = try Tensor(row, shape: [1, n]).softmax().toArray()
                for (i, v) in y.enumerated() {
                    XCTAssertEqual(v, i == position ? 1 : 0, "n \(n), maximum at \(position): y[\(i)] = \(v)")
                }
            }
        }
    }

    /// Far in the tails (the vectorised kernel's exp range): no subnormal outputs or gradients
    /// (they make every GEMM that reads them slow), values as the exact formula.
    func testQuickGELUTailsHaveNoSubnormals() throws {
        let xs: [Float] = [-1000, -90, -60, -51.2, -51, -40, -10, -1e-3, 0, 1e-3, 10, 60, 1000]
        let x = try Tensor(xs, shape: [xs.count]).requiringGrad()
        let y = x.quickGELU()
        try Autograd.backward(from: y.sum())
        let grad = try XCTUnwrap(x.grad).toArray()
        for (i, v) in xs.enumerated() {
            let exact = Double(v) / (1 + exp(-1.702 * Double(v)))
            let out = y.toArray()[i], g = grad[i]
            XCTAssertFalse(out.isSubnormal, "QuickGELU(\(v)) = \(out) is subnormal")
            XCTAssertFalse(g.isSubnormal, "gradient at \(v) = \(g) is subnormal")
            XCTAssertEqual(Double(out), exact, accuracy: max(1e-6, abs(exact) * 1e-6), "QuickGELU(\(v))")
        }
    }

    /// Causal attention equals the same attention with the explicit additive mask
    /// (1 - causal * padding) * -10000 of HuggingFace/BLIP, and has correct gradients.
    func testCausalMaskEqualsExplicitAdditiveMask() throws {
        let b = 2, t = 5, d = 8
        let q = randomTensor([b, t, d], seed: 2), k = randomTensor([b, t, d], seed: 3), v = randomTensor([b, t, d], seed: 4)
        var padding = [Float](repeating: 0, count: b * t)
        padding[4] = -10000; padding[8] = -10000; padding[9] = -10000
        var explicit = [Float](repeating: 0, count: b * t * t)
        for i in 0..<b { for r in 0..<t { for j in 0..<t {
            let visible = j <= r && padding[i * t + j] == 0
            explicit[(i * t + r) * t + j] = visible ? 0 : -10000
        } } }
        let causal = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .causal(keyPadding: padding), returnProbabilities: true)
        let additive = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .additive(try Tensor(explicit, shape: [b, t, t])),
                                            returnProbabilities: true)
        XCTAssertEqual(causal.output.toArray(), additive.output.toArray())
        // No query sees a later key.
        let p = try XCTUnwrap(causal.probabilities).toArray()
        // (-10000 underflows; the engine's exp may leave a denormal where PyTorch has 0.)
        for bh in 0..<(b * 2) { for r in 0..<t { for j in (r + 1)..<t where j < t { XCTAssertLessThan(p[(bh * t + r) * t + j], 1e-30) } } }
        Autograd.reset()
        assertGradients([q, k, v]) { try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .causal(keyPadding: padding)).output }
        assertGradients([q, k, v]) { try Tensor.attention(query: q, key: k, value: v, heads: 4, mask: .causal(keyPadding: nil)).output }
    }

    /// A [1, Tq, Tk] mask is shared by the batch; [B, Tq, Tk] is per entry; wrong shapes throw.
    func testAdditiveMaskBroadcastAndShapes() throws {
        let q = randomTensor([2, 3, 4], seed: 5), k = randomTensor([2, 6, 4], seed: 6), v = randomTensor([2, 6, 4], seed: 7)
        let shared = randomTensor([1, 3, 6], seed: 8, scale: 3, grad: false)
        var repeated = shared.toArray()
        repeated += repeated
        let a = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .additive(shared)).output
        let c = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .additive(try Tensor(repeated, shape: [2, 3, 6]))).output
        XCTAssertEqual(a.toArray(), c.toArray())
        Autograd.reset()
        assertGradients([q, k, v]) { try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .additive(shared)).output }
        XCTAssertThrowsError(try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .additive(Tensor.zeros([2, 6, 3]))))
        XCTAssertThrowsError(try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .causal(keyPadding: nil)),
                             "causal attention needs Tq == Tk")
        XCTAssertThrowsError(try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .keyPadding([0, 0])))
        Autograd.reset()
    }

    /// PyTorch's CrossEntropyLoss(label_smoothing=eps, ignore_index=-100): value from the formula
    /// in double precision, finite-difference gradient, and eps = 0 is the plain loss.
    func testLabelSmoothedCrossEntropy() throws {
        let logits = randomTensor([5, 7], seed: 9, scale: 3)
        let labels = [2, -100, 6, 0, 3]
        let eps: Float = 0.1
        let got = try logits.crossEntropy(labels: labels, labelSmoothing: eps).scalar
        let x = logits.toArray()
        var total = 0.0, valid = 0.0
        for i in 0..<5 where labels[i] != -100 {
            let row = (0..<7).map { Double(x[i * 7 + $0]) }
            let m = row.max()!, lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
            let lp = row.map { $0 - lse }
            total += (1 - Double(eps)) * -lp[labels[i]] + Double(eps) * -lp.reduce(0, +) / 7
            valid += 1
        }
        XCTAssertEqual(Double(got), total / valid, accuracy: 1e-5)
        Autograd.reset()
        XCTAssertEqual(try logits.crossEntropy(labels: labels, labelSmoothing: 0).scalar, try logits.crossEntropy(labels: labels).scalar)
        Autograd.reset()
        assertGradients([logits]) { try logits.crossEntropy(labels: labels, labelSmoothing: eps) }
        XCTAssertThrowsError(try logits.crossEntropy(labels: labels, labelSmoothing: 1.5))
        XCTAssertEqual(try logits.crossEntropy(labels: [Int](repeating: -100, count: 5), labelSmoothing: eps).scalar, 0)
        Autograd.reset()
    }

    struct Boom: Error {}

    /// An error inside an op's backward (a failed collective, say) reaches the caller of
    /// `Autograd.backward`, and the graph is dropped; a gradient of the wrong size is an error too.
    func testBackwardErrorsPropagate() throws {
        let x = randomTensor([3], seed: 10)
        let y = Autograd.customOp(output: x.detached().copy(), inputs: [x]) { _ in throw Boom() }
        XCTAssertThrowsError(try Autograd.backward(from: y.sum())) { XCTAssertTrue($0 is Boom, "\($0)") }
        XCTAssertEqual(Autograd.recordedCount, 0, "the tape is cleared after a failed backward")
        let z = Autograd.customOp(output: x.detached().copy(), inputs: [x]) { _ in [Tensor.zeros([2])] }
        XCTAssertThrowsError(try Autograd.backward(from: z.sum())) { XCTAssertTrue("\($0)".contains("shape mismatch"), "\($0)") }
        let w = Autograd.customOp(output: x.detached().copy(), inputs: [x]) { g in [g] }
        x.zeroGradient()
        try Autograd.backward(from: w.sum())
        XCTAssertEqual(x.grad?.toArray(), [1, 1, 1])
    }

    /// A tied name is the same storage and gradient; using it twice sums both gradients.
    func testWeightTyingSharesStorageAndSumsGradients() throws {
        let arena = ParameterArena(capacity: 1 << 12)
        let w = try arena.add("embeddings.word.weight", shape: [4, 3], init: .truncatedNormal(std: 0.02))
        let bias = try arena.add("head.bias", shape: [4], init: .zeros)
        try arena.tie("head.decoder.weight", to: w)
        XCTAssertTrue(arena.tensor("head.decoder.weight") === w)
        XCTAssertEqual(arena.names(of: "embeddings.word.weight"), ["embeddings.word.weight", "head.decoder.weight"])
        XCTAssertEqual(arena.entries.count, 2, "an alias is not a second parameter")
        XCTAssertThrowsError(try arena.tie("head.bias", to: w), "a name cannot be reused")
        XCTAssertThrowsError(try arena.tie("x", to: Tensor.zeros([2])), "only parameters of this arena can be tied")
        try w.assign((0..<12).map { Float($0) / 10 })
        // Use 1: lookup of rows 1 and 3; use 2: the tied decoder on those rows.
        let rows = try w.embeddingLookup([1, 3])
        let logits = try rows.linear(try XCTUnwrap(arena.tensor("head.decoder.weight")), bias)
        try Autograd.backward(from: logits.sum())
        // d/dW of sum(rows W^T) = (sum of rows) per output row + for rows 1, 3: sum over outputs of W rows.
        let wv = w.toArray(), g = try XCTUnwrap(w.grad).toArray()
        var rowSum = [Float](repeating: 0, count: 3), colSum = [Float](repeating: 0, count: 3)
        for c in 0..<3 {
            rowSum[c] = wv[3 + c] + wv[9 + c]
            for r in 0..<4 { colSum[c] += wv[r * 3 + c] }
        }
        for r in 0..<4 { for c in 0..<3 {
            let expected = rowSum[c] + ((r == 1 || r == 3) ? colSum[c] : 0)
            XCTAssertEqual(g[r * 3 + c], expected, accuracy: 1e-5)
        } }
    }

    /// Initialisation follows each parameter's declared kind, in arena order, reproducibly.
    func testInitialisationByDeclaredKind() throws {
        func make() throws -> ParameterArena {
            let a = ParameterArena(capacity: 1 << 12)
            _ = try a.add("w", shape: [50], init: .truncatedNormal(std: 0.02))
            _ = try a.add("b", shape: [5], init: .zeros)
            _ = try a.add("g", shape: [5], init: .ones)
            let t = try a.add("temp", shape: [], init: .setByModel)
            try t.assign([0.07])
            return a
        }
        let a = try make(), b = try make()
        a.initialise(seed: 3)
        b.initialise(seed: 3)
        XCTAssertEqual(Array(a.values), Array(b.values))
        let w = a.tensor("w")!.toArray()
        XCTAssertTrue(w.allSatisfy { abs($0) <= 0.04 } && w.contains { $0 != 0 })
        XCTAssertEqual(a.tensor("b")!.toArray(), [Float](repeating: 0, count: 5))
        XCTAssertEqual(a.tensor("g")!.toArray(), [Float](repeating: 1, count: 5))
        XCTAssertEqual(a.tensor("temp")!.scalar, 0.07, "set by the model, left alone")
        XCTAssertThrowsError(try a.add("huge", shape: [Int.max, 4]), "an element count that overflows is an error")
    }
}

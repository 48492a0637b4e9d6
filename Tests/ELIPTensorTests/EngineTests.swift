import XCTest
@testable import ELIPTensor

final class BroadcastingAndErrorTests: XCTestCase {
    func testBroadcastValues() throws {
        let a = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(try (a + Tensor([10, 20, 30], shape: [3])).toArray(), [11, 22, 33, 14, 25, 36])
        XCTAssertEqual(try (a * Tensor([2, -1], shape: [2, 1])).toArray(), [2, 4, 6, -4, -5, -6])
        XCTAssertEqual(try (Tensor([1, 2], shape: [2, 1]) - Tensor([1, 2, 3], shape: [1, 3])).toArray(), [0, -1, -2, 1, 0, -1])
        XCTAssertEqual(try (a / Tensor(scalar: 2)).toArray(), [0.5, 1, 1.5, 2, 2.5, 3])
        XCTAssertEqual(broadcastShape([4, 1, 3], [5, 1]), [4, 5, 3])
        XCTAssertNil(broadcastShape([2, 3], [4]))
    }

    /// linear(x, w, b) is x w^T + b (the bias rows are C's starting value and the GEMM adds onto
    /// them); without a bias, x w^T alone. Repeated: later calls get recycled output memory.
    func testLinearValuesWithAndWithoutBias() throws {
        let x = try Tensor([1, 2, 3, -1, 0, 2], shape: [2, 3])
        let w = try Tensor([1, 0, 1, 0.5, -1, 2], shape: [2, 3])
        let b = try Tensor([10, -20], shape: [2])
        for _ in 0..<3 {
            XCTAssertEqual(try x.linear(w, b).toArray(), [14, -15.5, 11, -16.5])
            XCTAssertEqual(try x.linear(w).toArray(), [4, 4.5, 1, 3.5])
        }
    }

    /// A shape mismatch is a thrown error naming both shapes, never a trap.
    func testShapeErrorsNameBothShapes() throws {
        let a = Tensor.zeros([2, 3]), b = Tensor.zeros([4])
        func expectMessage(_ body: () throws -> Tensor, contains parts: [String], line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { error in
                let text = "\(error)"
                for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks \(p)", line: line) }
            }
        }
        expectMessage({ try a + b }, contains: ["[2, 3]", "[4]"])
        expectMessage({ try a.linear(Tensor.zeros([5, 4])) }, contains: ["[2, 3]", "[5, 4]"])
        expectMessage({ try a.matmul(Tensor.zeros([2, 3])) }, contains: ["[2, 3]"])
        expectMessage({ try a.reshaped([5]) }, contains: ["[2, 3]", "[5]"])
        expectMessage({ try Tensor.concat([a, Tensor.zeros([3, 3])], axis: 1) }, contains: ["[2, 3]", "[3, 3]"])
        expectMessage({ try a.slice(axis: 1, start: 2, length: 2) }, contains: ["[2, 3]"])
        expectMessage({ try a.gatherRows([2]) }, contains: ["index 2"])
        expectMessage({ try Tensor.zeros([5, 4]).embeddingLookup([5]) }, contains: ["id 5"])
        expectMessage({ try a.crossEntropy(labels: [0]) }, contains: ["[2, 3]", "[1]"])
        expectMessage({ try a.crossEntropy(labels: [0, 3]) }, contains: ["label 3"])
        expectMessage({ try a.layerNorm(weight: Tensor.zeros([2]), bias: Tensor.zeros([2]), eps: 1e-6) }, contains: ["[2, 3]", "[2]"])
        expectMessage({ try Tensor.attention(query: Tensor.zeros([1, 2, 6]), key: Tensor.zeros([1, 3, 6]),
                                             value: Tensor.zeros([1, 3, 6]), heads: 4).output }, contains: ["6", "4 heads"])
        XCTAssertThrowsError(try Tensor([1, 2, 3], shape: [2, 2]))
    }

    /// A key masked with -10000 gets probability exactly 0, and a masked key's row gets exactly zero
    /// gradient: an exp that clamped its input returned FLT_MIN there, which left subnormal
    /// probabilities and gradients behind and ran the text-side sgemms 5x slower.
    func testMaskedKeysGetExactlyZeroProbabilityAndGradient() throws {
        XCTAssertEqual(try Tensor([0, -10000, -88, -87], shape: [1, 4]).softmax().toArray()[1...2], [0, 0])
        let q = randomTensor([2, 3, 8], seed: 4), k = randomTensor([2, 3, 8], seed: 5), v = randomTensor([2, 3, 8], seed: 6)
        let mask: [Float] = [0, 0, -10000, 0, -10000, -10000]
        let r = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .keyPadding(mask), returnProbabilities: true)
        let probs = try XCTUnwrap(r.probabilities).toArray()  // [B, heads, Tq, Tk]
        for b in 0..<2 {
            for row in 0..<(2 * 3) {
                for j in 0..<3 where mask[b * 3 + j] != 0 { XCTAssertEqual(probs[(b * 6 + row) * 3 + j], 0) }
            }
        }
        try Autograd.backward(from: r.output.sum())
        let dk = try XCTUnwrap(k.grad).toArray(), dv = try XCTUnwrap(v.grad).toArray()
        for (i, m) in mask.enumerated() where m != 0 {
            XCTAssertEqual(Array(dk[(i * 8)..<(i * 8 + 8)]), [Float](repeating: 0, count: 8), "key row \(i)")
            XCTAssertEqual(Array(dv[(i * 8)..<(i * 8 + 8)]), [Float](repeating: 0, count: 8), "value row \(i)")
        }
        XCTAssertTrue((dk + dv).allSatisfy { $0 == 0 || abs($0) >= Float.leastNormalMagnitude }, "no subnormal gradients")
    }

    func testAttentionMatchesNaiveComputation() throws {
        let q = randomTensor([1, 2, 4], seed: 1, grad: false), k = randomTensor([1, 3, 4], seed: 2, grad: false)
        let v = randomTensor([1, 3, 4], seed: 3, grad: false)
        let mask: [Float] = [0, 0, -10000]
        let r = try Tensor.attention(query: q, key: k, value: v, heads: 2, mask: .keyPadding(mask), returnProbabilities: true)
        let qa = q.toArray(), ka = k.toArray(), va = v.toArray(), out = r.output.toArray()
        let probs = try XCTUnwrap(r.probabilities).toArray()
        for h in 0..<2 {
            for i in 0..<2 {
                var s = (0..<3).map { j in (0..<2).reduce(Float(0)) { $0 + qa[i * 4 + h * 2 + $1] * ka[j * 4 + h * 2 + $1] } / Float(2).squareRoot() + mask[j] }
                let m = s.max()!
                s = s.map { exp($0 - m) }
                let z = s.reduce(0, +)
                for j in 0..<3 { XCTAssertEqual(probs[(h * 2 + i) * 3 + j], s[j] / z, accuracy: 1e-6) }
                for c in 0..<2 {
                    let o = (0..<3).reduce(Float(0)) { $0 + s[$1] / z * va[$1 * 4 + h * 2 + c] }
                    XCTAssertEqual(out[i * 4 + h * 2 + c], o, accuracy: 1e-5)
                }
            }
        }
    }

    func testNoGradAndDetach() throws {
        let w = randomTensor([3, 3], seed: 9)
        let y = try Autograd.noGrad { try w.matmul(w) }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertFalse(w.detached().requiresGrad)
        let before = Autograd.recordedCount
        _ = try w.detached().matmul(w.detached())
        XCTAssertEqual(Autograd.recordedCount, before, "ops on detached tensors must not record")
        XCTAssertThrowsError(try Autograd.backward(from: w.detached().sum()))
        Autograd.reset()
    }

    func testArenaIsContiguousAndGradientsAccumulate() throws {
        let arena = ParameterArena(capacity: 1 << 20)
        let a = try arena.add("a", shape: [3, 5]), b = try arena.add("b", shape: [7])
        XCTAssertThrowsError(try arena.add("a", shape: [1]))
        XCTAssertEqual(arena.entries.map(\.offset), [0, 16])
        XCTAssertEqual(arena.parameterCount, 22)
        try a.assign((0..<15).map(Float.init)); try b.assign([Float](repeating: 1, count: 7))
        XCTAssertEqual(arena.values[16], 1)
        for _ in 0..<2 { try Autograd.backward(from: (try a.sum() + b.sum())) }
        XCTAssertEqual(Array(arena.gradients[0..<15]), [Float](repeating: 2, count: 15), "two backward passes accumulate")
        XCTAssertEqual(arena.gradients[15], 0, "padding stays zero")
        arena.zeroGradients()
        XCTAssertTrue(arena.gradients.allSatisfy { $0 == 0 })
    }
}

/// A tiny two-layer model step, used by the determinism and allocator tests.
private func tinyStep(_ arena: ParameterArena, input: Tensor, dropoutSeed: UInt64) throws -> Float {
    let w1 = arena.tensor("w1")!, w2 = arena.tensor("w2")!, g = arena.tensor("g")!, b = arena.tensor("b")!
    let h = try input.linear(w1).gelu().layerNorm(weight: g, bias: b, eps: 1e-6).dropout(0.1, seed: dropoutSeed)
    let a = try h.reshaped([4, 33, 96]).packedSelfAttention(heads: 4).output
    let logits = try a.reshaped([132, 32]).linear(w2)
    let loss = try logits.crossEntropy(labels: (0..<132).map { $0 % 10 })
    try Autograd.backward(from: loss)
    return loss.scalar
}

private func makeTinyArena() throws -> ParameterArena {
    let arena = ParameterArena(capacity: 1 << 22)
    var rng = SeededGenerator(seed: 3)
    for (name, shape) in [("w1", [96, 48]), ("w2", [10, 32]), ("g", [96]), ("b", [96])] {
        let t = try arena.add(name, shape: shape)
        try t.assign((0..<t.count).map { _ in rng.nextNormal() * 0.2 })
    }
    return arena
}

final class DeterminismAndAllocatorTests: XCTestCase {
    /// Same thread count, same inputs: bitwise identical loss and gradients.
    func testBitwiseDeterministicAcrossRuns() throws {
        let input = randomTensor([132, 48], seed: 11, grad: false)
        var results: [[Float]] = []
        for _ in 0..<3 {
            let arena = try makeTinyArena()
            let loss = try tinyStep(arena, input: input, dropoutSeed: 5)
            results.append([loss] + Array(arena.gradients))
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }

    /// After a warm-up step, repeated steps are served from the cache: no new system allocations.
    func testCachingAllocatorReusesBuffersAcrossSteps() throws {
        let arena = try makeTinyArena()
        let input = randomTensor([132, 48], seed: 11, grad: false)
        _ = try tinyStep(arena, input: input, dropoutSeed: 1)
        _ = try tinyStep(arena, input: input, dropoutSeed: 2)
        let before = CachingAllocator.shared.statistics
        for s in 0..<10 { _ = try tinyStep(arena, input: input, dropoutSeed: UInt64(s)) }
        let after = CachingAllocator.shared.statistics
        XCTAssertEqual(after.systemAllocations, before.systemAllocations, "steady-state steps must not allocate from the system")
        XCTAssertGreaterThan(after.cacheHits, before.cacheHits)
        XCTAssertEqual(after.bytesInUse, before.bytesInUse, "every step returns what it took")
    }

    /// A request whose size class is empty takes a cached buffer of up to twice the size (the
    /// shapes of a pruned model vary by stage) and gives it back to that buffer's own class.
    /// `chunkIndex` inverts `chunkRange` for every chunk start (parallel regions use it to find
    /// their per-chunk slot).
    func testChunkIndexInvertsChunkRange() {
        for n in [1, 2, 3, 7, 12, 100, 1001] {
            for chunks in 1...min(n, 5) {
                for c in 0..<chunks {
                    let start = Threads.chunkRange(c, of: chunks, n: n).lowerBound
                    XCTAssertEqual(Threads.chunkIndex(of: start, chunks: chunks, n: n), c, "n \(n), \(chunks) chunks")
                }
            }
        }
    }

    func testAllocatorReusesASomewhatLargerCachedBuffer() {
        let allocator = CachingAllocator()
        let (big, bigClass) = allocator.allocate(10_000)
        allocator.release(big, capacity: bigClass)
        let (p, cls) = allocator.allocate(6_000)
        XCTAssertEqual(p, big)
        XCTAssertEqual(cls, bigClass, "the buffer keeps its real capacity")
        XCTAssertEqual(allocator.statistics.systemAllocations, 1)
        allocator.release(p, capacity: cls)
        // More than twice the size is not reused: that would waste too much.
        let (q, qClass) = allocator.allocate(4_000)
        XCTAssertNotEqual(q, big)
        XCTAssertEqual(allocator.statistics.systemAllocations, 2)
        allocator.release(q, capacity: qClass)
        allocator.trim()
    }

    func testReleaseToSystemEmptiesTheCacheAndLaterRequestsStillWork() {
        let allocator = CachingAllocator()
        let buffers = (0..<8).map { _ in allocator.allocate(1 << 20) }
        for (p, c) in buffers { allocator.release(p, capacity: c) }
        XCTAssertEqual(allocator.statistics.bytesCached, 8 * (1 << 20) * 4)
        allocator.releaseToSystem()
        XCTAssertEqual(allocator.statistics.bytesCached, 0)
        XCTAssertEqual(allocator.statistics.bytesInUse, 0)
        // The next request maps new memory (nothing cached), and it is usable.
        let (p, c) = allocator.allocate(1 << 20)
        XCTAssertEqual(allocator.statistics.systemAllocations, 9)
        p.update(repeating: 1, count: c)
        XCTAssertEqual(p[c - 1], 1)
        allocator.release(p, capacity: c)
        allocator.releaseToSystem()
    }

    func testSizeClassesWasteAtMostAQuarter() {
        for n in [1, 63, 64, 65, 100, 1000, 4097, 123_457, 1_000_000] {
            let c = CachingAllocator.sizeClass(n)
            XCTAssertGreaterThanOrEqual(c, n)
            if n > 64 { XCTAssertLessThanOrEqual(Double(c), Double(n) * 1.25 + 1) }
        }
    }
}

final class GradientFinalHookTests: XCTestCase {
    /// Each parameter is reported once, after the last backward step that writes its gradient
    /// (the earliest forward use), with its gradient already complete.
    func testParametersReportedWhenTheirGradientIsFinal() throws {
        let arena = ParameterArena(capacity: 1 << 12)
        let w1 = try arena.add("w1", shape: [4, 3]), w2 = try arena.add("w2", shape: [2, 4]), unused = try arena.add("u", shape: [2])
        try w1.assign((0..<12).map { Float($0) * 0.1 }); try w2.assign((0..<8).map { Float($0) * -0.1 })
        let x = randomTensor([5, 3], seed: 1, grad: false)
        var reported: [(String, [Float])] = []
        Autograd.onParameterGradientFinal = { p in reported.append((p.name ?? "?", p.grad!.toArray())) }
        defer { Autograd.onParameterGradientFinal = nil }
        // w1 is used twice (first and last op): it must be reported only at the very end.
        let h = try x.linear(w1).gelu()
        let y = try h.linear(w2).sum() + (try x.linear(w1)).sum()
        try Autograd.backward(from: y)
        XCTAssertEqual(reported.map(\.0), ["w2", "w1"])
        XCTAssertEqual(reported[0].1, w2.grad!.toArray())
        XCTAssertEqual(reported[1].1, w1.grad!.toArray(), "reported gradient must be the final one")
        XCTAssertFalse(reported.contains { $0.0 == "u" })
        _ = unused
    }
}

final class AnomalyDetectionTests: XCTestCase {
    func testFirstNonFiniteOpIsNamed() throws {
        Autograd.detectAnomalies = true
        defer { Autograd.detectAnomalies = false; Autograd.clearAnomaly(); Autograd.reset() }
        let x = try Tensor([1, 2], shape: [2]).requiringGrad()
        let y = try x / Tensor([1, 0], shape: [2])  // inf
        _ = y.softmax()                              // NaN downstream: not the first
        let report = try XCTUnwrap(Autograd.firstNonFinite)
        XCTAssertTrue(report.contains("binary") && report.contains("inf") && report.contains("element 1"), report)
    }
}

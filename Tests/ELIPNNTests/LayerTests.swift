import ELIPNN
import ELIPTensor
import XCTest

private func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try! Tensor((0..<shape.reduce(1, *)).map { _ in g.nextNormal() * scale }, shape: shape).requiringGrad()
}

private func randomize(_ arena: ParameterArena, seed: UInt64) {
    var g = SeededGenerator(seed: seed)
    for t in arena.tensors { t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = g.nextNormal() * 0.3 } } }
}

private func check(_ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line, _ f: () throws -> Tensor) {
    do {
        let r = try GradientCheck.check(inputs: inputs, eps: 1e-2, atol: 3e-3, rtol: 3e-2, maxElements: 24, f)
        XCTAssertGreaterThan(r.checked, 0, file: file, line: line)
    } catch { XCTFail("\(error)", file: file, line: line) }
}

final class LayerTests: XCTestCase {
    /// Packed [q | k | v] and separate projections with the same weights give the same
    /// attention; the first-query probabilities are row 0 of the full ones in both layouts.
    func testPackedAndSeparateProjectionsAgree() throws {
        let d = 8
        let arena = ParameterArena(capacity: 1 << 14)
        let s = Scope(arena: arena)
        let packed = try MultiHeadAttention(projections: .packed(Linear(s["qkv"], in: d, out: 3 * d)),
                                            output: Linear(s["proj"], in: d, out: d), heads: 2)
        let separate = try MultiHeadAttention(
            projections: .separate(query: Linear(s["q"], in: d, out: d), key: Linear(s["k"], in: d, out: d), value: Linear(s["v"], in: d, out: d)),
            output: Linear(s["o"], in: d, out: d), heads: 2)
        randomize(arena, seed: 1)
        guard case let .packed(qkv) = packed.projections, case let .separate(q, k, v) = separate.projections else { return XCTFail() }
        try Autograd.noGrad {
            for (i, lin) in [q, k, v].enumerated() {
                let (w, b) = try qkv.outputRows(i * d, d)
                try lin.weight.assign(w)
                try lin.bias!.assign(b!)
            }
        }
        try separate.output.weight.assign(packed.output.weight)
        try separate.output.bias!.assign(packed.output.bias!)
        let x = random([2, 5, d], seed: 2)
        let mask = AttentionMask.keyPadding([0, 0, 0, -10000, -10000, 0, 0, 0, 0, 0])
        let a = try Autograd.noGrad { try packed(x, mask: mask).toArray() }
        let b = try Autograd.noGrad { try separate(x, mask: mask).toArray() }
        for (u, w) in zip(a, b) { XCTAssertEqual(u, w, accuracy: 1e-5) }
        for attention in [packed, separate] {
            let full = try Autograd.noGrad { try attention.probabilities(x, mask: mask) }.toArray()  // [2, 2, 5, 5]
            let row = try Autograd.noGrad { try attention.firstQueryProbabilities(x, mask: mask) }.toArray()  // [2, 2, 1, 5]
            for bh in 0..<4 { for j in 0..<5 { XCTAssertEqual(row[bh * 5 + j], full[bh * 25 + j], accuracy: 1e-6) } }
        }
        XCTAssertThrowsError(try packed.keyValues(x), "a packed projection cannot cross-attend")
    }

    /// Cross-attention to cached keys/values equals cross-attention to the context itself, and
    /// both have correct gradients (context included).
    func testCrossAttentionCachedAndDirectAgree() throws {
        let arena = ParameterArena(capacity: 1 << 14)
        let s = Scope(arena: arena)
        let cross = try MultiHeadAttention(
            projections: .separate(query: Linear(s["q"], in: 8, out: 8), key: Linear(s["k"], in: 6, out: 8), value: Linear(s["v"], in: 6, out: 8)),
            output: Linear(s["o"], in: 8, out: 8), heads: 4)
        randomize(arena, seed: 3)
        let x = random([3, 4, 8], seed: 4), images = random([2, 7, 6], seed: 5)
        let rows = [1, 0, 1]
        let cached = try Autograd.noGrad { try cross(x, attending: cross.keyValues(images), rows: rows).toArray() }
        let direct = try Autograd.noGrad { try cross(x, context: images.gatherRows(rows)).toArray() }
        for (u, w) in zip(cached, direct) { XCTAssertEqual(u, w, accuracy: 1e-5) }
        check([x, images] + arena.tensors.prefix(3)) { try cross(x, attending: cross.keyValues(images), rows: rows) }
        check([x, images]) { try cross(x, context: images.gatherRows(rows), mask: .keyPadding([Float](repeating: 0, count: 21))) }
    }

    func testMLPActivationsAndPreNormBlockGradients() throws {
        let arena = ParameterArena(capacity: 1 << 14)
        let s = Scope(arena: arena)
        let block = PreNormBlock(norm1: try LayerNorm(s["ln_1"], dim: 8, eps: 1e-5),
                                 attention: try MultiHeadAttention(projections: .packed(Linear(s["attn"], in: 8, out: 24, weightName: "in_proj_weight", biasName: "in_proj_bias")),
                                                                   output: Linear(s["attn"]["out_proj"], in: 8, out: 8), heads: 2),
                                 norm2: try LayerNorm(s["ln_2"], dim: 8, eps: 1e-5),
                                 mlp: try MLP(s["mlp"], dim: 8, hidden: 16, activation: .quickGELU, names: ("c_fc", "c_proj")))
        XCTAssertNotNil(arena.tensor("attn.in_proj_weight"), "CLIP's names can be expressed")
        XCTAssertNotNil(arena.tensor("mlp.c_proj.bias"))
        arena.initialise(seed: 6)
        randomize(arena, seed: 6)
        for n in ["ln_1.weight", "ln_2.weight"] { try arena.tensor(n)!.assign([Float](repeating: 1, count: 8)) }
        let x = random([2, 3, 8], seed: 7)
        check([x] + arena.tensors) { try block(x) }
        XCTAssertThrowsError(try MLP(fc1: Linear(s["a"], in: 4, out: 5), fc2: Linear(s["b"], in: 6, out: 4), activation: .gelu))
    }

    /// A post-LN layer with cross-attention skips it when called without image tokens (BLIP's
    /// text mode) and refuses image tokens when it has none; gradients through both sub-layers.
    func testPostNormLayerWithOptionalCrossAttention() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let s = Scope(arena: arena)
        let layer = try PostNormTransformerLayer(s["layer"][0], hidden: 8, heads: 2, intermediate: 12, eps: 1e-12, crossAttentionWidth: 6)
        let plain = try PostNormTransformerLayer(s["layer"][1], hidden: 8, heads: 2, intermediate: 12, eps: 1e-12)
        XCTAssertNotNil(arena.tensor("layer.0.crossattention.self.key.weight"))
        XCTAssertEqual(arena.tensor("layer.0.crossattention.self.key.weight")?.shape, [8, 6])
        XCTAssertNotNil(arena.tensor("layer.0.attention.output.LayerNorm.bias"))
        randomize(arena, seed: 8)
        let x = random([2, 4, 8], seed: 9), images = random([2, 5, 6], seed: 10)
        let mask = AttentionMask.keyPadding([0, 0, 0, -10000, 0, 0, 0, 0])
        let textMode = try Autograd.noGrad { try layer(x, mask: mask, dropout: nil).toArray() }
        let noCrossWeights = try Autograd.noGrad { () -> [Float] in
            // The same layer without its cross-attention sub-layer: copy the shared weights.
            let other = ParameterArena(capacity: 1 << 16)
            let twin = try PostNormTransformerLayer(Scope(arena: other)["layer"][0], hidden: 8, heads: 2, intermediate: 12, eps: 1e-12)
            for (e, t) in zip(other.entries, other.tensors) { try t.assign(arena.tensor(e.name)!) }
            return try twin(x, mask: mask, dropout: nil).toArray()
        }
        XCTAssertEqual(textMode, noCrossWeights)
        check([x, images]) { try layer(x, mask: mask, cross: .context(images, mask: .none), dropout: nil) }
        check([x]) { try layer(x, mask: .causal(keyPadding: nil), dropout: nil) }
        XCTAssertThrowsError(try plain(x, mask: mask, cross: .context(images, mask: .none), dropout: nil))
        Autograd.reset()
    }

    /// `firstRow` is row 0 of the full layer (self-attention over every row, cross-attention with
    /// and without a key mask), and its gradients are those of a loss on that row.
    func testFirstRowEqualsRowZeroOfTheLayer() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let layer = try PostNormTransformerLayer(Scope(arena: arena)["layer"], hidden: 8, heads: 2, intermediate: 12, eps: 1e-12, crossAttentionWidth: 8)
        randomize(arena, seed: 21)
        let x = random([2, 4, 8], seed: 22), other = random([2, 3, 8], seed: 23)
        let textKeys = AttentionMask.keyPadding([0, 0, 0, -10000, 0, 0, -10000, -10000])
        let otherKeys = AttentionMask.keyPadding([0, 0, -10000, 0, 0, 0])
        for (crossMask, selfMask) in [(AttentionMask.none, textKeys), (otherKeys, AttentionMask.none)] {
            let full = try Autograd.noGrad { try layer(x, mask: selfMask, cross: .context(other, mask: crossMask), dropout: nil).slice(axis: 1, start: 0, length: 1).toArray() }
            let first = try Autograd.noGrad { try layer.firstRow(x, mask: selfMask, cross: .context(other, mask: crossMask), dropout: nil).toArray() }
            XCTAssertEqual(first.count, 2 * 8)
            for (a, b) in zip(first, full) { XCTAssertEqual(a, b, accuracy: 1e-5) }
            check([x, other]) { try layer.firstRow(x, mask: selfMask, cross: .context(other, mask: crossMask), dropout: nil) }
        }
        Autograd.reset()
    }

    /// Parameters are initialised by what they are: Linear and Embedding weights small random,
    /// biases zero, LayerNorm scales one.
    func testLayersDeclareTheirInitialisation() throws {
        let arena = ParameterArena(capacity: 1 << 14)
        let s = Scope(arena: arena)
        _ = try Linear(s["fc"], in: 4, out: 3)
        _ = try LayerNorm(s["LayerNorm"], dim: 4, eps: 1e-12)
        _ = try Embedding(s["word_embeddings"], count: 5, dim: 4)
        let kinds = Dictionary(uniqueKeysWithValues: arena.entries.map { ($0.name, $0.initializer) })
        XCTAssertEqual(kinds["fc.weight"], defaultWeightInit)
        XCTAssertEqual(kinds["fc.bias"], .zeros)
        XCTAssertEqual(kinds["LayerNorm.weight"], .ones)
        XCTAssertEqual(kinds["LayerNorm.bias"], .zeros)
        XCTAssertEqual(kinds["word_embeddings.weight"], defaultWeightInit)
    }
}

import ELIPEncoders
import ELIPNN
import ELIPTensor
import XCTest

/// METER's encoder parts on hand-made inputs (no shared/ needed): RoBERTa's position ids, the
/// errors for shapes that do not fit, and the parameter names the official state_dict uses.
final class METERPartsTests: XCTestCase {
    private func robertaConfig(positions: Int) -> BertConfig {
        var c = BertConfig()
        c.vocabSize = 10
        c.hiddenSize = 8
        c.numAttentionHeads = 2
        c.intermediateSize = 16
        c.maxPositionEmbeddings = positions
        c.typeVocabSize = 1
        c.layerNormEps = 1e-5
        return c
    }

    /// Fusion at width 8 (2 heads) over text of width 6 and image tokens of width 4.
    private func tinyFusionConfig(layers: Int) -> METERFusionConfig {
        var c = METERFusionConfig()
        c.hidden = 8
        c.heads = 2
        c.layers = layers
        c.textWidth = 6
        c.imageWidth = 4
        return c
    }

    func testRobertaPositionsComeFromTheIds() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let e = try RobertaEmbeddings(Scope(arena: arena)["embeddings"], config: robertaConfig(positions: 10))
        // Row 0: <s> a <pad> b </s> <pad> (a pad inside shifts nothing before it, later tokens
        // continue the count); row 1: all pads.
        let text = try TextBatch(ids: [0, 5, 1, 7, 2, 1, 1, 1, 1, 1, 1, 1], mask: [1, 1, 1, 1, 1, 0] + [Int](repeating: 0, count: 6),
                                 batch: 2, length: 6)
        XCTAssertEqual(e.positionIds(text), [2, 3, 1, 4, 5, 1, 1, 1, 1, 1, 1, 1])
        arena.initialise(seed: 3)
        let x = try e(text, dropout: nil)
        XCTAssertEqual(x.shape, [2, 6, 8])
        // Same id at the same position id gives the same embedding: row 0 position 2 (<pad>, pos 1)
        // equals row 1 position 0 (<pad>, pos 1).
        let a = Array(x.toArray()[16..<24]), b = Array(x.toArray()[48..<56])
        for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-6) }
        XCTAssertEqual(Set(arena.entries.map(\.name)), ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                                         "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                                                         "embeddings.LayerNorm.bias"])
    }

    func testRobertaRefusesSequencesPastThePositionTable() throws {
        let arena = ParameterArena(capacity: 1 << 16)
        let e = try RobertaEmbeddings(Scope(arena: arena), config: robertaConfig(positions: 6))
        let text = try TextBatch(ids: [0, 4, 4, 4, 2], mask: [1, 1, 1, 1, 1], batch: 1, length: 5)  // needs position 6
        XCTAssertThrowsError(try e(text, dropout: nil)) { XCTAssertTrue("\($0)".contains("max_position_embeddings"), "\($0)") }
    }

    func testCLIPViTNamesAndShapeErrors() throws {
        var c = CLIPVisionConfig()
        c.width = 8
        c.heads = 2
        c.blocks = 2
        c.patchSize = 4
        let arena = ParameterArena(capacity: 1 << 16)
        let vit = try CLIPVisionTransformer(Scope(arena: arena)["visual"], config: c, imageRes: 8)
        let names = Set(arena.entries.map(\.name))
        for n in ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
                  "visual.transformer.resblocks.1.attn.in_proj_weight", "visual.transformer.resblocks.1.attn.in_proj_bias",
                  "visual.transformer.resblocks.1.attn.out_proj.weight", "visual.transformer.resblocks.1.mlp.c_fc.weight",
                  "visual.transformer.resblocks.1.mlp.c_proj.bias", "visual.transformer.resblocks.1.ln_2.bias", "visual.ln_post.bias"] {
            XCTAssertTrue(names.contains(n), n)
        }
        XCTAssertFalse(names.contains("visual.conv1.bias"))
        XCTAssertEqual(arena.tensor("visual.positional_embedding")?.shape, [5, 8])
        arena.initialise(seed: 1)
        let out = try vit(Tensor.zeros([1, 3, 8, 8]))
        XCTAssertEqual(out.tokens.shape, [1, 5, 8])
        XCTAssertThrowsError(try vit(Tensor.zeros([1, 3, 12, 12])))
        XCTAssertThrowsError(try CLIPVisionTransformer(Scope(arena: ParameterArena(capacity: 1 << 16)), config: c, imageRes: 10))
        c.heads = 3
        XCTAssertThrowsError(try CLIPVisionTransformer(Scope(arena: ParameterArena(capacity: 1 << 16)), config: c, imageRes: 8))
    }

    /// `textRows` (the MLM pass: the last text layer for the read rows only, the last image layer
    /// skipped) gives the rows of the full fusion's text stream and the same gradients for a loss
    /// on them; a fusion without layers is refused.
    func testFusionTextRowsEqualTheFullStreamWithGradients() throws {
        var c = tinyFusionConfig(layers: 2)
        let arena = ParameterArena(capacity: 1 << 17)
        let fusion = try METERCoAttentionFusion(Scope(arena: arena), config: c)
        arena.initialise(seed: 5)
        var g = SeededGenerator(seed: 6)
        func random(_ shape: [Int]) throws -> Tensor {
            try Tensor((0..<shape.reduce(1, *)).map { _ in g.nextNormal() }, shape: shape).requiringGrad()
        }
        let text = try random([3, 4, 6]), image = try random([3, 5, 4]), weights = try random([3 * 4, 8])
        let mask = try TextBatch(ids: [Int](repeating: 1, count: 12), mask: [1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1], batch: 3, length: 4)
        let reading = [[1, 2], [], [0, 3]]
        let flat = reading.enumerated().flatMap { e, ps in ps.map { e * 4 + $0 } }
        func run(full: Bool) throws -> (values: [Float], grads: [[Float]]) {
            arena.zeroGradients()
            text.zeroGradient()
            image.zeroGradient()
            let rows = full
                ? try fusion(text: text, textMask: mask, image: image, dropout: nil).text.reshaped([12, 8]).gatherRows(flat)
                : try fusion.textRows(text: text, textMask: mask, image: image, reading: reading, dropout: nil)
            XCTAssertEqual(rows.shape, [flat.count, 8])
            try Autograd.backward(from: (rows * weights.gatherRows(flat)).sum())
            return (rows.toArray(), [text.grad!.toArray(), image.grad!.toArray()] + arena.tensors.map { $0.grad?.toArray() ?? [] })
        }
        let full = try run(full: true), rows = try run(full: false)
        XCTAssertTrue(full.grads[0].contains { $0 != 0 } && full.grads[1].contains { $0 != 0 })
        for (a, e) in zip(rows.values, full.values) { XCTAssertEqual(a, e, accuracy: 1e-5) }
        XCTAssertEqual(rows.grads.count, full.grads.count)
        for (k, (ga, ge)) in zip(rows.grads, full.grads).enumerated() {
            XCTAssertEqual(ga.count, ge.count, "gradient \(k)")
            for (a, e) in zip(ga, ge) { XCTAssertEqual(a, e, accuracy: 1e-4, "gradient \(k)") }
        }
        Autograd.reset()
        c.layers = 0
        XCTAssertThrowsError(try METERCoAttentionFusion(Scope(arena: ParameterArena(capacity: 1 << 16)), config: c)) { error in
            XCTAssertTrue("\(error)".contains("at least one co-attention layer"), "\(error)")
        }
    }

    func testFusionChecksTokenTypeAndShapes() throws {
        let c = tinyFusionConfig(layers: 1)
        let arena = ParameterArena(capacity: 1 << 16)
        let fusion = try METERCoAttentionFusion(Scope(arena: arena), config: c)
        arena.initialise(seed: 2)
        let text = try TextBatch(ids: [0, 5, 2, 1], mask: [1, 1, 1, 0], batch: 1, length: 4)
        let out = try fusion(text: Tensor.zeros([1, 4, 6]), textMask: text, image: Tensor.zeros([1, 3, 4]), dropout: nil)
        XCTAssertEqual(out.text.shape, [1, 4, 8])
        XCTAssertEqual(out.image.shape, [1, 3, 8])
        XCTAssertEqual(out.clsFeats.shape, [1, 16])
        XCTAssertTrue(out.clsFeats.toArray().allSatisfy { abs($0) <= 1 })  // tanh
        XCTAssertThrowsError(try fusion(text: Tensor.zeros([1, 4, 6]), textMask: text, image: Tensor.zeros([1, 3, 4]),
                                        imageTokenType: 2, dropout: nil))
        XCTAssertThrowsError(try fusion(text: Tensor.zeros([1, 4, 6]), textMask: text, image: Tensor.zeros([2, 3, 4]), dropout: nil))
        XCTAssertNotNil(arena.tensor("cross_modal_image_layers.0.crossattention.self.key.weight"))
        XCTAssertEqual(arena.tensor("cross_modal_image_layers.0.crossattention.self.key.weight")?.shape, [8, 8])
    }
}

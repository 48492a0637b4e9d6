import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// The METER building blocks assembled as the official step of shared/reference/meter-tiny
/// (MLM pass with the masked ids, ITM pass with the clean ids, loss = sum, backward): the
/// co-attention fusion, poolers and heads against `mlm_logits`, `cls_feats.itm`, `itm_logits`,
/// the losses, and every `grad.*` tensor. This is a test-side assembly of the parts (the model
/// itself belongs to `model: meter`); tolerances are the reference README's.
final class METERStepReferenceTests: XCTestCase {
    private typealias Ref = METEREncoderReferenceTests

    /// One `infer()`: RoBERTa, its `<s>` state guiding the pruned ViT, then the fusion.
    private func infer(_ c: Ref.Case, text: TextBatch, images: Tensor) throws -> (fused: METERCoAttentionFusion.Output, textCLS: Tensor) {
        let states = try c.text(c.embeddings(text, dropout: nil), mask: text, dropout: nil)
        let textCLS = try states.slice(axis: 1, start: 0, length: 1).reshaped([text.batch, states.shape[2]])
        let pruning = ELIPPruning(schedule: c.schedule, patchCount: c.keepBase, textCLS: textCLS)
        let image = try c.vit(images, pruning: pruning).tokens
        return (try c.fusion(text: states, textMask: text, image: image, dropout: nil), textCLS)
    }

    private func batch(_ c: Ref.Case, _ idsName: String) throws -> TextBatch {
        let shape = try c.batch.entry(idsName).shape
        return try TextBatch(ids: c.batch.int64s(idsName).map(Int.init), mask: c.batch.int64s("text_masks").map(Int.init),
                             batch: shape[0], length: shape[1])
    }

    func testOfficialStepForwardAndEveryGradient() throws {
        let c = try Ref.load()
        c.arena.zeroGradients()
        defer { Autograd.reset() }
        var worst: [String: Double] = [:]
        func compare(_ name: String, _ t: Tensor, tolerance: Double = 1e-3) throws {
            let e = Ref.relativeError(t.toArray(), try c.expected.floats(name))
            worst[name] = e
            XCTAssertLessThanOrEqual(e, tolerance, name)
        }

        // MLM pass.
        let masked = try batch(c, "text_ids_mlm")
        let mlm = try infer(c, text: masked, images: Tensor(c.batch.floats("image"), shape: c.batch.entry("image").shape))
        let mlmLogits = try c.mlmHead(mlm.fused.text)
        try compare("mlm_logits", mlmLogits)
        let vocab = mlmLogits.shape[2]
        let labels = try c.batch.int64s("text_labels_mlm").map(Int.init)
        XCTAssertTrue(labels.contains { $0 != -100 }, "the case has masked tokens")
        let lossMLM = try mlmLogits.reshaped([masked.batch * masked.length, vocab]).crossEntropy(labels: labels)

        // ITM pass.
        let clean = try batch(c, "text_ids")
        let itm = try infer(c, text: clean, images: Ref.itmImages(c))
        try compare("cls_feats.itm", itm.fused.clsFeats)
        let itmLogits = try c.itmHead(itm.fused.clsFeats)
        try compare("itm_logits", itmLogits)
        let lossITM = try itmLogits.crossEntropy(labels: c.batch.int64s("itm_labels").map(Int.init))

        let loss = try lossMLM + lossITM
        for (name, value) in [("loss_mlm", lossMLM), ("loss_itm", lossITM), ("loss", loss)] {
            let expected = try c.expected.floats(name)[0]
            XCTAssertEqual(Double(value.scalar), Double(expected), accuracy: 1e-4 * abs(Double(expected)), name)
        }
        try Autograd.backward(from: loss)

        var compared = 0
        for name in c.expected.names where name.hasPrefix("grad.") {
            let parameter = String(name.dropFirst(5))
            guard let t = c.arena.tensor(parameter) else { XCTFail("no parameter \(parameter) for \(name)"); continue }
            let g = t.grad?.toArray() ?? [Float](repeating: 0, count: t.count)
            let e = Ref.relativeError(g, try c.expected.floats(name))
            worst[name] = e
            XCTAssertLessThanOrEqual(e, 1e-3, name)
            compared += 1
        }
        XCTAssertEqual(compared, c.arena.entries.count, "every parameter's gradient is in expected.safetensors")
        // Key-bias gradients are 0 in exact arithmetic (README: rounding noise), so report apart.
        func worstOf(_ keep: (String) -> Bool) -> String {
            worst.filter { keep($0.key) }.max { $0.value < $1.value }.map { "\($0.key) \($0.value)" } ?? "-"
        }
        print("""
            meter-tiny step: \(compared) gradients compared; losses mlm \(lossMLM.scalar) itm \(lossITM.scalar); \
            worst forward: \(worstOf { !$0.hasPrefix("grad.") }); worst gradient: \(worstOf { $0.hasPrefix("grad.") && !$0.contains("key.bias") && !$0.contains("in_proj_bias") }); \
            worst key bias: \(worstOf { $0.contains("key.bias") || $0.contains("in_proj_bias") })
            """)
    }
}

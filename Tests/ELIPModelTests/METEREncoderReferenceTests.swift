import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// METER's encoders against shared/reference/meter-tiny (one official step): RoBERTa's `<s>` state
/// (`text_cls.{mlm,itm}`), the CLIP ViT's pruned output after `ln_post` (`image_embeds.*`) and
/// the kept tokens (`kept_index.*`), for the MLM pass (masked ids guide) and the ITM pass (clean
/// ids guide, negatives use `false_image`). Shapes, keep base and schedule come from config.json.
final class METEREncoderReferenceTests: XCTestCase {
    struct Case {
        let arena: ParameterArena
        let embeddings: RobertaEmbeddings
        let text: BertLayerStack
        let vit: CLIPVisionTransformer
        let fusion: METERCoAttentionFusion
        let mlmHead: METERMLMHead
        let itmHead: Linear
        let schedule: PruneConfig
        let keepBase: Int
        let lengthsPerBlock: [Int]
        let batch: SafetensorsFile
        let expected: SafetensorsFile
    }

    static func load() throws -> Case {
        let dir = try SharedData.path("reference/meter-tiny")
        func file(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file("config.json")))) as! [String: Any]
        let roberta = config["roberta"] as! [String: Any], vitJSON = config["vit"] as! [String: Any]
        let meter = config["meter"] as! [String: Any], prune = meter["img_prune"] as! [String: Any]

        var textConfig = BertConfig()
        textConfig.vocabSize = roberta["vocab_size"] as! Int
        textConfig.hiddenSize = roberta["hidden_size"] as! Int
        textConfig.numHiddenLayers = roberta["num_hidden_layers"] as! Int
        textConfig.numAttentionHeads = roberta["num_attention_heads"] as! Int
        textConfig.intermediateSize = roberta["intermediate_size"] as! Int
        textConfig.maxPositionEmbeddings = roberta["max_position_embeddings"] as! Int
        textConfig.typeVocabSize = roberta["type_vocab_size"] as! Int
        textConfig.layerNormEps = Float(roberta["layer_norm_eps"] as! Double)

        var vitConfig = CLIPVisionConfig()
        vitConfig.width = vitJSON["width"] as! Int
        vitConfig.heads = vitJSON["heads"] as! Int
        vitConfig.blocks = vitJSON["resblocks"] as! Int
        vitConfig.patchSize = vitJSON["patch"] as! Int
        vitConfig.layerNormEps = Float(vitJSON["ln_eps"] as! Double)

        var fusionConfig = METERFusionConfig()
        fusionConfig.hidden = meter["hidden_size"] as! Int
        fusionConfig.heads = meter["num_heads"] as! Int
        fusionConfig.layers = meter["num_top_layer"] as! Int
        fusionConfig.textWidth = meter["input_text_embed_size"] as! Int
        fusionConfig.imageWidth = meter["input_image_embed_size"] as! Int

        let arena = ParameterArena(capacity: 1 << 22, withGradients: true)
        let root = Scope(arena: arena)
        let embeddings = try RobertaEmbeddings(root["text_transformer"]["embeddings"], config: textConfig,
                                               paddingIndex: roberta["pad_token_id"] as! Int)
        let text = try BertLayerStack(root["text_transformer"]["encoder"], config: textConfig,
                                      layers: 0..<textConfig.numHiddenLayers, crossAttention: { _ in false })
        let vit = try CLIPVisionTransformer(root["vit_model"]["visual"], config: vitConfig, imageRes: vitJSON["image_res"] as! Int)
        let fusion = try METERCoAttentionFusion(root, config: fusionConfig)
        let mlmHead = try METERMLMHead(root["mlm_score"], hidden: fusionConfig.hidden, vocabSize: textConfig.vocabSize)
        let itmHead = try Linear(root["itm_score"]["fc"], in: 2 * fusionConfig.hidden, out: 2)
        let weights = try SafetensorsFile(path: file("weights.safetensors"))
        let missing = try StateDict.load(arena, from: weights)
        XCTAssertEqual(missing, [], "weights.safetensors lacks these tensors")
        let schedule = PruneConfig(beginLayer: prune["begin_layer"] as! [Int], numActLayers: prune["num_act_layers"] as! [Int],
                                   keepRatio: prune["keep_ratio"] as! [Double])
        let keepBase = config["keep_base_tokens"] as! Int
        XCTAssertEqual(schedule.keepCounts(patchCount: keepBase), config["num_keep_tokens"] as! [Int])
        return Case(arena: arena, embeddings: embeddings, text: text, vit: vit, fusion: fusion, mlmHead: mlmHead, itmHead: itmHead, schedule: schedule, keepBase: keepBase,
                    lengthsPerBlock: config["seq_len_per_block"] as! [Int],
                    batch: try SafetensorsFile(path: file("batch.safetensors")),
                    expected: try SafetensorsFile(path: file("expected.safetensors")))
    }

    /// ‖a − b‖ / max(‖b‖, 1e-5), the reference README's measure.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
        return num.squareRoot() / max(den.squareRoot(), 1e-5)
    }

    private func checkPass(_ c: Case, pass: String, idsName: String, images: Tensor) throws {
        try Autograd.noGrad { try checkPassForward(c, pass: pass, idsName: idsName, images: images) }
    }

    private func checkPassForward(_ c: Case, pass: String, idsName: String, images: Tensor) throws {
        let ids = try c.batch.int64s(idsName).map(Int.init), masks = try c.batch.int64s("text_masks").map(Int.init)
        let shape = try c.batch.entry(idsName).shape
        let text = try TextBatch(ids: ids, mask: masks, batch: shape[0], length: shape[1])
        let states = try c.text(c.embeddings(text, dropout: nil), mask: text, dropout: nil)
        let textCLS = try states.slice(axis: 1, start: 0, length: 1).reshaped([text.batch, states.shape[2]])
        let clsError = Self.relativeError(textCLS.toArray(), try c.expected.floats("text_cls.\(pass)"))
        XCTAssertLessThan(clsError, 1e-5, "text_cls.\(pass)")

        let pruning = ELIPPruning(schedule: c.schedule, patchCount: c.keepBase, textCLS: textCLS)
        let out = try c.vit(images, pruning: pruning)
        XCTAssertEqual(out.tokens.shape, try c.expected.entry("image_embeds.\(pass)").shape)
        let imageError = Self.relativeError(out.tokens.toArray(), try c.expected.floats("image_embeds.\(pass)"))
        XCTAssertLessThan(imageError, 1e-5, "image_embeds.\(pass)")
        XCTAssertEqual(out.sequenceLengths, c.lengthsPerBlock)
        for stage in 0..<c.schedule.beginLayer.count {
            let name = "kept_index.\(pass).stage\(stage)"
            let expected = try c.expected.int64s(name).map(Int.init)
            XCTAssertEqual(out.keptIndices[stage].flatMap { $0 }, expected, name)
        }
        print("meter-tiny \(pass): text_cls rel. error \(clsError), image_embeds \(imageError), lengths \(out.sequenceLengths)")
    }

    func testMLMPassEncodersMatchTheReference() throws {
        let c = try Self.load()
        let image = try Tensor(c.batch.floats("image"), shape: c.batch.entry("image").shape)
        try checkPass(c, pass: "mlm", idsName: "text_ids_mlm", images: image)
    }

    /// The images the ITM pass feeds: `false_image` where `itm_labels` is 0.
    static func itmImages(_ c: Case) throws -> Tensor {
        let shape = try c.batch.entry("image").shape
        let own = try c.batch.floats("image"), negative = try c.batch.floats("false_image")
        let labels = try c.batch.int64s("itm_labels")
        let per = own.count / shape[0]
        var fed = own
        for (b, label) in labels.enumerated() where label == 0 { fed.replaceSubrange((b * per)..<((b + 1) * per), with: negative[(b * per)..<((b + 1) * per)]) }
        return try Tensor(fed, shape: shape)
    }

    func testITMPassEncodersMatchTheReference() throws {
        let c = try Self.load()
        let labels = try c.batch.int64s("itm_labels")
        XCTAssertTrue(labels.contains(0) && labels.contains(1), "the case should have positives and negatives")
        try checkPass(c, pass: "itm", idsName: "text_ids", images: Self.itmImages(c))
    }
}

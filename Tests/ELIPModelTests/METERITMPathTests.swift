import ELIPConfig
@testable import ELIPModel
import ELIPNN
import ELIPTensor
import XCTest

/// The ITM pass with its own draws (no reference data): the labels and the images the fusion sees
/// line up, and the ITM loss alone reaches the head, the co-attention layers, both encoders.
/// (Checked while finding why the random-init METER demo's ITM stays at ln 2: these hold; the
/// cause was the near-constant pooled [CLS] features of random encoders, see configs/demo-meter.yaml.)
final class METERITMPathTests: XCTestCase {
    /// Solid-colour images (colour b % 4 for row b) and captions `<s> (4 + colour) </s> <pad>`.
    static func batch(_ bs: Int, res: Int) throws -> ImageTextBatch {
        let palette: [[Float]] = [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]]
        var px: [Float] = []
        for b in 0..<bs { for ch in 0..<3 { px += [Float](repeating: palette[b % 4][ch] + Float(b) / 100, count: res * res) } }
        let ids = (0..<bs).flatMap { [0, 4 + $0 % 4, 2, 1] }, mask = (0..<bs).flatMap { _ in [1, 1, 1, 0] }
        return ImageTextBatch(images: try Tensor(px, shape: [bs, 3, res, res]), text: try TextBatch(ids: ids, mask: mask, batch: bs, length: 4))
    }

    static let yaml = """
        model: meter
        image_size: 32
        patch_size: 8
        clip: {width: 16, heads: 2, blocks: 11}
        roberta: {vocab_size: 12, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 10, type_vocab_size: 1, layer_norm_eps: 1.0e-5}
        hidden_size: 16
        num_heads: 2
        num_top_layer: 1
        max_text_len: 4
        """

    /// floor(B/2) positives; a positive row's image is its own, a negative row's one of the batch's
    /// images (whole, unmixed), for both halves of a 2-rank batch.
    func testITMImagesFollowTheLabels() throws {
        let model = try METERModel(config: METERModelTests.config(Self.yaml))
        let bs = 7, res = 32, per = 3 * res * res
        let images = try Self.batch(bs, res: res).images
        let own = images.toArray()
        for firstRow in [0, bs] {
            let context = StepContext(seed: 9, dropout: false, samplingSeed: 123)
            let labels = try model.itmLabelDraws(bs, context: context, firstRow: firstRow)
            XCTAssertEqual(labels.filter { $0 == 1 }.count, bs / 2)
            XCTAssertEqual(labels.count, bs)
            let (fedImages, sourceRows) = try model.itmImages(images, labels: labels, context: context, firstRow: firstRow)
            let fed = fedImages.toArray(), rows = try XCTUnwrap(sourceRows)
            for b in 0..<bs {
                let row = Array(fed[(b * per)..<((b + 1) * per)])
                XCTAssertEqual(row, Array(own[(rows[b] * per)..<((rows[b] + 1) * per)]), "row \(b) is batch image \(rows[b])")
                if labels[b] == 1 {
                    XCTAssertEqual(row, Array(own[(b * per)..<((b + 1) * per)]), "positive row \(b) sees its own image")
                } else {
                    XCTAssertTrue((0..<bs).contains { Array(own[($0 * per)..<(($0 + 1) * per)]) == row }, "negative row \(b) sees a whole batch image")
                }
            }
        }
    }

    /// The ITM pass reusing the MLM pass's text-independent ViT blocks (all of them without
    /// pruning, those before the first stage with it) gives the step computed twice: the same
    /// losses, kept indices and gradients.
    func testSharedVisionPrefixGivesTheSameStep() throws {
        let unpruned = Self.yaml + "\nimg_prune: null"
        let pruned = Self.yaml + "\nimg_prune: {begin_layer: [2, 4, 9], num_act_layers: [2, 5, 2], keep_ratio: [0.9, 0.8, 0.7]}"
        for yaml in [unpruned, pruned, Self.yaml] {
            var results: [(losses: [String: Float], kept: [String: [[[Int]]]], grads: [[Float]])] = []
            for shares in [true, false] {
                let model = try METERModel(config: METERModelTests.config(yaml))
                try model.initialiseRandomly(seed: 2)
                model.sharesVisionPrefix = shares
                var context = StepContext(seed: 4, dropout: false)
                model.parameters.zeroGradients()
                let out = try model.step(Self.batch(8, res: 32), context: &context)
                try Autograd.backward(from: out.total)
                results.append((out.losses.mapValues { $0.toArray()[0] }, out.keptIndicesByPass, model.parameters.tensors.map { $0.grad?.toArray() ?? [] }))
                Autograd.reset()
            }
            XCTAssertEqual(results[0].kept, results[1].kept)
            XCTAssertEqual(results[0].kept["itm"]?.isEmpty, yaml == unpruned, "pruning ran in the pruned configs only")
            for (name, loss) in results[0].losses { XCTAssertEqual(loss, results[1].losses[name] ?? .nan, accuracy: 1e-5, name) }
            for (a, b) in zip(results[0].grads, results[1].grads) {
                let scale = b.reduce(0) { max($0, abs($1)) }
                for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(scale, 1e-3)) }
            }
        }
    }

    /// Backward from the ITM loss alone: finite, nonzero gradients on the ITM head, both poolers,
    /// the co-attention layers, the ViT and RoBERTa; none on the MLM head.
    func testITMLossReachesHeadFusionAndBothEncoders() throws {
        let model = try METERModel(config: METERModelTests.config(Self.yaml))
        try model.initialiseRandomly(seed: 2)
        var context = StepContext(seed: 4, dropout: false)
        model.parameters.zeroGradients()
        defer { Autograd.reset() }
        let out = try model.step(Self.batch(8, res: 32), context: &context)
        try Autograd.backward(from: XCTUnwrap(out.losses["itm"]))
        var norms: [String: Double] = [:]
        for (e, t) in zip(model.parameters.entries, model.parameters.tensors) {
            let g = t.grad?.toArray() ?? []
            XCTAssertTrue(g.allSatisfy(\.isFinite), e.name)
            let prefix = String(e.name.prefix { $0 != "." })
            norms[prefix, default: 0] += g.reduce(0) { $0 + Double($1) * Double($1) }
        }
        for part in ["itm_score", "cross_modal_text_pooler", "cross_modal_image_pooler", "cross_modal_text_layers", "cross_modal_image_layers",
                     "vit_model", "text_transformer"] {
            XCTAssertGreaterThan(norms[part] ?? 0, 0, part)
        }
        XCTAssertEqual(norms["mlm_score"] ?? 0, 0, "the MLM head is not on the ITM path")
    }

    /// `init_std` rescales the random truncated-normal weights (the same draws) and nothing else;
    /// without it the layers' own 0.02 holds; out-of-range values are refused naming the key.
    func testInitStdRescalesRandomWeightsOnly() throws {
        let plain = try METERModel(config: METERModelTests.config(Self.yaml))
        let wide = try METERModel(config: METERModelTests.config(Self.yaml + "\ninit_std: 0.1"))
        try plain.initialiseRandomly(seed: 6)
        try wide.initialiseRandomly(seed: 6)
        for (e, (a, b)) in zip(plain.parameters.entries, zip(plain.parameters.tensors, wide.parameters.tensors)) {
            let x = a.toArray(), y = b.toArray()
            if case .truncatedNormal = e.initializer {
                for (u, v) in zip(x, y) { XCTAssertEqual(v, u * 5, accuracy: 1e-6 + abs(u) * 1e-5, e.name) }
            } else {
                XCTAssertEqual(x, y, e.name)
            }
        }
        let w = try XCTUnwrap(plain.parameters.tensor("cross_modal_text_layers.0.intermediate.dense.weight")).toArray()
        let std = (w.reduce(0) { $0 + Double($1 * $1) } / Double(w.count)).squareRoot()
        XCTAssertEqual(std, 0.02 * 0.88, accuracy: 0.002, "trunc-normal at 2 sigma has std 0.88 x 0.02")
        XCTAssertThrowsError(try METERConfig.read(ConfigSection.parse(Self.yaml + "\ninit_std: 0", source: "t.yaml"), location: ConfigLocation(searchFolders: []))) { XCTAssertTrue("\($0)".contains("init_std"), "\($0)") }
    }
}

import ELIPConfig
@testable import ELIPModel
import Foundation
import XCTest

/// `decoder_init_from_layer`: VQA.py copies text layers n >= 6 into decoder layer n - 6 (its
/// hard-coded split, the default); a smaller BERT names its own fusion layer so the decoder
/// starts from the fusion layers. Bad values are refused naming the key.
final class VQADecoderInitTests: XCTestCase {
    func testRenamingStartsTheDecoderAtTheGivenLayer() throws {
        let keys = ["text_encoder.bert.encoder.layer.2.output.dense.weight", "text_encoder.bert.encoder.layer.3.output.dense.weight",
                    "text_encoder.bert.encoder.layer.5.output.dense.weight", "text_encoder.cls.predictions.bias"]
        let renamed = try ALBEFTaskCheckpoint.renamed(keys, script: .vqa, scriptFusion: 3).map { "\($0.target) <- \($0.source)" }
        XCTAssertEqual(Set(renamed), [
            "text_encoder.encoder.layer.2.output.dense.weight <- text_encoder.bert.encoder.layer.2.output.dense.weight",
            "text_encoder.encoder.layer.3.output.dense.weight <- text_encoder.bert.encoder.layer.3.output.dense.weight",
            "text_encoder.encoder.layer.5.output.dense.weight <- text_encoder.bert.encoder.layer.5.output.dense.weight",
            "text_decoder.bert.encoder.layer.0.output.dense.weight <- text_encoder.bert.encoder.layer.3.output.dense.weight",
            "text_decoder.bert.encoder.layer.2.output.dense.weight <- text_encoder.bert.encoder.layer.5.output.dense.weight",
            "text_decoder.cls.predictions.bias <- text_encoder.cls.predictions.bias",
        ])
        // The default is VQA.py's 6: none of these layers reaches the decoder.
        let official = try ALBEFTaskCheckpoint.renamed(keys, script: .vqa).map(\.target)
        XCTAssertFalse(official.contains { $0.hasPrefix("text_decoder.bert.encoder") }, "\(official)")
    }

    func read(_ extra: String) throws -> ALBEFVQAConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vqa-decoder-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 6, "intermediate_size": 32,
         "vocab_size": 64, "max_position_embeddings": 32, "fusion_layer": 3, "encoder_width": 16}
        """.write(toFile: dir + "/bert.json", atomically: true, encoding: .utf8)
        try ("bert_config: bert.json\nimage_res: 32\nvision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}\n" + extra)
            .write(toFile: dir + "/vqa.yaml", atomically: true, encoding: .utf8)
        let c = try ALBEFVQAConfig.read(try ConfigSection.load(dir + "/vqa.yaml"), location: ConfigLocation(searchFolders: [dir]))
        try c.validate(file: "vqa.yaml")
        return c
    }

    func testConfigKeys() throws {
        let official = try read("")
        XCTAssertEqual(official.decoderLayers, 6)
        XCTAssertEqual(official.decoderInitFromLayer, 6)
        let demo = try read("decoder_layers: 3\ndecoder_init_from_layer: 3\n")
        XCTAssertEqual(demo.decoderLayers, 3)
        XCTAssertEqual(demo.decoderInitFromLayer, 3)
        for bad in ["decoder_init_from_layer: 0", "decoder_init_from_layer: -1",
                    "decoder_init_from_layer: 2.5", "decoder_layers: 0", "decoder_layers: nan"] {
            XCTAssertThrowsError(try read(bad + "\n"), bad) { error in
                XCTAssertTrue("\(error)".contains(bad.split(separator: ":")[0]), "\(bad): \(error)")
            }
        }
    }
}

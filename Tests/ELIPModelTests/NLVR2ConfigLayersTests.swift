import ELIPConfig
@testable import ELIPModel
import Foundation
import XCTest

/// The NLVR2 text encoder's depth: model_nlvr.py's 18 layers whenever the fusion layer is the
/// official 6 (whatever bert_config's num_hidden_layers), and for another fusion layer F of N
/// layers (the demo's tiny BERT) F text layers then N - F left/right pairs, with
/// Pretrain_nlvr.py's layer doubling starting at F.
final class NLVR2ConfigLayersTests: XCTestCase {
    func read(layers: Int, fusion: Int) throws -> ALBEFNLVRConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nlvr-layers-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": \(layers), "intermediate_size": 32,
         "vocab_size": 64, "max_position_embeddings": 32, "fusion_layer": \(fusion), "encoder_width": 16}
        """.write(toFile: dir + "/bert.json", atomically: true, encoding: .utf8)
        try "bert_config: bert.json\nimage_res: 32\nvision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}\n"
            .write(toFile: dir + "/nlvr.yaml", atomically: true, encoding: .utf8)
        let root = try ConfigSection.load(dir + "/nlvr.yaml")
        let c = try ALBEFNLVRConfig.read(root, location: ConfigLocation(searchFolders: [dir]))
        try c.validate(file: "nlvr.yaml")
        return c
    }

    func testDepth() throws {
        XCTAssertEqual(try read(layers: 12, fusion: 6).bert.numHiddenLayers, 18)
        XCTAssertEqual(try read(layers: 8, fusion: 6).bert.numHiddenLayers, 18)   // model_nlvr.py: 18 whatever the file says
        XCTAssertEqual(try read(layers: 6, fusion: 3).bert.numHiddenLayers, 9)
        XCTAssertEqual(try read(layers: 4, fusion: 2).bert.numHiddenLayers, 6)
        // No fusion layer left: refused naming the key.
        XCTAssertThrowsError(try read(layers: 3, fusion: 3)) { XCTAssertTrue("\($0)".contains("bert_config"), "\($0)") }
        // The model builds with the scaled structure: layer 3's key/value is layer 2's.
        let model = try ALBEFNLVRModel(config: try read(layers: 4, fusion: 2))
        let names = model.parameters.names(of: "text_encoder.encoder.layer.2.crossattention.self.key.weight")
        XCTAssertTrue(names.contains("text_encoder.encoder.layer.3.crossattention.self.key.weight"), "\(names)")
        XCTAssertNil(model.parameters.entries.first { $0.name.contains("layer.6.") })
    }

    func testTextAssignmentMapStartsAtTheModelsFusionLayer() throws {
        let keys = ["text_encoder.bert.encoder.layer.1.output.dense.weight", "text_encoder.bert.encoder.layer.2.output.dense.weight",
                    "text_encoder.bert.encoder.layer.3.output.dense.weight"]
        let renamed = try ALBEFTaskCheckpoint.renamed(keys, script: .nlvrTextAssignment, scriptFusion: 2).map { "\($0.target) <- \($0.source)" }
        XCTAssertEqual(renamed, ["text_encoder.encoder.layer.1.output.dense.weight <- text_encoder.bert.encoder.layer.1.output.dense.weight",
                                 "text_encoder.encoder.layer.2.output.dense.weight <- text_encoder.bert.encoder.layer.2.output.dense.weight",
                                 "text_encoder.encoder.layer.3.output.dense.weight <- text_encoder.bert.encoder.layer.2.output.dense.weight",
                                 "text_encoder.encoder.layer.4.output.dense.weight <- text_encoder.bert.encoder.layer.3.output.dense.weight",
                                 "text_encoder.encoder.layer.5.output.dense.weight <- text_encoder.bert.encoder.layer.3.output.dense.weight"])
        // The official default: doubling from layer 6 (layers 1-3 unchanged).
        XCTAssertEqual(try ALBEFTaskCheckpoint.renamed(keys, script: .nlvrTextAssignment).map(\.target),
                       keys.map { $0.replacingOccurrences(of: "bert.", with: "") })
    }
}

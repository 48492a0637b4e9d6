import ELIPModel
import Foundation
import XCTest

final class ConfigTests: XCTestCase {
    func tempFile(_ name: String, _ text: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// ALBEF's YAML style (flow mappings, 1e-4 style numbers) with the defaults for the rest.
    func testALBEFStyleYAML() throws {
        let bert = try tempFile("config_bert.json", #"{"hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 4, "intermediate_size": 64, "fusion_layer": 2, "encoder_width": 48}"#)
        let yaml = """
        train_file: ['data/coco.json', 'data/vg.json']
        bert_config: '\(bert)'
        image_res: 256
        vision_width: 48
        embed_dim: 256
        batch_size: 64
        temp: 0.07
        mlm_probability: 0.15
        queue_size: 65536
        momentum: 0.995
        alpha: 0.4
        optimizer: {opt: adamW, lr: 1e-4, weight_decay: 0.02}
        img_prune: {begin_layer: [2, 4, 10], num_act_layers: [2, 6, 2], keep_ratio: [0.90, 0.65, 0.40]}
        vision: {patch_size: 16, embed_dim: 48, depth: 12, num_heads: 4, mlp_ratio: 4}
        """
        let c = try ALBEFConfig.load(try tempFile("Pretrain.yaml", yaml))
        XCTAssertEqual(c.imageRes, 256)
        XCTAssertEqual(c.patchCount, 256)
        XCTAssertEqual(c.prune, .albef)
        XCTAssertEqual(c.bert.hiddenSize, 48)
        XCTAssertEqual(c.bert.fusionLayer, 2)
        XCTAssertEqual(c.vision.numHeads, 4)
        XCTAssertEqual(c.queueSize, 65536)
    }

    func testReferenceCaseConfig() throws {
        let c = try ALBEFConfig.load(try SharedData.path("reference/albef-tiny/Pretrain.yaml"))
        XCTAssertEqual(c.patchCount, 16)
        XCTAssertEqual(c.prune?.keepCounts(patchCount: 16), [14, 10, 6])
        XCTAssertEqual(c.bert.encoderWidth, 64)
    }

    func testBadConfigsNameTheProblem() throws {
        func expectError(_ yaml: String, _ needle: String, line: UInt = #line) throws {
            let p = try tempFile("bad.yaml", yaml)
            XCTAssertThrowsError(try ALBEFConfig.load(p), line: line) { e in
                XCTAssertTrue("\(e)".contains(needle), "'\(e)' lacks '\(needle)'", line: line)
                XCTAssertTrue("\(e)".contains(p) || "\(e)".contains("img_prune"), "error should name the file", line: line)
            }
        }
        try expectError("image_res: [1, 2", "YAML")
        try expectError("image_res: 250", "multiple of patch_size")
        try expectError("img_prune: {begin_layer: [2, 1], num_act_layers: [2, 2], keep_ratio: [0.9, 0.5]}", "overlaps")
        try expectError("img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [1.5]}", "keep_ratio")
        try expectError("bert_config: 'missing.json'", "not found")
        try expectError("temp: hot", "temp must be a number")
        // The fused query needs equal text and vision widths.
        try expectError("vision_width: 64\nvision: {embed_dim: 64, num_heads: 4}", "widths must be equal")
        try expectError("img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5], scoring: lookahead}",
                        "scoring must be look_ahead or inline, not 'lookahead'")
        let noPrune = try ALBEFConfig.load(try tempFile("p.yaml", "img_prune: null"))
        XCTAssertNil(noPrune.prune)
        // The look-ahead is the default; inline scoring is an explicit ablation.
        let paper = try ALBEFConfig.load(try tempFile("l.yaml", "img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5]}"))
        XCTAssertEqual(paper.prune?.scoring, .lookAhead)
        let inline = try ALBEFConfig.load(try tempFile("i.yaml", "img_prune: {begin_layer: [2], num_act_layers: [2], keep_ratio: [0.5], scoring: inline}"))
        XCTAssertEqual(inline.prune?.scoring, .inline)
    }
}

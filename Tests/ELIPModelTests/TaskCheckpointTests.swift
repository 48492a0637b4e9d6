import ELIPModel
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// Loading a pre-training checkpoint into the ALBEF task models as the official scripts do
/// (ALBEFTaskCheckpoint), against ../shared/reference/albef-load-tiny.
final class TaskCheckpointTests: XCTestCase {
    /// Each script's plan equals the official key map read off by tensor identity, and the two
    /// NLVR2 stages composed equal keymap.nlvr_from_pretrain.json.
    func testKeyMapsMatchTheOfficialScripts() throws {
        let dir = try SharedData.path("reference/albef-load-tiny")
        var plans: [ALBEFTaskCheckpoint.Script: ALBEFTaskCheckpoint.Plan] = [:]
        for script in ALBEFTaskCheckpoint.Script.allCases {
            let map = try KeymapCheck.Keymap(path: (dir as NSString).appendingPathComponent("keymap.\(script.rawValue).json"))
            let plan = try KeymapCheck.plan(script, for: map)
            XCTAssertEqual(KeymapCheck.differences(plan, map), [], script.rawValue)
            XCTAssertGreaterThan(plan.copied.count, 100, script.rawValue)
            plans[script] = plan
        }
        let composed = try KeymapCheck.Keymap(path: (dir as NSString).appendingPathComponent("keymap.nlvr_from_pretrain.json"))
        XCTAssertEqual(KeymapCheck.differences(KeymapCheck.composedNLVR(plans[.nlvrTextAssignment]!, plans[.nlvr]!), composed), [])
        // What the spec says, spelled out: VQA's decoder layer 0 is fusion layer 6, NLVR2's
        // layers 6 and 7 are both pre-training layer 6, the retrieval idx_queue stays at init.
        let q = "attention.self.query.weight"
        XCTAssertEqual(plans[.vqa]!.copied["text_decoder.bert.encoder.layer.0.\(q)"], "text_encoder.bert.encoder.layer.6.\(q)")
        XCTAssertEqual(plans[.vqa]!.copied["text_decoder_m.cls.predictions.decoder.weight"], "text_encoder_m.cls.predictions.decoder.weight")
        XCTAssertEqual(plans[.nlvrTextAssignment]!.copied["text_encoder.encoder.layer.7.\(q)"], "text_encoder.bert.encoder.layer.6.\(q)")
        XCTAssertEqual(plans[.nlvrTextAssignment]!.copied["text_encoder.encoder.layer.17.\(q)"], "text_encoder.bert.encoder.layer.11.\(q)")
        XCTAssertEqual(plans[.retrieval]!.keptAtInit, ["idx_queue"])
        XCTAssertTrue(plans[.nlvr]!.keptAtInit.contains("visual_encoder_m.pos_embed"))
    }

    /// The renaming on keys the tiny map does not hold: a layer key without a number is an
    /// error naming it; keys without `bert` pass unchanged.
    func testRenamingEdgeCases() throws {
        XCTAssertThrowsError(try ALBEFTaskCheckpoint.renamed(["text_encoder.bert.encoder.layer"], script: .vqa)) {
            XCTAssertTrue("\($0)".contains("text_encoder.bert.encoder.layer"), "\($0)")
        }
        let r = try ALBEFTaskCheckpoint.renamed(["temp", "text_encoder.bert.encoder.layer.20.output.dense.bias"], script: .vqa)
        XCTAssertEqual(r.map(\.target), ["temp", "text_encoder.encoder.layer.20.output.dense.bias", "text_decoder.bert.encoder.layer.14.output.dense.bias"])
        let n = try ALBEFTaskCheckpoint.renamed(["text_encoder.bert.encoder.layer.3.x", "text_encoder.bert.encoder.layer.8.x"], script: .nlvrTextAssignment)
        XCTAssertEqual(n.map(\.target), ["text_encoder.encoder.layer.3.x", "text_encoder.encoder.layer.10.x", "text_encoder.encoder.layer.11.x"])
        XCTAssertEqual(try ALBEFTaskCheckpoint.renamed(["a.bert.b"], script: .nlvr).map(\.target), ["a.bert.b"])
    }

    /// interpolate_pos_embed on every grid pair of load.safetensors within 1e-5, and the case as
    /// `elip check-step` runs it.
    func testPositionGridResizingAndTheLoadCase() throws {
        let dir = try SharedData.path("reference/albef-load-tiny")
        let file = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("load.safetensors"))
        var pairs = 0
        for name in file.names where name.hasPrefix("interp.") && name.hasSuffix(".in") {
            let outName = String(name.dropLast(3)) + ".out"
            let want = try file.floats(outName)
            let got = try PretrainedImport.resizePositionEmbedding(file.floats(name), shape: try file.entry(name).shape,
                                                                   toTokens: try file.entry(outName).shape[1])
            XCTAssertEqual(got.count, want.count, name)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-5, name)
            pairs += 1
        }
        XCTAssertGreaterThanOrEqual(pairs, 8)
        let output = try ReferenceStep.run(caseDirectory: dir)
        let results = try ReferenceStep.compare(output, expected: file)
        XCTAssertEqual(Set(results.map(\.group)), ["inputs", "interpolation", "loaded pos_embed", "keymaps"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        for n in file.names { XCTAssertNotNil(output.floats[n], n) }
    }

    /// `load` into a layout: renamed tensors copied, the position table resized, the counter
    /// set, keys the checkpoint lacks left as they were; a size mismatch and a missing position
    /// table are errors naming the key.
    func testLoadIntoALayout() throws {
        let arena = ParameterArena(capacity: 4096)
        let pos = try arena.add("visual_encoder.pos_embed", shape: [1, 1 + 9, 2])
        let q = try arena.add("text_encoder.encoder.layer.0.attention.self.query.bias", shape: [3])
        let head = try arena.add("cls_head.0.bias", shape: [2])
        try head.assign([7, 7])
        let queue = try Tensor([Float](repeating: 0, count: 8), shape: [2, 4])
        var pointer = 0
        var layout = StateDictLayout()
        layout.arenas = [.init(arena, role: .trainable)]
        layout.buffers = [("image_queue", queue)]
        layout.counters = [.init(name: "queue_ptr", limit: 4, get: { pointer }, set: { pointer = $0 })]

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-taskload-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        func write(posShape: [Int] = [1, 5, 2], qCount: Int = 3) throws {
            var w = SafetensorsWriter()
            try w.add("visual_encoder.pos_embed", floats: (0..<posShape.reduce(1, *)).map { Float($0) }, shape: posShape)
            try w.add("text_encoder.bert.encoder.layer.0.attention.self.query.bias", floats: (0..<qCount).map { Float($0) + 0.5 }, shape: [qCount])
            try w.add("image_queue", floats: [Float](repeating: 3, count: 8), shape: [2, 4])
            try w.add("queue_ptr", int64s: [2], shape: [1])
            try w.add("itm_head.bias", floats: [1, 2], shape: [2])
            try w.write(to: path)
        }
        try write()
        let plan = try ALBEFTaskCheckpoint.load(.retrieval, from: SafetensorsFile(path: path), into: layout)
        XCTAssertEqual(plan.resized, ["visual_encoder.pos_embed": "visual_encoder.pos_embed"])
        XCTAssertEqual(q.toArray(), [0.5, 1.5, 2.5])
        XCTAssertEqual(head.toArray(), [7, 7], "not in the checkpoint: kept")
        XCTAssertEqual(plan.keptAtInit, ["cls_head.0.bias"])
        XCTAssertEqual(plan.unexpected, ["itm_head.bias"])
        XCTAssertEqual(queue.toArray(), [Float](repeating: 3, count: 8))
        XCTAssertEqual(pointer, 2)
        let expectedPos = try PretrainedImport.resizePositionEmbedding((0..<10).map(Float.init), shape: [1, 5, 2], toTokens: 10)
        XCTAssertEqual(pos.toArray(), expectedPos)
        XCTAssertEqual(Array(pos.toArray()[0..<2]), [0, 1], "[CLS] row kept")

        try write(qCount: 4)
        XCTAssertThrowsError(try ALBEFTaskCheckpoint.load(.retrieval, from: SafetensorsFile(path: path), into: layout)) {
            XCTAssertTrue("\($0)".contains("size mismatch for text_encoder.encoder.layer.0.attention.self.query.bias"), "\($0)")
        }
        try write(posShape: [1, 5, 3])
        XCTAssertThrowsError(try ALBEFTaskCheckpoint.load(.ve, from: SafetensorsFile(path: path), into: layout)) {
            XCTAssertTrue("\($0)".contains("visual_encoder.pos_embed"), "\($0)")
        }
        var w = SafetensorsWriter()
        try w.add("temp", floats: [0.07], shape: [])
        try w.write(to: path)
        XCTAssertThrowsError(try ALBEFTaskCheckpoint.load(.vqa, from: SafetensorsFile(path: path), into: layout)) {
            XCTAssertTrue("\($0)".contains("visual_encoder.pos_embed missing"), "\($0)")
        }
    }

    /// A load case with bad load_args.json or tensors: an error naming the file and the key.
    func testBadLoadCases() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-loadcase-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = SafetensorsWriter()
        try w.add("pretrain.visual_encoder.pos_embed", floats: [Float](repeating: 0.1, count: 5 * 4), shape: [1, 5, 4])
        try w.write(to: dir.appendingPathComponent("load.safetensors").path)
        let args = dir.appendingPathComponent("load_args.json")
        for (text, reason) in [("{\"res_from\": 32", "res_from"), ("{\"res_from\": 32}", "res_to"),
                               ("{\"res_from\": 32, \"res_to\": 40}", "res_to 40 is not a multiple of the patch size 16"),
                               ("{\"res_from\": 32, \"res_to\": true}", "res_to"), ("{\"res_from\": 0, \"res_to\": 48}", "res_from must be in")] {
            try Data(text.utf8).write(to: args)
            XCTAssertTrue(CheckpointLoadCase.isCase(dir.path))
            XCTAssertThrowsError(try ReferenceStep.run(caseDirectory: dir.path), text) {
                XCTAssertTrue("\($0)".contains("load_args.json") && "\($0)".contains(reason), "\(text): \($0)")
            }
        }
        // The scripts resize both ViTs' tables: a checkpoint without the momentum one is refused
        // (the official code stops with a KeyError).
        try Data(#"{"res_from": 48, "res_to": 64}"#.utf8).write(to: args)
        XCTAssertThrowsError(try ReferenceStep.run(caseDirectory: dir.path)) {
            XCTAssertTrue("\($0)".contains("visual_encoder_m.pos_embed missing"), "\($0)")
        }
        // Without the pre-training table there is nothing to load.
        var empty = SafetensorsWriter()
        try empty.add("interp.2to3.in", floats: [Float](repeating: 0, count: 5), shape: [1, 5, 1])
        try empty.write(to: dir.appendingPathComponent("load.safetensors").path)
        XCTAssertThrowsError(try ReferenceStep.run(caseDirectory: dir.path)) {
            XCTAssertTrue("\($0)".contains("pretrain.visual_encoder.pos_embed missing"), "\($0)")
        }
    }
}

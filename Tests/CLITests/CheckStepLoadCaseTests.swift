import Foundation
import XCTest

/// `elip check-step` on the checkpoint-loading case (../shared/reference/albef-load-tiny) and on
/// a case of the same layout with other shapes made here.
final class CheckStepLoadCaseTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// Every tensor of load.safetensors written under its name and within 1e-5; key maps equal.
    func testTheReferenceCase() throws {
        let dir = try CLI.shared("reference/albef-load-tiny")
        let out = tmp.appendingPathComponent("load-out.safetensors")
        let r = try CLI.run(["check-step", dir, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for group in ["inputs", "interpolation", "loaded pos_embed", "keymaps"] {
            XCTAssertTrue(r.stdout.contains(group), "no \(group) line:\n\(r.stdout)")
        }
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        let names = try safetensorsNames(out)
        let expected = try safetensorsNames(URL(fileURLWithPath: dir).appendingPathComponent("load.safetensors"))
        XCTAssertEqual(names, expected)
    }

    /// Another case of the same layout holding only inputs (other grids, widths, resolutions):
    /// the outputs follow from the names and load_args.json.
    func testACaseWithOtherShapesAndOnlyInputs() throws {
        let dir = tmp.appendingPathComponent("case")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(#"{"seed": 3, "res_from": 48, "res_to": 80, "width": 8}"#.utf8).write(to: dir.appendingPathComponent("load_args.json"))
        // pretrain tables at 48 px: 3 x 3 grid + [CLS], width 8; one interpolation 5 -> 2 of width 3.
        var tensors: [(String, [Int], [Float])] = []
        tensors.append(("pretrain.visual_encoder.pos_embed", [1, 10, 8], (0..<80).map { Float($0) * 0.01 }))
        tensors.append(("pretrain.visual_encoder_m.pos_embed", [1, 10, 8], (0..<80).map { 0.5 - Float($0) * 0.02 }))
        tensors.append(("interp.5to2.in", [1, 26, 3], [Float](repeating: 0.25, count: 78)))
        try writeSafetensors(tensors, to: dir.appendingPathComponent("load.safetensors"))
        let out = tmp.appendingPathComponent("out.safetensors")
        let r = try CLI.run(["check-step", dir.path, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let names = try safetensorsNames(out)
        for n in ["interp.5to2.out", "retrieval.visual_encoder.pos_embed", "retrieval.visual_encoder_m.pos_embed", "vqa.visual_encoder_m.pos_embed",
                  "ve.visual_encoder.pos_embed", "nlvr_ta.visual_encoder.pos_embed", "nlvr.visual_encoder.pos_embed"] {
            XCTAssertTrue(names.contains(n), "\(n) missing from \(names.sorted())")
        }
        XCTAssertFalse(names.contains("nlvr.visual_encoder_m.pos_embed"), "NLVR.py leaves the momentum ViT at its initialisation")
        XCTAssertFalse(names.contains("nlvr_ta.visual_encoder_m.pos_embed"), "the text-assignment model has no momentum ViT")

        // A grid that does not match its name is refused, naming the tensor.
        try writeSafetensors([("pretrain.visual_encoder.pos_embed", [1, 10, 8], [Float](repeating: 0, count: 80)),
                              ("interp.4to2.in", [1, 26, 3], [Float](repeating: 0, count: 78))], to: dir.appendingPathComponent("load.safetensors"))
        let bad = try CLI.run(["check-step", dir.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("interp.4to2.in") && bad.stderr.contains("4x4 grid"), bad.stderr)
    }

    private func safetensorsNames(_ url: URL) throws -> Set<String> {
        let data = try Data(contentsOf: url)
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        return Set(header.keys.filter { $0 != "__metadata__" })
    }

    private func writeSafetensors(_ tensors: [(String, [Int], [Float])], to url: URL) throws {
        var header: [String: Any] = [:]
        var body = Data()
        for (name, shape, values) in tensors {
            let start = body.count
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { body.append(contentsOf: $0) } }
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [start, body.count]]
        }
        var h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while h.count % 8 != 0 { h.append(0x20) }
        var file = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(h)
        file.append(body)
        try file.write(to: url)
    }
}

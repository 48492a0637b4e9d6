import Foundation
import Safetensors
import TorchSaveFixtures
import XCTest

/// Issue 16 part 4: `elip export --format pytorch-names` writes exactly the names and values of
/// the official state_dict. Checked against state dicts written by the official code
/// (../shared/reference/albef-tiny and blip-tiny weights.safetensors), including the round trip
/// through a .pth: official checkpoint as torch.save writes it -> elip -> safetensors.
final class ExportCommandTests: XCTestCase {
    /// `config`: a file of the case, or nil for BLIP, whose pretrain.yaml holds the official
    /// keys only: an elip config with the same shape is written.
    func exportMatchesTheOfficialStateDict(_ case_: String, config: String?) throws {
        let dir = try CLI.shared("reference/\(case_)")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let configPath = try config.map { dir + "/" + $0 } ?? Tiny.writeConfig(.blip, folder: tmp, overrides: [
            "med_config: \(dir)/med_config.json", "image_size: 64", "embed_dim: 32", "max_length: 30", "queue_size: 16",
            "vision.embed_dim: 32", "vision.depth: 12", "vision.num_heads: 4", "img_prune.begin_layer: [2, 4, 10]",
            "img_prune.num_act_layers: [2, 6, 2]", "img_prune.keep_ratio: [0.9, 0.65, 0.4]"])
        let reference = try SafetensorsFile(path: dir + "/weights.safetensors")
        let out = tmp.appendingPathComponent("export.safetensors").path
        let r = try CLI.run(["export", "--checkpoint", dir + "/weights.safetensors", "--config", configPath, "--out", out])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let exported = try SafetensorsFile(path: out)
        // The BLIP case stores tied tensors once and lists the other names in its `aliases` metadata;
        // state_dict() lists every name.
        let aliases = try reference.metadata["aliases"].map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] ?? [:]
        } ?? [:]
        XCTAssertEqual(Set(exported.names), Set(reference.names).union(aliases.keys), "\(case_): names differ from the official state_dict")
        for (alias, target) in aliases { XCTAssertEqual(try exported.floats(alias), try reference.floats(target), alias) }
        for name in reference.names {
            if reference[name]!.dtype.isFloatingPoint {
                XCTAssertEqual(try exported.floats(name), try reference.floats(name), name)
            } else {
                XCTAssertEqual(try exported.int64s(name), try reference.int64s(name), name)
            }
            XCTAssertEqual(exported[name]?.shape, reference[name]?.shape, name)
        }
        XCTAssertEqual(exported.metadata["format"], "pt")

        // The same state dict as an official release ships it ({'model': ..., 'epoch': ...} by torch.save).
        typealias G = TorchSaveGenerator
        var model: [(String, G.Object)] = []
        for name in reference.names {
            let e = reference[name]!
            let bytes = try reference.withTensorBytes(name) { Array($0) }
            let type = e.dtype == .f32 ? "FloatStorage" : "LongStorage"
            var stride: [Int] = [], s = 1
            for d in e.shape.reversed() { stride.insert(s, at: 0); s *= d }
            model.append((name, .tensor(G.Tensor(storage: G.Storage(type, bytes: bytes, elementSize: e.dtype.byteSize), offset: 0, size: e.shape, stride: stride))))
        }
        let pth = tmp.appendingPathComponent("release.pth").path
        try Data(G.zipCheckpoint(.dict([("model", .orderedDict(model, metadata: true)), ("epoch", .int(29))]))).write(to: URL(fileURLWithPath: pth))
        let fromPth = tmp.appendingPathComponent("from-pth.safetensors").path
        let p = try CLI.run(["export", "--checkpoint", pth, "--config", configPath, "--out", fromPth])
        XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fromPth)), try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    func testALBEFExportHasTheOfficialNames() throws { try exportMatchesTheOfficialStateDict("albef-tiny", config: "Pretrain.yaml") }
    func testBLIPExportHasTheOfficialNames() throws { try exportMatchesTheOfficialStateDict("blip-tiny", config: nil) }

    func testOnlyPytorchNamesIsAccepted() throws {
        let r = try CLI.run(["export", "--checkpoint", "x", "--format", "onnx", "--out", "y"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--format onnx: only pytorch-names is supported"), r.stderr)
    }
}

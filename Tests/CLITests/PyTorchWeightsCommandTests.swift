import Foundation
import Safetensors
import TorchSaveFixtures
import XCTest

/// Issue 16 part 2: import-weights and train --init-weights read PyTorch checkpoints directly
/// (timm/DeiT {'model': ...}, HuggingFace pytorch_model.bin with the old gamma/beta names, an
/// ALBEF-style {'model', 'epoch', 'config', 'optimizer'}); unused tensors are listed as
/// unexpected_keys and --strict refuses them.
final class PyTorchWeightsCommandTests: XCTestCase {
    typealias G = TorchSaveGenerator

    static var folder: URL!
    static var albef: (run: String, config: String)!

    override class func setUp() {
        super.setUp()
        folder = try! CLI.temporaryDirectory()
        albef = try! Tiny.train(.albef, folder: folder)
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: folder)
        super.tearDown()
    }

    func path(_ name: String) -> String { Self.folder.appendingPathComponent(name).path }

    func state() throws -> SafetensorsFile {
        let checkpoints = URL(fileURLWithPath: Self.albef.run).appendingPathComponent("checkpoints")
        let step = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted().last)
        return try SafetensorsFile(path: checkpoints.appendingPathComponent(step).appendingPathComponent("model.safetensors").path)
    }

    func tensor(_ file: SafetensorsFile, _ name: String) throws -> G.Object { try torchSaveTensor(file, name) }

    func extra(_ shape: [Int]) -> G.Object {
        let n = shape.reduce(1, *)
        let bytes = (0..<n).flatMap { i -> [UInt8] in let b = Float(i).bitPattern; return (0..<4).map { UInt8(truncatingIfNeeded: b >> (8 * $0)) } }
        return .tensor(G.Tensor(storage: G.Storage("FloatStorage", bytes: bytes, elementSize: 4), offset: 0, size: shape, stride: shape.count == 2 ? [shape[1], 1] : [1]))
    }

    func testImportWeightsReadsTimmAndHuggingFacePyTorchFiles() throws {
        let st = try state()
        // timm/DeiT release layout: {'model': state_dict} with a classifier head ALBEF does not use.
        var vit: [(String, G.Object)] = try st.names.filter { $0.hasPrefix("visual_encoder.") }
            .map { (String($0.dropFirst("visual_encoder.".count)), try tensor(st, $0)) }
        vit.append(("head.weight", extra([3, 16])))
        // HuggingFace BertForPreTraining (old names): bert.*.LayerNorm.gamma/beta, cls.predictions.*, NSP head.
        var bert: [(String, G.Object)] = []
        for name in st.names where name.hasPrefix("text_encoder.") {
            var n = name.hasPrefix("text_encoder.bert.") ? "bert." + name.dropFirst("text_encoder.bert.".count) : String(name.dropFirst("text_encoder.".count))
            if n.contains("crossattention") { continue }
            if n.hasSuffix("LayerNorm.weight") { n = String(n.dropLast(6)) + "gamma" }
            if n.hasSuffix("LayerNorm.bias") { n = String(n.dropLast(4)) + "beta" }
            bert.append((n, try tensor(st, name)))
        }
        bert.append(("cls.seq_relationship.weight", extra([2, 16])))
        let vitPath = path("deit.pth"), bertPath = path("pytorch_model.bin"), out = path("imported.safetensors")
        try Data(G.zipCheckpoint(.dict([("model", .orderedDict(vit, metadata: true))]), archive: "deit")).write(to: URL(fileURLWithPath: vitPath))
        try Data(G.legacyCheckpoint(.orderedDict(bert, metadata: true))).write(to: URL(fileURLWithPath: bertPath))

        let r = try CLI.run(["import-weights", "--config", Self.albef.config, "--vit", vitPath, "--bert", bertPath, "--out", out])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("--vit \(vitPath): 1 unexpected_keys: head.weight"), r.stdout)
        XCTAssertTrue(r.stdout.contains("--bert \(bertPath): 1 unexpected_keys: cls.seq_relationship.weight"), r.stdout)
        XCTAssertTrue(r.stdout.contains("PyTorch legacy checkpoint"), r.stdout)
        let imported = try SafetensorsFile(path: out)
        var compared = 0
        for name in st.names where (name.hasPrefix("visual_encoder.") || name.hasPrefix("text_encoder.bert.")) && !name.contains("crossattention")
            && st[name]?.dtype == .f32 {
            XCTAssertEqual(try imported.floats(name), try st.floats(name), name)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 50)

        let strict = try CLI.run(["import-weights", "--config", Self.albef.config, "--vit", vitPath, "--bert", bertPath, "--out", path("strict.safetensors"), "--strict"])
        XCTAssertNotEqual(strict.status, 0)
        XCTAssertTrue(strict.stderr.contains("--strict: --bert \(bertPath): 1 unexpected_keys: cls.seq_relationship.weight"), strict.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("strict.safetensors")))

        // Tensors whose shape differs are all named in one error and nothing is written (as
        // PyTorch's load_state_dict raises on a size mismatch even with strict=False).
        let wrong = bert.map { n, o in n.hasSuffix("attention.self.query.weight") ? (n, extra([3, 16])) : (n, o) }
        let wrongPath = path("wrong-shapes.bin")
        try Data(G.legacyCheckpoint(.orderedDict(wrong, metadata: true))).write(to: URL(fileURLWithPath: wrongPath))
        let mismatched = wrong.filter { $0.0.hasSuffix("attention.self.query.weight") }.count
        XCTAssertGreaterThan(mismatched, 1)
        let sized = try CLI.run(["import-weights", "--config", Self.albef.config, "--vit", vitPath, "--bert", wrongPath, "--out", path("sized.safetensors")])
        XCTAssertEqual(sized.status, 1, sized.stdout + sized.stderr)
        XCTAssertTrue(sized.stderr.contains("\(mismatched) size mismatch(es)") && sized.stderr.contains("layer.0.attention.self.query.weight: shape [3, 16]"), sized.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("sized.safetensors")))

        // A checkpoint naming a forbidden global is refused before anything is written.
        let evil = path("evil.pth")
        try Data(G.zipCheckpoint(.dict([("model", .reduce(module: "os", name: "system", args: [.str("true")]))]))).write(to: URL(fileURLWithPath: evil))
        let refused = try CLI.run(["import-weights", "--config", Self.albef.config, "--vit", evil, "--bert", bertPath, "--out", path("evil.safetensors")])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("refused global os.system"), refused.stderr)
    }

    func testTrainInitWeightsReadsAnOfficialStyleCheckpoint() throws {
        let st = try state()
        var model: [(String, G.Object)] = try st.names.map { ($0, try tensor(st, $0)) }
        model.append(("unused.weight", extra([2])))
        let checkpoint: G.Object = .dict([("model", .orderedDict(model, metadata: true)), ("epoch", .int(29)),
                                          ("config", .dict([("image_res", .int(32))])), ("optimizer", .dict([("state", .dict([("0", extra([2]))]))]))])
        let pth = path("ALBEF_tiny.pth")
        try Data(G.zipCheckpoint(checkpoint, archive: "ALBEF_tiny")).write(to: URL(fileURLWithPath: pth))
        let r = try CLI.run(["train", "--config", Self.albef.config, "--out", path("run-from-pth"), "--init-weights", pth, "--threads", "2", "--max-steps", "1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("init-weights: \(pth): PyTorch zip checkpoint, \(st.names.count + 1) tensors from 'model' (not used: optimizer)"), r.stdout)
        XCTAssertTrue(r.stderr.contains("1 tensors of \(pth) match no parameter or buffer and were not used (unexpected_keys): unused.weight"), r.stderr)
    }
}

import Foundation
import Safetensors
import XCTest

/// Issue 18 part 3: `elip analyze-tokens --vision-only` (KL of the [CLS]-to-patch attention of
/// the ViT alone vs the trained model's, per layer) on a tiny ALBEF run.
final class AnalyzeTokensVisionOnlyTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// The run's model.safetensors (under checkpoints/).
    func modelFile(of run: String) throws -> String {
        let files = FileManager.default.enumerator(atPath: run)?.compactMap { $0 as? String } ?? []
        let model = try XCTUnwrap(files.sorted().last { $0.hasSuffix("model.safetensors") }, "no model.safetensors under \(run)")
        return (run as NSString).appendingPathComponent(model)
    }

    /// The run's ViT under timm names (as a DeiT file holds it), `change` applied per tensor.
    func writeTimm(from run: String, to name: String, change: (String, [Float], [Int]) -> (String, [Float], [Int])?) throws -> String {
        let file = try SafetensorsFile(path: modelFile(of: run))
        var writer = SafetensorsWriter()
        for n in file.names where n.hasPrefix("visual_encoder.") {
            let e = try XCTUnwrap(file[n])
            if let (name, values, shape) = change(String(n.dropFirst("visual_encoder.".count)), try file.floats(n), e.shape) {
                try writer.add(name, floats: values, shape: shape)
            }
        }
        let path = tmp.appendingPathComponent(name).path
        try writer.write(to: path)
        return path
    }

    func analyze(_ run: String, _ annotations: String, visionOnly: String, out: String, chart: String? = nil) throws -> ElipRun {
        try CLI.run(["analyze-tokens", "--checkpoint", run, "--data", annotations, "--vision-only", visionOnly,
                     "--out", out, "--batch", "2", "--threads", "2"] + (chart.map { ["--chart", $0] } ?? []))
    }

    func curve(_ out: String) throws -> [Double] {
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        XCTAssertTrue((json["kl_definition"] as? String)?.contains("KL(P_model || P_vision_only)") == true)
        return try XCTUnwrap(json["kl_vision_only_vs_model"] as? [Double])
    }

    func testKLPerLayer() throws {
        let annotations = try Tiny.images(in: tmp)
        let (run, _) = try Tiny.train(.albef, folder: tmp)
        // The same weights, as the run folder and as timm names: exactly 0 at every layer.
        let sameOut = tmp.appendingPathComponent("same.json").path
        let same = try analyze(run, annotations, visionOnly: run, out: sameOut)
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertEqual(try curve(sameOut), [0, 0, 0, 0], "one value per ViT layer (depth 4), 0 for identical weights")
        let timmSame = try writeTimm(from: run, to: "same-timm.safetensors") { ($0, $1, $2) }
        let timmSameOut = tmp.appendingPathComponent("same-timm.json").path
        XCTAssertEqual(try analyze(run, annotations, visionOnly: timmSame, out: timmSameOut).status, 0)
        XCTAssertEqual(try curve(timmSameOut), [0, 0, 0, 0])
        // Other attention weights: KL > 0 at every layer, and a PNG.
        let timmOther = try writeTimm(from: run, to: "other-timm.safetensors") { name, values, shape in
            (name, name.contains("attn.qkv.weight") ? values.enumerated().map { $1 * Float(1 + ($0 % 7)) } : values, shape)
        }
        let out = tmp.appendingPathComponent("other.json").path, chart = tmp.appendingPathComponent("other.png").path
        let other = try analyze(run, annotations, visionOnly: timmOther, out: out, chart: chart)
        XCTAssertEqual(other.status, 0, other.stderr)
        let kl = try curve(out)
        XCTAssertEqual(kl.count, 4)
        XCTAssertTrue(kl.allSatisfy { $0 > 0 && $0.isFinite }, "\(kl)")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: chart)).prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }

    /// BLIP: its own weights give 0; the tiny ALBEF run's ViT (patch size 8, BLIP's tiny ViT has
    /// 16) is refused naming the mis-shaped tensor, nothing written.
    func testBLIP() throws {
        let annotations = try Tiny.images(in: tmp)
        let (blip, _) = try Tiny.train(.blip, folder: tmp)
        let out = tmp.appendingPathComponent("blip.json").path
        let r = try analyze(blip, annotations, visionOnly: blip, out: out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try curve(out), [0, 0, 0, 0])
        let (albef, _) = try Tiny.train(.albef, folder: tmp)
        let crossOut = tmp.appendingPathComponent("cross.json").path
        let cross = try analyze(blip, annotations, visionOnly: albef, out: crossOut)
        XCTAssertEqual(cross.status, 1, cross.stderr)
        XCTAssertTrue(cross.stderr.contains("--vision-only") && cross.stderr.contains("size mismatch") && cross.stderr.contains("patch_embed.proj.weight"), cross.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: crossOut))
    }

    func testBadVisionOnlyWeightsAreRefused() throws {
        let annotations = try Tiny.images(in: tmp)
        let (run, _) = try Tiny.train(.albef, folder: tmp)
        let out = tmp.appendingPathComponent("x.json").path
        func refused(_ visionOnly: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let r = try analyze(run, annotations, visionOnly: visionOnly, out: out)
            XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
            XCTAssertTrue(r.stderr.contains("--vision-only") && r.stderr.contains(message), r.stderr, file: file, line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), file: file, line: line)
        }
        try refused(tmp.appendingPathComponent("absent.safetensors").path, "absent.safetensors")
        // A ViT of another width: every mis-shaped tensor is named.
        let wide = try writeTimm(from: run, to: "wide.safetensors") { name, values, shape in
            name == "blocks.0.attn.qkv.weight" ? (name, values + values, [shape[0] * 2] + shape.dropFirst()) : (name, values, shape)
        }
        try refused(wide, "blocks.0.attn.qkv.weight")
        let missing = try writeTimm(from: run, to: "missing.safetensors") { name, values, shape in name == "norm.weight" ? nil : (name, values, shape) }
        try refused(missing, "norm.weight")
        // A deeper ViT (an extra block) is not silently truncated; a classifier head is accepted.
        let deeper = try writeTimm(from: run, to: "deeper.safetensors") { name, values, shape in
            (name == "norm.bias" ? "blocks.4.norm1.bias" : name, values, shape)
        }
        try refused(deeper, "blocks.4.norm1.bias")
        let headed = try writeTimm(from: run, to: "headed.safetensors") { name, values, shape in (name == "norm.bias" ? "head.bias" : name, values, shape) }
        try refused(headed, "norm.bias")  // only the missing final norm bias is reported, not head.bias
        let unnamed = try writeTimm(from: run, to: "unnamed.safetensors") { name, values, shape in ("x." + name, values, shape) }
        try refused(unnamed, "neither timm ViT names")
    }
}

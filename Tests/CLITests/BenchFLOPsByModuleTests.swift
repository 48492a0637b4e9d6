import Foundation
import XCTest

/// Issue 18 part 2: `elip bench train-step` reports the FLOPs share by module, with and without
/// pruning, and draws it (--flops-chart), for every backbone.
final class BenchFLOPsByModuleTests: XCTestCase {
    func testSharesAddUpAndPruningShrinksFusion() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // METER: the shipped demo config (its byte-level BPE vocabulary frames the captions; 20 tokens fit its positions).
        let runs: [(model: String, config: String, extra: [String])] = try Tiny.Model.allCases.map {
            ("\($0)", try Tiny.writeConfig($0, folder: tmp, name: "\($0).yaml"), [])
        } + [("meter", Tiny.repo.appendingPathComponent("configs/demo-meter.yaml").path, ["--text-length", "20"])]
        for (model, config, extra) in runs {
            let chart = tmp.appendingPathComponent("\(model).png").path
            let r = try CLI.run(["bench", "train-step", "--config", config, "--steps", "1", "--warmup", "0", "--batch", "4",
                                 "--variants", "look_ahead,none", "--json", "--flops-chart", chart, "--threads", "2"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            let variants = try XCTUnwrap(json["variants"] as? [[String: Any]])
            XCTAssertEqual(variants.count, 2)
            var fusion: [Double] = []
            for v in variants {
                let m = try XCTUnwrap(v["flops_by_module"] as? [String: Any])
                for key in ["forward_share", "forward_backward_share"] {
                    let shares = try XCTUnwrap(m[key] as? [String: Double])
                    XCTAssertEqual(Set(shares.keys), ["vision", "text", "fusion", "other"])
                    XCTAssertEqual(shares.values.reduce(0, +), 1, accuracy: 1e-9, "\(model) \(key)")
                    XCTAssertTrue(shares.values.allSatisfy { $0 >= 0 })
                    XCTAssertGreaterThan(shares["vision"]!, 0)
                    XCTAssertGreaterThan(shares["text"]!, 0)
                    XCTAssertGreaterThan(shares["fusion"]!, 0)
                }
                // Every sgemm of the step is in exactly one module, forward or backward.
                let forward = try XCTUnwrap(m["forward_gflop"] as? [String: Double]).values.reduce(0, +)
                let backward = try XCTUnwrap(m["backward_gflop"] as? [String: Double]).values.reduce(0, +)
                let total = try XCTUnwrap(v["gflop_per_step"] as? Double)
                XCTAssertEqual(forward + backward, total, accuracy: total * 1e-9, "\(model) \(v["variant"]!)")
                fusion.append(try XCTUnwrap((m["forward_gflop"] as? [String: Double])?["fusion"]))
                let scoring = try XCTUnwrap(m["scoring_forward_gflop"] as? Double)
                XCTAssertEqual(scoring > 0, v["variant"] as? String == "look_ahead", "\(model): scoring passes run only when pruning")
            }
            XCTAssertLessThan(fusion[0], fusion[1], "\(model): the fusion layers see fewer image tokens with pruning")
            let png = try Data(contentsOf: URL(fileURLWithPath: chart))
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        }
    }

    /// --gemm-shapes: at most N rows, slowest first, and over every shape the FLOPs of the step
    /// (each sgemm counted once, batched attention included); a negative count is refused.
    func testGEMMShapesCoverEverySgemmOnce() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp)
        let r = try CLI.run(["bench", "train-step", "--config", config, "--steps", "2", "--warmup", "0", "--batch", "4",
                             "--gemm-shapes", "3", "--json", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let variant = try XCTUnwrap((json["variants"] as? [[String: Any]])?.first)
        let rows = try XCTUnwrap(variant["gemm_shapes"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 3)
        let seconds = rows.compactMap { $0["seconds_per_step"] as? Double }
        XCTAssertEqual(seconds, seconds.sorted(by: >))
        XCTAssertTrue(rows.allSatisfy { ($0["calls_per_step"] as? Double ?? 0) > 0 && ($0["shape"] as? String)?.isEmpty == false })
        let total = try XCTUnwrap(variant["gemm_shapes_gflop_per_step"] as? Double)
        let steps = try XCTUnwrap(variant["step_seconds"] as? [Double]).count
        let perStep = try XCTUnwrap(variant["gflop_per_step"] as? Double)  // the median step's; every step has the same FLOPs
        XCTAssertEqual(steps, 2)
        XCTAssertEqual(total, perStep, accuracy: perStep * 1e-9)
        let bad = try CLI.run(["bench", "train-step", "--config", config, "--gemm-shapes=-1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--gemm-shapes"), bad.stderr)
    }

    func testChartOverTheConfigIsRefused() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp)
        let before = try String(contentsOfFile: config, encoding: .utf8)
        let r = try CLI.run(["bench", "train-step", "--config", config, "--steps", "1", "--warmup", "0", "--batch", "4", "--flops-chart", config])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--flops-chart"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: config, encoding: .utf8), before)
    }
}

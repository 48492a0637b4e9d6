import Foundation
import XCTest

/// Issue 18 part 5: `elip info --token-budget CONFIG` on the shipped configs.
final class TokenBudgetCommandTests: XCTestCase {
    func testShippedConfigs() throws {
        let albef = Tiny.repo.appendingPathComponent("configs/pretrain-albef-4m.yaml").path
        let blip = Tiny.repo.appendingPathComponent("configs/pretrain-blip-4m.yaml").path
        let r = try CLI.run(["info", "--token-budget", albef, "--token-budget", blip])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let albefLine = try XCTUnwrap(lines.first { $0.hasPrefix(albef) }, r.stdout)
        XCTAssertTrue(albefLine.contains("230/166/102 of 256") && albefLine.contains("257 257 232 232 168x6 104 104") && albefLine.hasSuffix("28.9%"), String(albefLine))
        let blipLine = try XCTUnwrap(lines.first { $0.hasPrefix(blip) }, r.stdout)
        XCTAssertTrue(blipLine.contains("176/127/78 of 196") && blipLine.hasSuffix("28.8%"), String(blipLine))

        let j = try CLI.run(["info", "--json", "--token-budget", albef])
        XCTAssertEqual(j.status, 0, j.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        let row = try XCTUnwrap((object["token_budget"] as? [[String: Any]])?.first)
        XCTAssertEqual(row["tokens_per_layer"] as? [Int], [257, 257, 232, 232] + [Int](repeating: 168, count: 6) + [104, 104])
        XCTAssertEqual(try XCTUnwrap(row["removed_share"] as? Double), 890.0 / 3084.0, accuracy: 1e-9)
    }

    /// METER keeps of the official base (224 // 32)^2 = 49 whatever the grid (SPEC-METER §3.1's
    /// table): at 288 px with 16-px patches 44/34/22 of 324 patches, 325 325 46 46 36x5 24 24
    /// tokens, Σ = 970 of 11 x 325 = 3575 (72.9% removed). The demo config keeps of N0 = 64.
    func testMETERConfigsUseTheirKeepBase() throws {
        let meter = Tiny.repo.appendingPathComponent("configs/pretrain-meter-4m.yaml").path
        let demo = Tiny.repo.appendingPathComponent("configs/demo-meter.yaml").path
        let r = try CLI.run(["info", "--json", "--token-budget", meter, "--token-budget", demo])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let rows = try XCTUnwrap(object["token_budget"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[0]["tokens_per_layer"] as? [Int], [325, 325, 46, 46] + [Int](repeating: 36, count: 5) + [24, 24])
        XCTAssertEqual(try XCTUnwrap(rows[0]["removed_share"] as? Double), 1 - 970.0 / 3575.0, accuracy: 1e-9)
        // demo-meter.yaml: 11 blocks, 64 patches, keeps floor(64 x [0.9, 0.8, 0.7]) = 57/51/44.
        XCTAssertEqual(rows[1]["tokens_per_layer"] as? [Int], [65, 65, 59, 59] + [Int](repeating: 53, count: 5) + [46, 46])
    }

    func testBadConfigIsAnError() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp, overrides: ["img_prune.lambda: 2"])
        let r = try CLI.run(["info", "--token-budget", config])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(config): img_prune.lambda: must be in [0, 1], got 2"), r.stderr)
        let missing = try CLI.run(["info", "--token-budget", tmp.appendingPathComponent("none.yaml").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("none.yaml"), missing.stderr)
    }
}

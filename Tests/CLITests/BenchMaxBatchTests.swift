import Foundation
import XCTest

/// Issue 17 part 3: `elip bench train-step --max-batch-for-memory` finds the largest batch whose
/// step fits a memory budget, with and without pruning, by measuring each batch it reports.
final class BenchMaxBatchTests: XCTestCase {
    private func search(_ config: String, budget: String, limit: Int) throws -> [[String: Any]] {
        let r = try CLI.run(["bench", "train-step", "--config", config, "--max-batch-for-memory", budget,
                             "--max-batch-limit", "\(limit)", "--json", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        return try XCTUnwrap(json["variants"] as? [[String: Any]])
    }

    func testFoundBatchFitsAndTheNextOneDoesNot() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp, overrides: ["queue_size: 64"])
        // A generous budget: the search stops at the limit, with and without pruning.
        let wide = try search(config, budget: "64GiB", limit: 12)
        XCTAssertEqual(wide.map { $0["variant"] as? String }, ["look_ahead", "none"])
        for v in wide {
            XCTAssertEqual(v["max_batch"] as? Int, 12, "\(v)")
            XCTAssertTrue((v["limited_by"] as? String)?.contains("--max-batch-limit 12") ?? false, "\(v)")
        }
        // A budget between the memory of batch 2 and of batch 12: the reported batch was run and
        // fits, and the first batch over it exceeds the budget (measured) or is predicted to.
        let probes = try XCTUnwrap(wide[1]["probes"] as? [[String: Any]])
        let total2 = try XCTUnwrap(probes.first { $0["batch"] as? Int == 2 }?["total_mib"] as? Double)
        let total12 = try XCTUnwrap(probes.first { $0["batch"] as? Int == 12 }?["total_mib"] as? Double)
        XCTAssertLessThan(total2, total12, "memory grows with the batch")
        // Each new batch size starts with the previous one's cached buffers released (they would
        // otherwise stay resident beside the new shapes' buffers and could exhaust the machine).
        for v in wide {
            for p in try XCTUnwrap(v["probes"] as? [[String: Any]]) where try XCTUnwrap(p["batch"] as? Int) >= 2 {
                XCTAssertEqual(p["cached_mib_before"] as? Double, 0, "\(p)")
            }
        }
        let budget = (total2 + total12) / 2
        for v in try search(config, budget: String(format: "%.0f", budget * 1_048_576), limit: 12) {
            let best = try XCTUnwrap(v["max_batch"] as? Int, "\(v)")
            XCTAssertGreaterThanOrEqual(best, 2, "\(v)")
            XCTAssertLessThan(best, 12, "\(v)")
            XCTAssertLessThanOrEqual(try XCTUnwrap(v["total_mib_at_max_batch"] as? Double), budget, "\(v)")
            XCTAssertGreaterThan(try XCTUnwrap(v["images_per_second_at_max_batch"] as? Double), 0)
            XCTAssertEqual(v["first_batch_over_budget"] as? Int, best + 1, "\(v)")
            let runs = try XCTUnwrap(v["probes"] as? [[String: Any]])
            for p in runs {
                let fits = try XCTUnwrap(p["total_mib"] as? Double) <= budget
                XCTAssertEqual(fits, try XCTUnwrap(p["batch"] as? Int) <= best, "every run agrees with the answer: \(p)")
            }
        }
        // Below the fixed memory: no batch fits, said as such.
        for v in try search(config, budget: "1MiB", limit: 12) {
            XCTAssertEqual(v["max_batch"] as? Int, 0)
            XCTAssertEqual(v["first_batch_over_budget"] as? Int, 1)
        }
    }

    func testBadSizesAreClearErrors() throws {
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let config = try Tiny.writeConfig(.albef, folder: tmp)
        for bad in ["0GiB", "-1G", "nanGiB", "16Gb", "lots", "1e30TiB", ""] {
            let r = try CLI.run(["bench", "train-step", "--config", config, "--max-batch-for-memory=\(bad)"])
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertTrue(r.stderr.contains(bad.isEmpty ? "--max-batch-for-memory" : "--max-batch-for-memory '\(bad)'"), "\(bad): \(r.stderr)")
        }
        let r = try CLI.run(["bench", "train-step", "--config", config, "--max-batch-for-memory", "1GiB", "--max-batch-limit", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--max-batch-limit must be at least 1"), r.stderr)
    }
}

import Foundation
import XCTest

/// Issue 18 part 4: `make compare` (scripts/compare.sh) trains the configured variants and prints
/// one table row per variant. Run here on a tiny model, 2 steps, a 40-image corpus.
final class CompareScriptTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func compare(_ environment: [String: String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["scripts/compare.sh"]
        p.currentDirectoryURL = Tiny.repo
        let base = ["ELIP": CLI.executable.path, "DEMO_OUT": tmp.appendingPathComponent("out").path,
                    "COMPARE_CONFIG": try config(), "COMPARE_STEPS": "2", "COMPARE_IMAGES": "40", "COMPARE_LIMIT": "3",
                    "COMPARE_K_TEST": "4"]
        p.environment = ProcessInfo.processInfo.environment.merging(base) { $1 }.merging(environment) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The tiny ALBEF config with its data read from the shards compare.sh builds.
    func config() throws -> String {
        try Tiny.writeConfig(.albef, folder: tmp, name: "compare.yaml", overrides: ["data: {vocab: \(Tiny.vocab)}"])
    }

    func testTableHasOneRowPerVariant() throws {
        let r = try compare(["COMPARE_VARIANTS": "elip baseline lambda1 lambda0.4 nomerge"])
        XCTAssertEqual(r.status, 0, r.output)
        let table = r.output.split(separator: "\n").filter { $0.hasPrefix("| ") }
        XCTAssertEqual(table.count, 2 + 5, r.output)
        XCTAssertTrue(table[0].contains("| variant | scoring | λ | merge | TR@1 | IR@1 | mean R@1 | r_mean | kept on object, stage 1 | kept on object, stage 2 | object in image | step (ms) |"), String(table[0]))
        let expected = [("elip", "| look_ahead | 0.8 | on |"), ("baseline", "| no pruning | - | - |"),
                        ("lambda1", "| look_ahead | 1 | on |"), ("lambda0.4", "| look_ahead | 0.4 | on |"),
                        ("nomerge", "| look_ahead | 0.8 | off |")]
        for ((name, settings), row) in zip(expected, table.dropFirst(2)) {
            XCTAssertTrue(row.hasPrefix("| \(name) \(settings)"), "\(name): \(row)")
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            XCTAssertEqual(cells.count, 12, String(row))
            for c in cells[4..<8] { XCTAssertNotNil(Double(c), "\(name): retrieval cell '\(c)'") }
            let shares = cells[8..<11]
            if name == "baseline" {
                XCTAssertEqual(Array(shares), ["-", "-", "-"])
            } else {
                for c in shares {
                    let v = try XCTUnwrap(Double(c.dropLast()), "\(name): share cell '\(c)'")
                    XCTAssertTrue(c.hasSuffix("%") && v >= 0 && v <= 100, "\(name): \(c)")
                }
            }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out/compare/table.md").path))
    }

    func testBadSettingsAreRefusedBeforeTraining() throws {
        let bad = try compare(["COMPARE_VARIANTS": "elip lambda2"])
        XCTAssertEqual(bad.status, 1, bad.output)
        XCTAssertTrue(bad.output.contains("compare.sh: variant lambda2: λ must be a number in [0, 1]"), bad.output)
        let unknown = try compare(["COMPARE_VARIANTS": "nomerg"])
        XCTAssertEqual(unknown.status, 1, unknown.output)
        XCTAssertTrue(unknown.output.contains("compare.sh: unknown variant 'nomerg'"), unknown.output)
        let steps = try compare(["COMPARE_STEPS": "1e3"])
        XCTAssertEqual(steps.status, 2, steps.output)
        XCTAssertTrue(steps.output.contains("must be positive integers, got '1e3'"), steps.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out/compare/elip").path))
    }
}

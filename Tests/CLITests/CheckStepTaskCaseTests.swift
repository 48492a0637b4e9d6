import Foundation
import XCTest

/// `elip check-step` on the SNLI-VE fine-tuning case (../shared/reference/albef-ve-tiny).
final class CheckStepTaskCaseTests: XCTestCase {
    func testTheVECaseWritesEveryExpectedTensor() throws {
        let dir = try CLI.shared("reference/albef-ve-tiny")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("ve.safetensors")
        let r = try CLI.run(["check-step", dir, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("loss 1.0793"), r.stdout)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        func names(_ url: URL) throws -> Set<String> {
            let data = try Data(contentsOf: url)
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
            return Set(header.keys.filter { $0 != "__metadata__" })
        }
        XCTAssertEqual(try names(out), try names(URL(fileURLWithPath: dir).appendingPathComponent("expected.safetensors")))
    }
}

import Foundation
import XCTest

/// `elip check-step` on the NLVR2 fine-tuning case (../shared/reference/albef-nlvr-tiny).
final class CheckStepNLVRCaseTests: XCTestCase {
    func testTheNLVRCaseWritesEveryExpectedTensor() throws {
        let dir = try CLI.shared("reference/albef-nlvr-tiny")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("nlvr.safetensors")
        let r = try CLI.run(["check-step", dir, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("loss 0.6991"), r.stdout)
        XCTAssertTrue(r.stdout.contains("key-bias gradients"), r.stdout)
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

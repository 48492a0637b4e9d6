import Foundation
import XCTest

/// `elip check-step` on the retrieval fine-tuning case (../shared/reference/albef-retrieval-tiny).
final class CheckStepRetrievalCaseTests: XCTestCase {
    func testTheRetrievalCasePassesAndWritesEveryExpectedTensor() throws {
        let dir = try CLI.shared("reference/albef-retrieval-tiny")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("retrieval.safetensors")
        let r = try CLI.run(["check-step", dir, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("loss_ita 4.957"), r.stdout)
        XCTAssertTrue(r.stdout.contains("loss_itm 0.6514"), r.stdout)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        for group in ["recall", "evaluation scores", "state", "key-bias gradients"] { XCTAssertTrue(r.stdout.contains(group), r.stdout) }
        func names(_ url: URL) throws -> Set<String> {
            let data = try Data(contentsOf: url)
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
            return Set(header.keys.filter { $0 != "__metadata__" })
        }
        XCTAssertEqual(try names(out), try names(URL(fileURLWithPath: dir).appendingPathComponent("expected.safetensors")))
    }
}

import Foundation
import XCTest

/// `elip check-step` on the VQA fine-tuning case (../shared/reference/albef-vqa-tiny): every
/// expected tensor written, every group (answers of eval_result.json included) within tolerance.
final class CheckStepVQACaseTests: XCTestCase {
    func testTheVQACaseWritesEveryExpectedTensor() throws {
        let dir = try CLI.shared("reference/albef-vqa-tiny")
        let tmp = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("vqa.safetensors")
        let r = try CLI.run(["check-step", dir, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("loss 16.5622"), r.stdout)
        XCTAssertTrue(r.stdout.contains("answers"), r.stdout)
        XCTAssertTrue(r.stdout.contains("evaluation indices"), r.stdout)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        func header(_ url: URL) throws -> [String: [String: Any]] {
            let data = try Data(contentsOf: url)
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let h = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
            return h.filter { $0.key != "__metadata__" }.mapValues { $0 as! [String: Any] }
        }
        let mine = try header(out), expected = try header(URL(fileURLWithPath: dir).appendingPathComponent("expected.safetensors"))
        XCTAssertEqual(Set(mine.keys), Set(expected.keys))
        XCTAssertEqual(mine["eval.topk_ids"]?["dtype"] as? String, "I64")
    }
}

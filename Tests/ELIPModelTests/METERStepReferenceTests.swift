import ELIPModel
import Foundation
import Safetensors
import XCTest

/// `model: meter` replaying the official step of shared/reference/meter-tiny through the generic
/// reference path (`elip check-step`): MLM pass with the masked ids, ITM pass with the clean ids
/// and the recorded negatives, loss = sum, backward; the losses, forward tensors, kept indices of
/// both passes and all gradients against expected.safetensors (the README's tolerances, norm
/// floor 1e-5). The model, shapes and keep base come from the case's config.json.
final class METERStepReferenceTests: XCTestCase {
    func testOfficialStepForwardAndEveryGradient() throws {
        let dir = try SharedData.path("reference/meter-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "meter")
        let output = try ReferenceStep.run(caseDirectory: dir)
        XCTAssertEqual(output.normFloor, 1e-5)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "kept_index", "gradients"])
        for r in results {
            XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)")
            print("meter-tiny \(r.group): \(r.compared) compared, worst \(r.worstName) \(r.worstError)")
        }
        let gradients = expected.names.filter { $0.hasPrefix("grad.") }
        XCTAssertEqual(gradients.count, 313)
        XCTAssertEqual(results.first { $0.group == "kept_index" }?.compared, 6, "3 stages x (MLM, ITM)")
        // The model has no trainable tensor the reference lacks a gradient for.
        XCTAssertEqual(Set(output.floats.keys.filter { $0.hasPrefix("grad.") }), Set(gradients))
    }

    /// The case's keep base (25) differs from N0 (36): the model must use the stated one.
    func testReferenceCaseUsesTheOfficialKeepBase() throws {
        let dir = try SharedData.path("reference/meter-tiny")
        let c = try XCTUnwrap(try ModelRegistry.referenceKind(dir).referenceCase(dir).model.modelConfig as? METERConfig)
        XCTAssertEqual(c.patchCount, 36)
        XCTAssertEqual(c.keepBase, 25)
        XCTAssertEqual(c.prune?.keepCounts(patchCount: c.keepBase), [22, 17, 11])
        XCTAssertEqual(c.specialTokens.mask, 999)
    }
}

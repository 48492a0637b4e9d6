import ELIPModel
import ELIPTensor
import Safetensors
import XCTest

/// One ELIP-ALBEF step against the official PyTorch code (shared/reference/albef-tiny).
final class ReferenceStepTests: XCTestCase {
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/albef-tiny")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "kept_index", "gradients", "state", "momentum (after EMA)"])
        for r in results {
            XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)")
        }
        // Every trainable parameter has a gradient in the reference, and we produce each of them.
        let gradNames = expected.names.filter { $0.hasPrefix("grad.") }
        XCTAssertGreaterThan(gradNames.count, 200)
        for n in gradNames { XCTAssertNotNil(output.floats[n], n) }
    }

    /// The case's Pretrain.yaml decodes into the tiny model it describes; the folder is recognised
    /// as an ALBEF case.
    func testReferenceCaseConfig() throws {
        let dir = try SharedData.path("reference/albef-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "albef")
        let c = try XCTUnwrap(try ModelRegistry.referenceKind(dir).referenceCase(dir).model.modelConfig as? ALBEFConfig)
        XCTAssertEqual(c.patchCount, 16)
        XCTAssertEqual(c.prune?.keepCounts(patchCount: 16), [14, 10, 6])
        XCTAssertEqual(c.bert.encoderWidth, 64)
    }

    /// The written outputs use exactly the reference's names, shapes and dtypes.
    func testWrittenOutputsHaveReferenceNames() throws {
        let dir = try SharedData.path("reference/albef-tiny")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("elip-check-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try ReferenceStep.write(output, to: tmp, onlyNames: Set(expected.names))
        let written = try SafetensorsFile(path: tmp)
        XCTAssertEqual(Set(written.names), Set(expected.names))
        for e in expected.entries {
            XCTAssertEqual(written[e.name]?.shape, e.shape, e.name)
            XCTAssertEqual(written[e.name]?.dtype, e.dtype, e.name)
        }
    }
}

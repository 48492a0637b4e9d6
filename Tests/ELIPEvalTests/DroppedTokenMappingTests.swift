import ELIPEval
import XCTest

/// `img_prune: {merge: false}` (issue 18): without a merged token, a later stage's positions
/// index the previous stage's kept tokens only.
final class DroppedTokenMappingTests: XCTestCase {
    func testKeptPositionsMapBackWithoutAMergedToken() throws {
        // Stage 2 sees the 5 kept tokens of stage 1 (patches 0, 2, 3, 5, 7) and nothing else.
        let r = try PruningTrace.survivingPatches(keptIndices: [[0, 2, 3, 5, 7], [1, 2, 4], [0, 2]], patchCount: 8, merged: false)
        XCTAssertEqual(r.patches, [[0, 2, 3, 5, 7], [2, 3, 7], [2, 7]])
        XCTAssertEqual(r.mergedKept, [false, false, false])
        // Position 5 of stage 2 would be the merged token when merging; without it, it is out of range.
        XCTAssertThrowsError(try PruningTrace.survivingPatches(keptIndices: [[0, 2, 3, 5, 7], [5]], patchCount: 8, merged: false)) {
            XCTAssertTrue("\($0)".contains("stage 2") && "\($0)".contains("position 5"), "\($0)")
        }
        XCTAssertEqual(try PruningTrace.survivingPatches(keptIndices: [[0, 2, 3, 5, 7], [5]], patchCount: 8).mergedKept, [false, true])
    }
}

import ELIPImage
@testable import ELIPEval
import ELIPTrain
import XCTest

final class PruningAnalysisTests: XCTestCase {
    /// Object fractions per patch from a hand-made 4x4 mask on a 2x2 grid.
    func testObjectFractionsPerPatch() throws {
        var mask = try RGBImage(width: 4, height: 4, fill: .black)
        // Top-left patch fully object, top-right a quarter, bottom row empty.
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1), (3, 0)] { _ = mask.setPixel(x: x, y: y, RGB(1, 1, 1)) }
        XCTAssertEqual(PruningAnalysis.objectFractions(mask: mask, grid: 2), [1, 0.25, 0, 0])
    }
}

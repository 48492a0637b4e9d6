@testable import ELIPEval
import XCTest

/// eval-ve's split of a dataset over ranks: contiguous blocks that cover every sample exactly once.
final class VEEvaluationTests: XCTestCase {
    func testBlocksCoverEverySampleOnce() {
        for n in 0..<25 {
            let d = VEDataset(annotationFile: "x", imagePaths: Array(repeating: "i", count: n), sentences: Array(repeating: "s", count: n),
                              labels: Array(repeating: 0, count: n))
            for world in 1...9 {
                let blocks = (0..<world).map { d.block(rank: $0, worldSize: world) }
                XCTAssertEqual(blocks.flatMap { Array($0) }, Array(0..<n), "n \(n), world \(world)")
                XCTAssertLessThanOrEqual(blocks.map(\.count).max()! - blocks.map(\.count).min()!, 1)
            }
        }
    }
}

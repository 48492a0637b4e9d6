@testable import ELIPShards
import XCTest

/// The synthetic SNLI-VE statements: one per label per scene, deterministic, and true to the
/// scene (entailed presence/count/region statements hold, contradicted ones do not, neutral ones
/// talk about a present object's material, which the picture cannot show).
final class SyntheticEntailmentTests: XCTestCase {
    func testStatementsAgreeWithTheScene() {
        var templatesPerLabel: [Int: Set<String>] = [:]
        for index in 0..<300 {
            let scene = SyntheticScenes.scene(index: index, seed: 9, size: 48)
            let s = SyntheticEntailment.statements(for: scene, index: index, seed: 9)
            XCTAssertEqual(s, SyntheticEntailment.statements(for: scene, index: index, seed: 9))
            XCTAssertEqual(s.map(\.label), [0, 1, 2])
            let present = Set(scene.objects.map { "\($0.colour.name) \($0.shape.rawValue)" })
            func kind(after prefix: String, in sentence: String, before suffix: String? = nil) -> String? {
                guard sentence.hasPrefix(prefix) else { return nil }
                var rest = String(sentence.dropFirst(prefix.count))
                if let suffix {
                    guard let r = rest.range(of: suffix) else { return nil }
                    rest = String(rest[..<r.lowerBound])
                }
                return rest
            }
            let countWords = ["one shape": 1, "two shapes": 2, "three shapes": 3, "four shapes": 4]
            for st in s {
                let text = st.sentence
                if let k = kind(after: "there is a ", in: text) {
                    XCTAssertEqual(present.contains(k), st.label == 2, text)
                    templatesPerLabel[st.label, default: []].insert("presence")
                } else if let n = countWords.first(where: { text.hasSuffix($0.key) })?.value {
                    XCTAssertEqual(n == scene.objects.count, st.label == 2, text)
                    templatesPerLabel[st.label, default: []].insert("count")
                } else if let k = kind(after: "the ", in: text, before: " is made of ") {
                    XCTAssertEqual(present.contains(k), st.label == 1, text)
                    templatesPerLabel[st.label, default: []].insert("material")
                } else if let k = kind(after: "the ", in: text, before: " is ") {
                    XCTAssertEqual(st.label, 2, text)
                    XCTAssertTrue(present.contains(k), text)
                    templatesPerLabel[st.label, default: []].insert("region")
                } else {
                    XCTFail("unexpected statement: \(text)")
                }
            }
        }
        // No template gives its label away: presence and count occur entailed and contradicted,
        // material neutral and contradicted.
        XCTAssertEqual(templatesPerLabel[0], ["presence", "count", "material"])
        XCTAssertEqual(templatesPerLabel[1], ["material"])
        XCTAssertEqual(templatesPerLabel[2], ["presence", "count", "region"])
    }
}

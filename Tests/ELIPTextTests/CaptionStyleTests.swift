import ELIPText
import XCTest

final class CaptionStyleTests: XCTestCase {
    /// BLIP's pre_caption keeps , ' ? - / and <person>, turns . ! " ( ) * # : ; ~ into spaces
    /// (SPEC-BLIP §8's examples), collapses whitespace, strips and keeps 30 words.
    func testBLIPPreCaption() {
        XCTAssertEqual(preCaptionBLIP("A dog's half-eaten toy lies on the floor/rug -- why?"),
                       "a dog's half-eaten toy lies on the floor/rug -- why?")
        XCTAssertEqual(preCaptionBLIP("The cat is sleeping on the keyboard (again)..."), "the cat is sleeping on the keyboard again")
        XCTAssertEqual(preCaptionBLIP("A plate of food: rice, beans & grilled chicken."), "a plate of food rice, beans & grilled chicken")
        XCTAssertEqual(preCaptionBLIP("<person> rides\n"), "<person> rides")
        let long = (1...40).map { "w\($0)" }.joined(separator: " ")
        XCTAssertEqual(preCaptionBLIP(long).split(separator: " ").count, 30)
        // ALBEF's rule differs on the same text.
        XCTAssertEqual(preCaption("A dog's half-eaten toy"), "a dogs half eaten toy")
    }

    /// ALBEF pads to the longest caption without [SEP]; BLIP frames with [SEP] and pads to its
    /// max_length, cutting long captions so [SEP] stays.
    func testFramingAndPadding() throws {
        let tok = try BertTokenizer(vocabulary: Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "bus", "dog"]))
        let albef = try tok.encodeBatch(["A red bus.", "A dog"], style: .albef(maxLength: 25))
        XCTAssertEqual(albef.length, 4)
        XCTAssertEqual(Array(albef.ids(row: 0)), [2, 5, 6, 7])
        XCTAssertEqual(Array(albef.ids(row: 1)), [2, 5, 8, 0])
        let blip = try tok.encodeBatch(["A red bus.", "A dog"], style: .blip(maxLength: 6))
        XCTAssertEqual(blip.length, 6)
        XCTAssertEqual(Array(blip.ids(row: 0)), [2, 5, 6, 7, 3, 0])
        XCTAssertEqual(Array(blip.mask(row: 1)), [1, 1, 1, 1, 0, 0])
        let cut = try tok.encodeBatch(["a red bus a dog"], style: .blip(maxLength: 4))
        XCTAssertEqual(Array(cut.ids(row: 0)), [2, 5, 6, 3], "truncated with [SEP] kept")
    }
}

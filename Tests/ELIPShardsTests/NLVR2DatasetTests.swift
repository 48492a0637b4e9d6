import ELIPImage
@testable import ELIPShards
import Foundation
import XCTest

/// NLVR2 annotations through build-dataset (issue 14 part 5): each image stored once however many
/// pairs use it, the pairs as NLVRPairRecords referencing the images; bad entries, and pairs whose
/// image could not be stored, rejected by reason with every good pair kept; the pair record
/// format never traps on damaged bytes; the reader checks references and source ids.
final class NLVR2DatasetTests: XCTestCase {
    var dirs: [String] = []
    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
    func temporary() throws -> String {
        let d = try DatasetFixtures.temporaryDirectory("nlvr2")
        dirs.append(d)
        return d
    }

    static let sample = NLVRPairRecord(sentence: "the left image has more circles than the right image", label: 1,
                                       left: .init(shard: 1, key: 7, sourceID: "img/a.png"), right: .init(shard: 0, key: 3, sourceID: "img/b.png"),
                                       sourceID: "nlvr_train.json:12")

    func testPairRecordRoundTripAndDamage() throws {
        let bytes = Self.sample.encoded()
        XCTAssertEqual(Array(bytes.prefix(4)), Array("ELP1".utf8))
        XCTAssertEqual(try NLVRPairRecord.decode(bytes), Self.sample)
        // Every truncation, a flipped byte and another record kind are errors, never traps.
        for n in 0..<bytes.count { XCTAssertThrowsError(try NLVRPairRecord.decode(Array(bytes.prefix(n)))) }
        for i in [0, 5, bytes.count / 2, bytes.count - 1] {
            var b = bytes
            b[i] ^= 0x40
            XCTAssertThrowsError(try NLVRPairRecord.decode(b))
        }
        XCTAssertThrowsError(try NLVRPairRecord.decode(DatasetRecord(captions: ["a"], sourceID: "x", jpeg: [1]).encoded())) {
            XCTAssertEqual($0 as? DatasetRecord.DecodeError, .badMagic)
        }
        // A length field that lies, with a valid CRC: an error naming what was being read.
        var lying = Array(bytes.prefix(4)) + [0xFF, 0xFF, 0xFF, 0x7F] + Array(bytes[8..<(bytes.count - 4)])
        withUnsafeBytes(of: CRC32.checksum(lying).littleEndian) { lying.append(contentsOf: $0) }
        XCTAssertThrowsError(try NLVRPairRecord.decode(lying)) { XCTAssertEqual($0 as? DatasetRecord.DecodeError, .truncated("sentence")) }
        // Bytes that are not UTF-8 in the sentence, with a valid CRC.
        var notUTF8 = Self.sample
        notUTF8.sentence = "ab"
        var raw = notUTF8.encoded().dropLast(4).map { $0 }
        raw[8] = 0xC3; raw[9] = 0x28
        withUnsafeBytes(of: CRC32.checksum(raw).littleEndian) { raw.append(contentsOf: $0) }
        XCTAssertThrowsError(try NLVRPairRecord.decode(raw)) { XCTAssertEqual($0 as? DatasetRecord.DecodeError, .invalidUTF8("sentence")) }
    }

    func testBuildStoresEachImageOnceAndRejectsBadEntriesByReason() throws {
        let root = try temporary(), out = try temporary() + "/shards"
        for i in 0..<4 { try DatasetFixtures.write(try DatasetFixtures.sceneJPEG(i, size: 32), "\(root)/img/\(i).jpg") }
        try DatasetFixtures.write([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3], "\(root)/img/broken.jpg")
        func entry(_ l: String, _ r: String, _ s: String, _ label: String) -> String {
            "{\"images\": [\"\(l)\", \"\(r)\"], \"sentence\": \"\(s)\", \"label\": \"\(label)\"}"
        }
        let entries = [
            entry("img/0.jpg", "img/1.jpg", "the left image has more stars", "True"),      // 0 good
            entry("img/1.jpg", "img/2.jpg", "both images contain a circle", "False"),      // 1 good
            entry("img/0.jpg", "img/3.jpg", "one image shows a red square", "True"),       // 2 good (img 0 again)
            entry("img/0.jpg", "img/missing.jpg", "a b", "True"),                          // 3 missing image
            entry("img/2.jpg", "img/broken.jpg", "a b", "False"),                          // 4 undecodable image
            entry("img/2.jpg", "img/3.jpg", "a b", "maybe"),                               // 5 bad label
            "{\"images\": [\"img/2.jpg\"], \"sentence\": \"a b\", \"label\": \"True\"}",   // 6 one image
            entry("img/2.jpg", "img/3.jpg", "  ", "True"),                                 // 7 empty sentence
            "{\"images\": [\"img/2.jpg\", \"img/3.jpg\"], \"label\": \"True\"}",           // 8 no sentence
            entry("img/../../x.jpg", "img/3.jpg", "a b", "True"),                          // 9 escapes the root
            entry("img/3.jpg", "img/2.jpg", "the right image has more shapes", "False"),   // 10 good
        ]
        try DatasetFixtures.write("[\n" + entries.joined(separator: ",\n") + "\n]\n", "\(root)/nlvr_train.json")
        var o = DatasetBuildOptions(outputDirectory: out, shardCount: 2)
        o.annotationFiles = ["\(root)/nlvr_train.json"]
        o.imageRoot = root
        o.format = .nlvr2
        o.policy.shorterSide = 32
        o.showProgress = false
        o.maxRejectFraction = 1
        let report = try DatasetBuilder(options: o, log: { _ in }).build()
        // Images 0-3 once each; the missing and the broken one are not stored.
        XCTAssertEqual(report.totalRecords, 4)
        let rejects = try String(contentsOfFile: out + "/rejects.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: String] }
        let byReason = Dictionary(grouping: rejects, by: { $0["reason"]! }).mapValues(\.count)
        XCTAssertEqual(byReason, ["missing_file": 1, "truncated_image": 1, "missing_image": 2, "bad_label": 1,
                                  "bad_annotation": 1, "empty_caption": 1, "missing_caption": 1, "path_escapes_root": 1],
                       "\(rejects)")
        let missing = rejects.filter { $0["reason"] == "missing_image" }.map { $0["detail"]! }
        XCTAssertTrue(missing.contains { $0.contains("nlvr_train.json:3") && $0.contains("img/missing.jpg") && $0.contains("missing_file") }, "\(missing)")
        XCTAssertTrue(missing.contains { $0.contains("nlvr_train.json:4") && $0.contains("img/broken.jpg") }, "\(missing)")
        XCTAssertEqual(report.manifest.rejects.byReason["missing_image"], 2)

        let data = try NLVRPairDataset(directory: out)
        XCTAssertEqual(data.pairs.map(\.sourceID), ["nlvr_train.json:0", "nlvr_train.json:1", "nlvr_train.json:2", "nlvr_train.json:10"])
        XCTAssertEqual(data.pairs.map(\.label), [1, 0, 1, 0])
        XCTAssertEqual(data.pairs.map(\.left.sourceID), ["img/0.jpg", "img/1.jpg", "img/0.jpg", "img/3.jpg"])
        XCTAssertEqual(data.pairs.map(\.right.sourceID), ["img/1.jpg", "img/2.jpg", "img/3.jpg", "img/2.jpg"])
        // Pairs 0 and 2 share their left image: one stored record.
        XCTAssertEqual(data.pairs[0].left, data.pairs[2].left)
        let decoder = try JPEGDecoder()
        for p in data.pairs {
            for ref in [p.left, p.right] {
                let img = try data.image(ref, decoder: decoder)
                XCTAssertEqual([img.width, img.height], [32, 32])
            }
        }
        // A reference whose source id is not the stored image's is refused, naming shard and key.
        var wrong = data.pairs[0].left
        wrong.sourceID = "img/2.jpg"
        XCTAssertThrowsError(try data.image(wrong, decoder: decoder)) { XCTAssertTrue("\($0)".contains("holds image img/0.jpg"), "\($0)") }

        // A re-run keeps the shards and rewrites the same pairs.
        let again = try DatasetBuilder(options: o, log: { _ in }).build()
        XCTAssertEqual(again.skippedShards.count, 2)
        XCTAssertEqual(try NLVRPairDataset(directory: out).pairs, data.pairs)

        // Damaged pairs: refused with what disagrees, never read.
        let pairsData = out + "/pairs/data.mdb"
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: pairsData)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: pairsData))
        XCTAssertThrowsError(try NLVRPairDataset(directory: out)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        // Pre-training shards have no pairs: a clear error.
        try FileManager.default.removeItem(atPath: out + "/pairs")
        XCTAssertThrowsError(try NLVRPairDataset(directory: out)) { XCTAssertTrue("\($0)".contains("--format nlvr2"), "\($0)") }
    }

    /// The synthetic pairs: balanced labels overall and per template (the sentence form alone does
    /// not tell the label), and each statement's truth recomputed from the scenes' objects by a
    /// reading of the sentence independent of the generator.
    func testSyntheticPairsAreBalancedAndTrue() throws {
        let n = 200
        let scenes = (0..<n).map { SyntheticScenes.scene(index: $0, seed: 9, size: 32) }
        let pairs = SyntheticNLVR.pairs(indices: Array(0..<n), perImage: 2, seed: 9) { scenes[$0].objects }
        XCTAssertEqual(pairs.count, 2 * n)
        XCTAssertEqual(pairs.filter { $0.label == 1 }.count, n)
        XCTAssertTrue(pairs.allSatisfy { $0.left != $0.right })
        var labelsByTemplate: [String: [Int]] = [:]
        for p in pairs {
            let objects = ["left": scenes[p.left].objects, "right": scenes[p.right].objects]
            let w = p.sentence.split(separator: " ").map(String.init)
            func has(_ side: String, _ colour: String, _ shape: String) -> Bool {
                objects[side]!.contains { $0.colour.name == colour && $0.shape.rawValue == shape }
            }
            func shapeCount(_ side: String, _ plural: String) -> Int {
                objects[side]!.filter { ($0.shape == .cross ? "crosses" : $0.shape.rawValue + "s") == plural }.count
            }
            let truth: Bool, template: String
            if w.count == 8, w.starts(with: ["one", "of", "the", "images", "contains", "a"]) {
                truth = has("left", w[6], w[7]) || has("right", w[6], w[7])
                template = "either"
            } else if w.count == 6, w.starts(with: ["both", "images", "contain", "a"]) {
                truth = has("left", w[4], w[5]) && has("right", w[4], w[5])
                template = "both"
            } else if w.count == 7, w[0] == "the", w[2] == "image", w[3] == "contains", w[4] == "a" {
                truth = has(w[1], w[5], w[6])
                template = "side"
            } else if w.count == 10, w[4] == "more", w[6] == "than" {
                let other = w[8]
                if w[5] == "shapes" {
                    truth = objects[w[1]]!.count > objects[other]!.count
                    template = "more shapes"
                } else {
                    truth = shapeCount(w[1], w[5]) > shapeCount(other, w[5])
                    template = "more of a shape"
                }
            } else {
                return XCTFail("unexpected statement '\(p.sentence)'")
            }
            labelsByTemplate[template, default: []].append(p.label)
            XCTAssertEqual(truth ? 1 : 0, p.label, "\(p.sentence): left \(objects["left"]!.map { "\($0.colour.name) \($0.shape)" }), right \(objects["right"]!.map { "\($0.colour.name) \($0.shape)" })")
        }
        XCTAssertEqual(Set(labelsByTemplate.keys), ["either", "both", "side", "more shapes", "more of a shape"])
        for (template, labels) in labelsByTemplate {
            let trueShare = Double(labels.filter { $0 == 1 }.count) / Double(labels.count)
            XCTAssertEqual(trueShare, 0.5, accuracy: 0.15, "\(template): \(labels.count) pairs, \(trueShare) true")
        }
    }
}

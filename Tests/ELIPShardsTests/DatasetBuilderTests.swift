import ELIPImage
@testable import ELIPShards
import Foundation
import XCTest

final class DatasetBuilderTests: XCTestCase {
    typealias F = DatasetFixtures

    /// Good inputs plus one of every broken-input class; see the expectations below.
    struct MixedInputs {
        var dir: String
        var root: String
        var annotations: [String]
        var tars: String
        var malformedOffset: Int
    }

    func makeMixedInputs() throws -> MixedInputs {
        let dir = try F.temporaryDirectory("mixed")
        let root = dir + "/root", img = root + "/images", outside = dir + "/outside"
        for i in 0..<6 { try F.write(try F.sceneJPEG(i), "\(img)/good\(i).jpg") }
        try F.write(try F.gradientJPEG(width: 32, height: 24), "\(img)/small.jpg")
        try F.write(try F.gradientJPEG(width: 80, height: 60, format: .gray), "\(img)/grey.jpg")
        try F.write(try F.gradientJPEG(width: 64, height: 64, format: .cmyk), "\(img)/cmyk.jpg")
        try F.write(F.withEXIFOrientation(try F.gradientJPEG(width: 100, height: 60), 6), "\(img)/exif6.jpg")
        try F.write(try F.bombJPEG(width: 60_000, height: 60_000), "\(img)/bomb.jpg")
        let whole = try F.sceneJPEG(9)
        try F.write(Array(whole.prefix(whole.count / 2)), "\(img)/truncated.jpg")
        try F.write(try F.png(width: 20, height: 20), "\(img)/picture.png")
        try F.write("this is not an image\n", "\(img)/notes.jpg")
        try F.write([UInt8](), "\(img)/empty.jpg")
        try FileManager.default.createDirectory(atPath: "\(img)/folder.jpg", withIntermediateDirectories: true)
        try F.write(try F.sceneJPEG(10), "\(outside)/secret.jpg")
        try FileManager.default.createSymbolicLink(atPath: "\(img)/link.jpg", withDestinationPath: "../../outside/secret.jpg")

        let a = """
        [
        {"image": "images/good0.jpg", "caption": "a red circle"},
        {"image": "images/good1.jpg", "caption": ["first caption", "second caption"]},
        {"image": "images/small.jpg", "caption": "a tiny picture"},
        {"image": "images/grey.jpg", "caption": "a grey gradient"},
        {"image": "images/cmyk.jpg", "caption": "a cmyk gradient"},
        {"image": "images/exif6.jpg", "caption": "a rotated gradient"},
        {"image": "images/bomb.jpg", "caption": "boom"},
        {"image": "images/truncated.jpg", "caption": "half a picture"},
        {"image": "images/picture.png", "caption": "a png"},
        {"image": "images/notes.jpg", "caption": "a text file"},
        {"image": "images/empty.jpg", "caption": "nothing"},
        {"image": "images/missing.jpg", "caption": "not there"},
        {"image": "images/folder.jpg", "caption": "a directory"},
        {"image": "images/link.jpg", "caption": "a symlink out of the root"},
        {"image": "../outside/secret.jpg", "caption": "dot dot"},
        {"image": "\(img)/good2.jpg", "caption": "absolute"},
        {"image": "images/good0.jpg", "caption": "a red circle"},
        {"image": "images/good2.jpg", "caption": "   "},
        {"image": "images/good3.jpg", "caption": "..."},
        {"image": 5, "caption": "a number"},
        {"image": "images/good2.jpg", "caption": ["", "a valid caption"]},
        {"image": "images/good1.jpg", "caption": "a new caption for good1"},
        {"image": "images/./sub/../good4.jpg", "caption": "normalised path"}
        ]
        """
        try F.write(a, "\(dir)/a.json")
        let b = "[{\"image\": \"images/good0.jpg\", \"caption\": \"x\"},\n{\"image\": \"images/good1.jpg\" \"caption\": \"y\"}]\n"
        try F.write(b, "\(dir)/b.json")
        let offset = b.utf8.count - Array("\"caption\": \"y\"}]\n".utf8).count

        let t1 = try TarWriter.archive([
            ("000000.jpg", try F.sceneJPEG(5)), ("000000.txt", Array("tar caption zero".utf8)),
            ("000001.jpg", try F.sceneJPEG(11)), ("000001.txt", [0x66, 0xFF, 0xFE, 0x20]),
            ("000002.jpg", try F.sceneJPEG(12)),
            ("000003.txt", Array("caption without image".utf8)),
            ("000000.jpg", try F.sceneJPEG(13)), ("000000.txt", Array("repeated key".utf8)),
            ("000004.jpg", try F.sceneJPEG(14)), ("000004.json", Array("{}".utf8)), ("000004.txt", Array("tar caption four\n".utf8)),
        ])
        try F.write(t1, "\(dir)/tars/t1.tar")
        let j10 = try F.sceneJPEG(15), j11 = try F.sceneJPEG(16)
        let t2 = try TarWriter.archive([
            ("000010.jpg", j10), ("000010.txt", Array("tar caption ten".utf8)),
            ("000011.jpg", j11), ("000011.txt", Array("lost".utf8)),
        ])
        // Cut inside 000011.jpg's data.
        let cut = 512 + (j10.count + 511) / 512 * 512 + 1024 + 512 + 10
        try F.write(Array(t2.prefix(cut)), "\(dir)/tars/t2.tar")
        return MixedInputs(dir: dir, root: root, annotations: ["\(dir)/a.json", "\(dir)/b.json"], tars: "\(dir)/tars",
                           malformedOffset: offset)
    }

    func testMixedGoodAndBrokenInputs() throws {
        let m = try makeMixedInputs()
        defer { try? FileManager.default.removeItem(atPath: m.dir) }
        let out = m.dir + "/out"
        var o = F.options(out, shards: 3, annotations: m.annotations, tars: [m.tars], root: m.root)
        o.maxRejectFraction = 1
        o.allowLostSources = true        // b.json is malformed: a lost source
        o.policy.onlyJPEG = true         // --only-jpeg: the PNG is an unsupported format (PNG is decoded by default)
        let report = try F.build(o)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.totalRecords, 11)

        // Exactly the broken inputs are rejected, with the right reasons.
        let rejects = try F.rejects(in: out)
        let got = rejects.map { "\(($0.source as NSString).lastPathComponent)|\($0.item)|\($0.reason.rawValue)" }.sorted()
        let expected = [
            "a.json|images/bomb.jpg|too_many_pixels",
            "a.json|images/truncated.jpg|truncated_image",
            "a.json|images/picture.png|unsupported_format",
            "a.json|images/notes.jpg|not_an_image",
            "a.json|images/empty.jpg|empty_file",
            "a.json|images/missing.jpg|missing_file",
            "a.json|images/folder.jpg|unreadable",
            "a.json|images/link.jpg|path_escapes_root",
            "a.json|../outside/secret.jpg|path_escapes_root",
            "a.json|\(m.root)/images/good2.jpg|absolute_path",
            "a.json|images/good0.jpg|duplicate",
            "a.json|images/good2.jpg|empty_caption",
            "a.json|images/good3.jpg|empty_caption",
            "a.json|#19|bad_annotation",
            "b.json||malformed_json",
            "t1.tar|000001|caption_not_utf8",
            "t1.tar|000002|missing_caption",
            "t1.tar|000003|missing_image",
            "t1.tar|000000|duplicate",
            "t2.tar||truncated_tar",
        ].sorted()
        XCTAssertEqual(got, expected)
        let manifest = report.manifest
        // Plus what the unreadable parts held: b.json's 1 complete entry, t2.tar's ~1 unread sample.
        XCTAssertEqual(manifest.rejects.lostEntries, 2)
        XCTAssertEqual(manifest.rejects.total, expected.count + 2)
        XCTAssertEqual(manifest.rejects.byReason["path_escapes_root"], 2)
        XCTAssertEqual(manifest.rejects.fraction, Double(expected.count + 2) / Double(expected.count + 2 + 11), accuracy: 1e-12)
        XCTAssertEqual(manifest.droppedCaptions, 1)
        // The malformed file is reported with its name and the byte offset of the error.
        let bSource = try XCTUnwrap(manifest.sources.first { $0.path.hasSuffix("b.json") })
        XCTAssertEqual(bSource.records, 0)
        let err = try XCTUnwrap(bSource.error)
        XCTAssertTrue(err.contains("b.json") && err.contains("byte \(m.malformedOffset)") && err.contains("line 2"), err)
        let aSource = try XCTUnwrap(manifest.sources.first { $0.path.hasSuffix("a.json") })
        XCTAssertEqual([aSource.entries, aSource.records, aSource.rejected, aSource.mergedEntries], [23, 8, 14, 1])
        let t1 = try XCTUnwrap(manifest.sources.first { $0.path.hasSuffix("t1.tar") })
        XCTAssertEqual([t1.entries, t1.records, t1.rejected], [6, 2, 4])
        XCTAssertNotNil(manifest.sources.first { $0.path.hasSuffix("t2.tar") }?.error)

        // The same inputs under the default threshold fail the build (but still produce it).
        var strict = o
        strict.maxRejectFraction = 0.05
        XCTAssertNotNil(try F.build(strict).failure)

        // Contents round-trip through LMDB: captions, source ids, image sizes and orientation.
        let records = try F.records(in: out)
        XCTAssertEqual(Set(records.keys), ["a.json:0", "a.json:1", "a.json:2", "a.json:3", "a.json:4", "a.json:5",
                                           "a.json:20", "a.json:22", "t1.tar:000000", "t1.tar:000004", "t2.tar:000010"])
        XCTAssertEqual(records["a.json:0"]?.captions, ["a red circle"])
        XCTAssertEqual(records["a.json:1"]?.captions, ["first caption", "second caption", "a new caption for good1"])
        XCTAssertEqual(records["a.json:20"]?.captions, ["a valid caption"])
        XCTAssertEqual(records["t1.tar:000004"]?.captions, ["tar caption four"])
        func size(_ id: String) throws -> [Int] {
            let img = try JPEG.decode(try XCTUnwrap(records[id]).jpeg)
            return [img.width, img.height]
        }
        XCTAssertEqual(try size("a.json:0"), [48, 48])
        XCTAssertEqual(try size("a.json:2"), [32, 24])       // never upscaled
        XCTAssertEqual(try size("a.json:3"), [64, 48])       // grey, 80x60 -> shorter side 48
        XCTAssertEqual(try size("a.json:4"), [48, 48])       // CMYK
        XCTAssertEqual(try size("a.json:5"), [48, 80])       // EXIF 6: 100x60 stored, 60x100 upright
        // The stored images are RGB JPEGs: the grey input decodes to three equal channels.
        let grey = try JPEG.decode(try XCTUnwrap(records["a.json:3"]).jpeg)
        XCTAssertEqual(try JPEG.header(try XCTUnwrap(records["a.json:4"]).jpeg).components, 3)
        XCTAssertEqual(grey.pixel(x: 5, y: 5)?.r, grey.pixel(x: 5, y: 5)?.g)

        // The result verifies.
        let inspection = try DatasetInspector.inspect(directory: out, verify: true, workers: 2)
        XCTAssertTrue(inspection.isValid, "\(inspection.problems)")
        XCTAssertEqual(inspection.recordsChecked, 11)
        XCTAssertEqual(inspection.recomputedCaptionStats, manifest.captionStats)
    }

    func testShardBalanceOrderAndManifestChecksums() throws {
        let dir = try F.temporaryDirectory("balance")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var entries: [(image: String, caption: String)] = []
        for i in 0..<10 {
            try F.write(try F.sceneJPEG(i, size: 64), "\(dir)/img/\(i).jpg")
            entries.append(("img/\(i).jpg", "picture number \(i)"))
        }
        try F.write(F.annotation(entries), "\(dir)/ann.json")
        let out = dir + "/out"
        var o = F.options(out, shards: 4, annotations: ["\(dir)/ann.json"], root: dir)
        o.initialMapSize = 1 << 14       // 4 pages: the map must grow
        o.batchSize = 2
        let report = try F.build(o)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.manifest.shards.map(\.records), [3, 3, 2, 2])
        XCTAssertGreaterThan(try LMDBEnvironment(path: report.manifest.shardPath(0, in: out), readOnly: true).mapSize, 1 << 14)
        // Item i of the input order is record i / N of shard i % N.
        let contents = try F.shardContents(in: out)
        for s in 0..<4 {
            XCTAssertEqual(contents[s], stride(from: s, to: 10, by: 4).map { "ann.json:\($0)" })
        }
        // Manifest checksums are those of data.mdb, and a flipped byte is caught by verify.
        for (i, shard) in report.manifest.shards.enumerated() {
            let (sum, bytes) = try Checksum64.file(atPath: report.manifest.shardPath(i, in: out) + "/data.mdb")
            XCTAssertEqual(Checksum64.hex(sum), shard.checksum)
            XCTAssertEqual(bytes, shard.bytes)
            XCTAssertEqual(shard.checksumAlgorithm, "elip-checksum64")
        }
        let data = report.manifest.shardPath(1, in: out) + "/data.mdb"
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: data)))
        bytes[bytes.count - 100] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: data))
        let bad = try DatasetInspector.inspect(directory: out, verify: true)
        XCTAssertFalse(bad.isValid)
        XCTAssertTrue(bad.problems.contains { $0.contains("shard-00001-of-00004") && $0.contains("checksum") }, "\(bad.problems)")
        // Without --verify the (same-size) damage is invisible; the cheap checks still pass.
        XCTAssertTrue(try DatasetInspector.inspect(directory: out, verify: false).isValid)
    }

    func testVerifyFindsBadRecordsEvenWithMatchingChecksum() throws {
        let dir = try F.temporaryDirectory("badrec")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try F.write(try F.sceneJPEG(1, size: 64), "\(dir)/img/1.jpg")
        try F.write(F.annotation([("img/1.jpg", "one picture")]), "\(dir)/ann.json")
        let out = dir + "/out"
        _ = try F.build(F.options(out, shards: 1, annotations: ["\(dir)/ann.json"], root: dir))
        // Append records with a bad CRC, a non-JPEG image and a key gap, then re-sign the manifest.
        let shard = out + "/shard-00000-of-00001"
        do {
            let env = try LMDBEnvironment(path: shard, readOnly: false)
            var broken = DatasetRecord(captions: ["x"], sourceID: "s", jpeg: try F.sceneJPEG(2)).encoded()
            broken[10] ^= 1
            let notJPEG = DatasetRecord(captions: ["y"], sourceID: "t", jpeg: [1, 2, 3]).encoded()
            try env.write { txn in
                try txn.put(1, broken)
                try txn.put(2, notJPEG)
                try txn.put(5, notJPEG)
            }
        }
        var manifest = try DatasetManifest.load(fromDirectory: out)
        let (sum, size) = try Checksum64.file(atPath: shard + "/data.mdb")
        manifest.shards[0].checksum = Checksum64.hex(sum)
        manifest.shards[0].bytes = size
        try Data(try manifest.encodedJSON()).write(to: URL(fileURLWithPath: out + "/manifest.json"))
        let r = try DatasetInspector.inspect(directory: out, verify: true)
        XCTAssertFalse(r.isValid)
        let text = r.problems.joined(separator: "\n")
        XCTAssertTrue(text.contains("4 records, the manifest says 1"), text)
        XCTAssertTrue(text.contains("key 1: CRC mismatch"), text)
        XCTAssertTrue(text.contains("key 2: JPEG does not decode"), text)
        XCTAssertTrue(text.contains("key 5 where 3 was expected"), text)
    }

    func testResumeRebuildsOnlyMissingOrDamagedShards() throws {
        let dir = try F.temporaryDirectory("resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var entries: [(image: String, caption: String)] = []
        for i in 0..<9 {
            try F.write(try F.sceneJPEG(i, size: 64), "\(dir)/img/\(i).jpg")
            entries.append(("img/\(i).jpg", "picture number \(i)"))
        }
        try F.write(F.annotation(entries), "\(dir)/ann.json")
        let out = dir + "/out"
        let o = F.options(out, shards: 3, annotations: ["\(dir)/ann.json"], root: dir)
        let first = try F.build(o)
        XCTAssertEqual(first.builtShards, [0, 1, 2])
        let checksums = first.manifest.shards.map(\.checksum)

        // Interruption: shard 1 never finished (gone) and a half-written temporary is left behind,
        // which even holds a complete-looking copy of a shard; it must never count.
        try FileManager.default.removeItem(atPath: out + "/shard-00001-of-00003")
        try FileManager.default.copyItem(atPath: out + "/shard-00000-of-00003", toPath: out + "/shard-00001-of-00003.tmp-99999")
        try FileManager.default.createDirectory(atPath: out + "/shard-00002-of-00003.tmp-12345", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: out + "/manifest.json")
        XCTAssertThrowsError(try DatasetInspector.inspect(directory: out, verify: false))
        let inode2 = try FileManager.default.attributesOfItem(atPath: out + "/shard-00002-of-00003")[.systemFileNumber] as? NSNumber

        let second = try F.build(o)
        XCTAssertEqual(second.builtShards, [1])
        XCTAssertEqual(second.skippedShards, [0, 2])
        XCTAssertEqual(second.manifest.shards.map(\.checksum), checksums)     // deterministic rebuild
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: out + "/shard-00002-of-00003")[.systemFileNumber] as? NSNumber, inode2)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])
        XCTAssertTrue(try DatasetInspector.inspect(directory: out, verify: true).isValid)

        // A finished shard whose data no longer matches its summary is discarded and rebuilt.
        let data = out + "/shard-00000-of-00003/data.mdb"
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: data)))
        bytes[bytes.count - 64] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: data))
        let third = try F.build(o)
        XCTAssertEqual(third.builtShards, [0])
        XCTAssertNotNil(third.discardedShards[0])
        XCTAssertEqual(third.manifest.shards.map(\.checksum), checksums)

        // Different inputs (a caption changed) invalidate the shard holding that item only.
        entries[4].caption = "a changed caption"
        try F.write(F.annotation(entries), "\(dir)/ann.json")
        let fourth = try F.build(o)
        XCTAssertEqual(fourth.builtShards, [1])
        XCTAssertEqual(fourth.skippedShards, [0, 2])
    }

    func testNothingBuiltIsAFailureAndBadArgumentsThrow() throws {
        let dir = try F.temporaryDirectory("empty")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try F.write("[]", "\(dir)/ann.json")
        let report = try F.build(F.options(dir + "/out", shards: 2, annotations: ["\(dir)/ann.json"], root: dir))
        XCTAssertEqual(report.totalRecords, 0)
        XCTAssertNotNil(report.failure)
        XCTAssertEqual(report.manifest.shards.map(\.records), [0, 0])
        XCTAssertThrowsError(try F.build(F.options(dir + "/o2", shards: 0, annotations: ["\(dir)/ann.json"], root: dir)))
        XCTAssertThrowsError(try F.build(F.options(dir + "/o3", shards: 1, annotations: ["\(dir)/ann.json"], root: dir + "/nope")))
        // A missing annotation file is a failed source, not a crash.
        let r = try F.build(F.options(dir + "/o4", shards: 1, annotations: ["\(dir)/absent.json"], root: dir))
        XCTAssertEqual(r.manifest.rejects.byReason["unreadable_source"], 1)
        XCTAssertNotNil(r.failure)
    }

    func testAbsolutePathsWithTheFlag() throws {
        let dir = try F.temporaryDirectory("abs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try F.write(try F.sceneJPEG(3, size: 64), "\(dir)/elsewhere/x.jpg")
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
        try F.write(F.annotation([("\(dir)/elsewhere/x.jpg", "an absolute path")]), "\(dir)/ann.json")
        var o = F.options(dir + "/out", shards: 1, annotations: ["\(dir)/ann.json"], root: dir + "/root")
        XCTAssertEqual(try F.build(o).manifest.rejects.byReason["absolute_path"], 1)
        o.allowAbsolutePaths = true
        o.outputDirectory = dir + "/out2"
        XCTAssertEqual(try F.build(o).totalRecords, 1)
    }

    func testNonUTF8CaptionsInJSON() throws {
        let dir = try F.temporaryDirectory("utf8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try F.write(try F.sceneJPEG(1, size: 64), "\(dir)/img/1.jpg")
        try F.write(try F.sceneJPEG(2, size: 64), "\(dir)/img/2.jpg")
        let json: [UInt8] = Array("[{\"image\": \"img/1.jpg\", \"caption\": \"caf".utf8) + [0xC3, 0x28]
            + Array("\"},\n {\"image\": \"img/2.jpg\", \"caption\": [\"ok caption\", \"".utf8) + [0xFF]
            + Array("\", 17]}]".utf8)
        try F.write(json, "\(dir)/ann.json")
        var o = F.options(dir + "/out", shards: 1, annotations: ["\(dir)/ann.json"], root: dir)
        o.maxRejectFraction = 1
        let r = try F.build(o)
        XCTAssertEqual(r.totalRecords, 1)
        XCTAssertEqual(r.manifest.rejects.byReason, ["caption_not_utf8": 1])
        XCTAssertEqual(r.manifest.droppedCaptions, 2)
        XCTAssertEqual(try F.records(in: dir + "/out")["ann.json:1"]?.captions, ["ok caption"])
        XCTAssertEqual(try F.rejects(in: dir + "/out").first?.item, "img/1.jpg")
    }

    func testIngestorClassifiesInputs() throws {
        let ing = try ImageIngestor(policy: ImagePolicy(shorterSide: 32, maxPixels: 1_000_000))
        func reason(_ b: [UInt8]) -> RejectReason? {
            if case let .failure(f) = ing.ingest(b) { return f.reason }
            return nil
        }
        XCTAssertNil(reason(try F.sceneJPEG(1, size: 64)))
        XCTAssertEqual(reason([]), .emptyFile)
        XCTAssertEqual(reason(try F.bombJPEG(width: 2000, height: 2000)), .tooManyPixels)
        // A bomb header with nothing after the frame header is still a bomb, not "truncated".
        let bomb = try F.bombJPEG(width: 5000, height: 5000)
        let sof = try XCTUnwrap((2..<bomb.count - 1).first { bomb[$0] == 0xFF && bomb[$0 + 1] == 0xC0 })
        XCTAssertEqual(reason(Array(bomb.prefix(sof + 12))), .tooManyPixels)
        XCTAssertEqual(reason(Array(try F.sceneJPEG(2, size: 64).prefix(400))), .truncatedImage)
        XCTAssertNil(reason(try F.png(width: 4, height: 4)))  // decoded by default since issue 16
        XCTAssertEqual(reason(Array("GIF89a".utf8) + [4, 0]), .truncatedImage)
        XCTAssertEqual(reason(Array("II*\u{0}....".utf8)), .unsupportedFormat)  // TIFF
        XCTAssertEqual(reason(Array("hello world".utf8)), .notAnImage)
        XCTAssertEqual(reason([0xFF, 0xD8, 0xFF, 0xE0, 0x00]), .truncatedImage)
        if case let .success(img) = ing.ingest(try F.png(width: 40, height: 20)) {
            XCTAssertEqual([img.width, img.height], [40, 20])
        } else {
            XCTFail("PNG rejected by default")
        }
        let onlyJPEG = try ImageIngestor(policy: ImagePolicy(shorterSide: 32, onlyJPEG: true))
        for bytes in [try F.png(width: 4, height: 4), Array("GIF89a".utf8) + [4, 0, 4, 0]] {
            guard case let .failure(f) = onlyJPEG.ingest(bytes) else { XCTFail("accepted with --only-jpeg"); continue }
            XCTAssertEqual(f.reason, .unsupportedFormat)
            XCTAssertTrue(f.detail.contains("only JPEG is accepted with --only-jpeg"), f.detail)
        }
        // Random garbage after a JPEG magic never traps.
        var g = SplitMix(seed: 5)
        for _ in 0..<200 {
            var b: [UInt8] = [0xFF, 0xD8, 0xFF]
            for _ in 0..<Int(g.next() % 300) { b.append(UInt8(truncatingIfNeeded: g.next())) }
            _ = ing.ingest(b)
        }
    }

    func testChecksum64MatchesTheCKernel() {
        // Values printed by elip_checksum64 (Sources/CKernels/checksum.c) for bytes (i * 37 + 11) mod 256.
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
        let expected: [(Int, String)] = [
            (0, "461323e765520112"), (1, "0d5c71a0cc5369ae"), (7, "697f32b4b36a9f63"), (8, "6bb7508948c0a989"),
            (9, "4d12027c6beed349"), (31, "152be68b8ebe7060"), (32, "b61859af784a9807"), (33, "462de17aa481c2e9"),
            (63, "fb818d7243cf7b0c"), (64, "81a339b69bb15f79"), (65, "3e12b047c84b1b2e"), (100, "04741067b7362e17"),
            (999, "d832e1787e7e9003"), (1000, "8f08f86f54dc9bc2"),
        ]
        for (n, hex) in expected {
            XCTAssertEqual(Checksum64.hex(Checksum64.checksum(Array(bytes.prefix(n)))), hex, "length \(n)")
            // Streaming in odd pieces gives the same value.
            var h = Checksum64()
            var i = 0, step = 1
            while i < n { let j = min(n, i + step); h.update(Array(bytes[i..<j])); i = j; step = step % 13 + 5 }
            XCTAssertEqual(Checksum64.hex(h.finalize()), hex, "streamed length \(n)")
        }
        XCTAssertEqual(Checksum64.hex(Checksum64.checksum(Array(bytes.prefix(100)), seed: 0x5EED)), "68d082a44b272868")
    }
}

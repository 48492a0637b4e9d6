import ELIPImage
@testable import ELIPShards
import Foundation
import XCTest

final class TarReaderTests: XCTestCase {
    /// One 512-byte header, built by hand (not with TarWriter).
    func header(_ name: String, size: Int, type: UInt8 = UInt8(ascii: "0"), prefix: String = "",
                base256Size: Bool = false, corruptChecksum: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
        put(name, 0)
        put("0000644", 100); put("0000000", 108); put("0000000", 116)
        if base256Size {
            h[124] = 0x80
            var v = size
            for i in stride(from: 135, through: 125, by: -1) { h[i] = UInt8(v & 0xFF); v >>= 8 }
        } else {
            let o = String(size, radix: 8)
            put(String(repeating: "0", count: 11 - o.count) + o, 124)
        }
        put("00000000000", 136)
        h[156] = type
        put("ustar", 257); h[262] = 0; put("00", 263)
        put(prefix, 345)
        for i in 148..<156 { h[i] = 0x20 }
        var sum = h.reduce(0) { $0 + Int($1) }
        if corruptChecksum { sum += 1 }
        let o = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - o.count) + o, 148)
        h[154] = 0; h[155] = 0x20
        return h
    }

    func padded(_ d: [UInt8]) -> [UInt8] { d + [UInt8](repeating: 0, count: (512 - d.count % 512) % 512) }

    func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var len = body.utf8.count + 1
        while String(len).count + body.utf8.count != len { len += 1 }
        return Array("\(len)\(body)".utf8)
    }

    func write(_ bytes: [UInt8]) throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("elip-tar-\(UUID().uuidString).tar").path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testHandMadeArchive() throws {
        let longName = String(repeating: "d", count: 120) + "/000007.jpg"
        let pax = paxRecord("path", "pax/renamed.txt") + paxRecord("mtime", "1700000000.5")
        var tar: [UInt8] = []
        tar += header("a.txt", size: 5) + padded(Array("hello".utf8))
        tar += header("dir/", size: 0, type: UInt8(ascii: "5"))
        tar += header("b.jpg", size: 3, prefix: "some/prefix") + padded([1, 2, 3])
        tar += header("././@LongLink", size: longName.utf8.count + 1, type: UInt8(ascii: "L")) + padded(Array(longName.utf8) + [0])
        tar += header("short", size: 2) + padded([9, 9])
        tar += header("PaxHeaders/x", size: pax.count, type: UInt8(ascii: "x")) + padded(pax)
        tar += header("ignored-name", size: 4) + padded(Array("pax!".utf8))
        tar += header("link", size: 0, type: UInt8(ascii: "2"))
        tar += header("big.bin", size: 600, base256Size: true) + padded([UInt8](repeating: 7, count: 600))
        tar += [UInt8](repeating: 0, count: 1024)
        let path = try write(tar)
        defer { unlink(path) }
        let r = try TarReader(path: path)
        let members = try r.allMembers()
        XCTAssertEqual(members.map(\.name), ["a.txt", "dir/", "some/prefix/b.jpg", longName, "pax/renamed.txt", "link", "big.bin"])
        XCTAssertEqual(members.map(\.kind), [.file, .directory, .file, .file, .file, .other(UInt8(ascii: "2")), .file])
        XCTAssertEqual(try r.read(members[0]), Array("hello".utf8))
        XCTAssertEqual(try r.read(members[2]), [1, 2, 3])
        XCTAssertEqual(try r.read(members[3]), [9, 9])
        XCTAssertEqual(try r.read(members[4]), Array("pax!".utf8))
        XCTAssertEqual(try r.read(members[6]), [UInt8](repeating: 7, count: 600))
        XCTAssertThrowsError(try r.read(members[6], limit: 100))
        XCTAssertNil(try r.next())

        // Without end-of-archive blocks the archive still lists (as Python's tarfile accepts).
        let p2 = try write(Array(tar.dropLast(1024)))
        defer { unlink(p2) }
        XCTAssertEqual(try TarReader(path: p2).allMembers().count, 7)
    }

    func testTruncatedAndCorruptArchives() throws {
        var tar: [UInt8] = header("0.jpg", size: 700) + padded([UInt8](repeating: 1, count: 700))
        tar += header("0.txt", size: 3) + padded(Array("abc".utf8))
        tar += [UInt8](repeating: 0, count: 1024)
        // Cut inside the second header, and inside the first member's data.
        for cut in [1536 + 100, 512 + 300] {
            let p = try write(Array(tar.prefix(cut)))
            defer { unlink(p) }
            let r = try TarReader(path: p)
            var listed: [String] = []
            XCTAssertThrowsError(try { while let m = try r.next() { listed.append(m.name) } }()) { e in
                guard case .truncated? = e as? TarError else { return XCTFail("\(e)") }
            }
            XCTAssertEqual(listed, cut > 1536 ? ["0.jpg"] : [])
            XCTAssertNil(try r.next())      // stays finished, no crash
            XCTAssertThrowsError(try r.read(offset: cut - 10, count: 20))
        }
        // A damaged header fails its checksum.
        let bad = header("x.txt", size: 1, corruptChecksum: true) + padded([1]) + [UInt8](repeating: 0, count: 1024)
        let p = try write(bad)
        defer { unlink(p) }
        XCTAssertThrowsError(try TarReader(path: p).next()) { e in
            guard case .badHeader? = e as? TarError else { return XCTFail("\(e)") }
        }
        // Random bytes never trap.
        var g = SplitMix(seed: 1)
        for n in [0, 100, 511, 512, 2048] {
            var b = (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            if n >= 512 { b.replaceSubrange(0..<512, with: header("r", size: Int(g.next() % 100_000))) }
            let p = try write(b)
            defer { unlink(p) }
            _ = try? TarReader(path: p).allMembers()
        }
    }

    func testReadsArchivesWrittenByTheSystemTar() throws {
        let tarTool = ["/usr/bin/tar", "/bin/tar"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let tarTool else { throw XCTSkip("no tar executable") }
        let dir = try DatasetFixtures.temporaryDirectory("systar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "n", count: 150)
        try DatasetFixtures.write("one", "\(dir)/in/000001.txt")
        try DatasetFixtures.write([UInt8](repeating: 3, count: 1500), "\(dir)/in/000001.jpg")
        try DatasetFixtures.write("long", "\(dir)/in/\(long).txt")
        for format in ["pax", "gnu"] {
            let out = "\(dir)/\(format).tar"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tarTool)
            p.arguments = ["--format=\(format)", "-cf", out, "-C", "\(dir)/in", "000001.jpg", "000001.txt", "\(long).txt"]
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0)
            let r = try TarReader(path: out)
            let m = try r.allMembers()
            XCTAssertEqual(m.map(\.name), ["000001.jpg", "000001.txt", "\(long).txt"], format)
            XCTAssertEqual(try r.read(m[0]), [UInt8](repeating: 3, count: 1500))
            XCTAssertEqual(try r.read(m[2]), Array("long".utf8))
        }
    }

    func testWebDatasetKeySplit() {
        XCTAssertEqual(DatasetPlan.splitKey("000123.jpg").key, "000123")
        XCTAssertEqual(DatasetPlan.splitKey("a/b.c/000123.seg.png").key, "a/b.c/000123")
        XCTAssertEqual(DatasetPlan.splitKey("a/b.c/000123.seg.png").ext, "seg.png")
        XCTAssertEqual(DatasetPlan.splitKey("noext").ext, "")
        XCTAssertEqual(DatasetPlan.splitKey("X.JPG").ext, "jpg")
    }
}

final class JSONReaderTests: XCTestCase {
    func testParsesValuesAndEscapes() throws {
        let text = #"{"a": [1, -2.5e3, true, false, null], "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00x", "e": {}, "l": [], "lone": "a\ud800b"}"#
        let v = try JSONReader.parse(Array(text.utf8))
        XCTAssertEqual(v["a"], .array([.number(1), .number(-2500), .bool(true), .bool(false), .null]))
        XCTAssertEqual(v["s"], .string("q\"\\/\u{8}\u{c}\n\r\té😀x"))
        // A lone surrogate is not Unicode: the string is flagged for the caller to reject, not altered.
        guard case .invalidUTF8String? = v["lone"] else { return XCTFail("\(String(describing: v["lone"]))") }
        XCTAssertEqual(v["e"], .object([:]))
        XCTAssertEqual(v["l"], .array([]))
        // BOM, whitespace, nesting.
        XCTAssertEqual(try JSONReader.parse([0xEF, 0xBB, 0xBF] + Array(" [[[]]] \n".utf8)), .array([.array([.array([])])]))
        // A non-UTF-8 string is kept as a marker, the document stays valid.
        let bad: [UInt8] = Array(#"["ok", ""#.utf8) + [0xFF, 0xFE] + Array(#""]"#.utf8)
        XCTAssertEqual(try JSONReader.parse(bad), .array([.string("ok"), .invalidUTF8String(offset: 7)]))
    }

    func testErrorsCarryByteOffsetLineAndColumn() {
        func err(_ s: String) -> JSONSyntaxError? {
            do { _ = try JSONReader.parse(Array(s.utf8)); return nil } catch { return error as? JSONSyntaxError }
        }
        let cases: [(String, Int)] = [
            ("[1, 2,, 3]", 6), ("{\"a\" 1}", 5), ("[1, 2", 5), ("[01]", 2), ("[1.]", 3), ("\"abc", 4),
            ("[\"a\tb\"]", 3), ("[tru]", 1), ("[\"\\x\"]", 2), ("[1] 2", 4), ("", 0), ("[\"\\u12G4\"]", 6), ("{\"a\": }", 6),
        ]
        for (text, offset) in cases {
            let e = err(text)
            XCTAssertEqual(e?.offset, offset, "\(text): \(String(describing: e))")
        }
        let e = err("[\n  {\"image\": \"x\",\n   \"caption\": \"y\" \"z\"}\n]")
        XCTAssertEqual(e?.line, 3)
        XCTAssertEqual(e?.column, 19)
        // Deep nesting is an error, not a stack overflow.
        XCTAssertNotNil(err(String(repeating: "[", count: 100_000)))
    }

    func testStreamingTopLevelArray() throws {
        var seen: [Int] = []
        try JSONReader.forEachElement(ofTopLevelArrayIn: Array("[{\"i\": 0}, {\"i\": 1}, 7]".utf8)) { i, v in
            seen.append(i)
            if i < 2 { XCTAssertEqual(v["i"], .number(Double(i))) }
        }
        XCTAssertEqual(seen, [0, 1, 2])
        XCTAssertThrowsError(try JSONReader.forEachElement(ofTopLevelArrayIn: Array("{\"a\": 1}".utf8)) { _, _ in })
        XCTAssertThrowsError(try JSONReader.forEachElement(ofTopLevelArrayIn: Array("[1] x".utf8)) { _, _ in })
        var count = 0
        XCTAssertThrowsError(try JSONReader.forEachElement(ofTopLevelArrayIn: Array("[1, 2, }".utf8)) { _, _ in count += 1 }) { e in
            XCTAssertEqual((e as? JSONSyntaxError)?.offset, 7)
        }
        XCTAssertEqual(count, 2)
        try JSONReader.forEachElement(ofTopLevelArrayIn: Array(" [ ] ".utf8)) { _, _ in XCTFail("empty") }
    }

    func testRandomBytesNeverTrap() {
        var g = SplitMix(seed: 3)
        let alphabet = Array("[]{}\",:0123456789.eE+-truefalsnl \\u\n".utf8) + [0xFF, 0xC3]
        for _ in 0..<2000 {
            let n = Int(g.next() % 40)
            let bytes = (0..<n).map { _ in alphabet[Int(g.next() % UInt64(alphabet.count))] }
            _ = try? JSONReader.parse(bytes)
        }
    }

    func testQuoteRoundTrips() throws {
        for s in ["plain", "quote \" backslash \\ newline \n tab \t", "ctrl \u{1} \u{7F}", "ünï 😀", "\u{2028}"] {
            XCTAssertEqual(try JSONReader.parse(Array(JSONText.quote(s).utf8)), .string(s))
        }
    }
}

final class SyntheticCorpusTests: XCTestCase {
    func testDeterministicSplitsAndFiles() throws {
        let base = try DatasetFixtures.temporaryDirectory("synth")
        defer { try? FileManager.default.removeItem(atPath: base) }
        func make(_ name: String, seed: UInt64, workers: Int) throws -> SyntheticCorpusWriter.Summary {
            var o = SyntheticCorpusWriter.Options(outputDirectory: "\(base)/\(name)", images: 20)
            o.size = 48
            o.seed = seed
            o.testFraction = 0.25
            o.workers = workers
            o.showProgress = false
            return try SyntheticCorpusWriter.write(o)
        }
        XCTAssertEqual(try make("a", seed: 4, workers: 1), .init(train: 15, test: 5))
        XCTAssertEqual(try make("b", seed: 4, workers: 3), .init(train: 15, test: 5))
        _ = try make("c", seed: 5, workers: 2)
        func file(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: "\(base)/\(p)")) }
        for f in ["train.json", "test.json", "images/000001.jpg", "images/000020.jpg", "masks/000007.png"] {
            XCTAssertEqual(try file("a/\(f)"), try file("b/\(f)"), f)
        }
        XCTAssertNotEqual(try file("a/images/000001.jpg"), try file("c/images/000001.jpg"))

        let train = try JSONReader.parse(Array(try file("a/train.json")))
        let test = try JSONReader.parse(Array(try file("a/test.json")))
        guard case let .array(tr) = train, case let .array(te) = test else { return XCTFail("not arrays") }
        XCTAssertEqual(tr.count, 15)
        XCTAssertEqual(te.count, 5)
        let testIdx = SyntheticCorpusWriter.testIndices(images: 20, testFraction: 0.25, seed: 4)
        XCTAssertEqual(testIdx.count, 5)
        XCTAssertEqual(te.compactMap { e -> String? in if case let .string(s)? = e["image"] { return s } else { return nil } },
                       testIdx.map { "images/\(SyntheticCorpusWriter.fileStem($0)).jpg" })
        // Every image appears once across the splits.
        let all = (tr + te).compactMap { e -> String? in if case let .string(s)? = e["image"] { return s } else { return nil } }
        XCTAssertEqual(Set(all).count, 20)
        // Test entries: all paraphrases, mask path and objects matching the scene and its mask.
        let first = te[0]
        let i = testIdx[0]
        let scene = SyntheticScenes.scene(index: i, seed: 4, size: 48)
        XCTAssertEqual(first["caption"], .array(scene.captions.map { .string($0) }))
        XCTAssertEqual(first["mask"], .string("masks/\(SyntheticCorpusWriter.fileStem(i)).png"))
        guard case let .array(objects)? = first["objects"] else { return XCTFail("no objects") }
        XCTAssertEqual(objects.count, scene.objects.count)
        XCTAssertEqual(objects[0]["shape"], .string(scene.objects[0].shape.rawValue))
        XCTAssertEqual(objects[0]["colour"], .string(scene.objects[0].colour.name))
        XCTAssertEqual(objects[0]["size"], .string(scene.objects[0].isLarge ? "large" : "small"))
        XCTAssertNil(tr[0]["objects"])
        let mask = try PNG.decode(try file("a/masks/\(SyntheticCorpusWriter.fileStem(i)).png"))
        XCTAssertEqual(mask.pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element), scene.mask)
        let img = try JPEG.decode(try file("a/images/\(SyntheticCorpusWriter.fileStem(i)).jpg"))
        XCTAssertEqual([img.width, img.height], [48, 48])

        // Split sizes at the edges.
        XCTAssertEqual(SyntheticCorpusWriter.testIndices(images: 10, testFraction: 0, seed: 1), [])
        XCTAssertEqual(SyntheticCorpusWriter.testIndices(images: 10, testFraction: 1, seed: 1), Array(0..<10))
        XCTAssertEqual(SyntheticCorpusWriter.testIndices(images: 1000, testFraction: 0.1, seed: 1).count, 100)
    }

    func testSynthCorpusBuildsAndVerifies() throws {
        let base = try DatasetFixtures.temporaryDirectory("synthbuild")
        defer { try? FileManager.default.removeItem(atPath: base) }
        var o = SyntheticCorpusWriter.Options(outputDirectory: "\(base)/syn", images: 12)
        o.size = 64
        o.showProgress = false
        try SyntheticCorpusWriter.write(o)
        let r = try DatasetFixtures.build(DatasetFixtures.options("\(base)/out", shards: 2,
                                                                   annotations: ["\(base)/syn/train.json", "\(base)/syn/test.json"],
                                                                   root: "\(base)/syn", imageSize: 32))
        XCTAssertNil(r.failure)
        XCTAssertEqual(r.totalRecords, 12)
        XCTAssertEqual(r.manifest.captionStats.minCaptionsPerImage, 4)
        XCTAssertTrue(try DatasetInspector.inspect(directory: "\(base)/out", verify: true).isValid)
        let sheet = try DatasetInspector.contactSheet(try DatasetInspector.samples(directory: "\(base)/out", manifest: r.manifest, count: 5))
        XCTAssertEqual([sheet.width, sheet.height], [3 * 128 + 16, 2 * 128 + 12])
    }
}

import ELIPImage
@testable import ELIPShards
import Foundation
import XCTest

/// Issue 15, builder classes: lost inputs counted and failing the build (6), a failed re-run never
/// destroys a finished dataset (7), stale shards rebuilt when an image changes (8), FIFOs do not
/// hang (9), unpredictable temp files (14), one builder per folder (15), symlinked duplicates,
/// zero-byte tars and lone surrogates (18).
final class BuilderReliabilityTests: TemporaryFoldersTestCase {
    typealias F = DatasetFixtures

    /// `count` scene images under ROOT/img and ROOT/train.json listing them.
    func corpus(_ count: Int = 12) throws -> String {
        let root = try temporary("rel-in")
        var entries: [(image: String, caption: String)] = []
        for i in 0..<count {
            try F.write(try F.sceneJPEG(i, size: 40), "\(root)/img/\(i).jpg")
            entries.append(("img/\(i).jpg", "a scene number \(i)"))
        }
        try F.write(F.annotation(entries), "\(root)/train.json")
        return root
    }

    func tarBytes(samples: Int) throws -> [UInt8] {
        var members: [(String, [UInt8])] = []
        for i in 0..<samples {
            members.append((String(format: "%06d.jpg", i), try F.sceneJPEG(i, size: 32)))
            members.append((String(format: "%06d.txt", i), Array("tar caption \(i)".utf8)))
        }
        return try TarWriter.archive(members)
    }

    // MARK: class 6

    func testTruncatedAnnotationFileCountsItsEntriesAndFailsUnlessAllowed() throws {
        let root = try corpus(12)
        let text = try String(contentsOfFile: "\(root)/train.json", encoding: .utf8)
        // Cut inside entry 9: entries 0...8 are complete before the damage.
        let cut = text.range(of: "img/9.jpg")!.lowerBound
        try F.write(String(text[..<cut]), "\(root)/cut.json")
        let extra = try corpus(4)
        let out = try temporary("rel-out")
        var o = F.options(out, shards: 1, annotations: ["\(extra)/train.json", "\(root)/cut.json"], root: root)
        o.maxRejectFraction = 1
        let report = try F.build(o)
        let source = try XCTUnwrap(report.manifest.sources.first { $0.path.hasSuffix("cut.json") })
        XCTAssertEqual(source.lostEntries, 9)
        XCTAssertEqual(source.lost, true)
        XCTAssertEqual(report.manifest.rejects.lostEntries, 9)
        XCTAssertEqual(report.manifest.rejects.total, 10)           // the malformed_json line + 9 lost entries
        let failure = try XCTUnwrap(report.failure)
        XCTAssertTrue(failure.contains("cut.json") && failure.contains("--allow-lost-sources"), failure)
        o.allowLostSources = true
        XCTAssertNil(try F.build(o).failure)
    }

    func testTarDamagedNearItsStartEstimatesTheLostSamples() throws {
        var tar = try tarBytes(samples: 40)
        // Break the header of sample 2's image (the 5th member): two samples were read before it.
        var offset = 0
        for _ in 0..<4 {
            let size = Int(String(decoding: tar[(offset + 124)..<(offset + 135)], as: UTF8.self), radix: 8)!
            offset += 512 + (size + 511) / 512 * 512
        }
        tar[offset + 148] ^= 0x11
        let dir = try temporary("rel-tar")
        try F.write(tar, "\(dir)/tars/t.tar")
        var o = F.options("\(dir)/out", shards: 1, tars: ["\(dir)/tars"])
        o.maxRejectFraction = 0.05
        let report = try F.build(o)
        XCTAssertEqual(report.totalRecords, 2)
        let source = try XCTUnwrap(report.manifest.sources.first)
        XCTAssertEqual(source.lostEntriesEstimated, true)
        let lost = try XCTUnwrap(source.lostEntries)
        XCTAssertTrue((30...45).contains(lost), "estimated \(lost) lost samples, 38 were lost")
        XCTAssertGreaterThan(report.manifest.rejects.fraction, 0.9)
        XCTAssertNotNil(report.failure)          // the reject fraction now shows the loss
    }

    // MARK: class 7

    func testFailedRerunKeepsTheFinishedDataset() throws {
        let root = try corpus(12)
        let out = try temporary("rel-out")
        let o = F.options(out, shards: 2, annotations: ["\(root)/train.json"], root: root)
        _ = try F.build(o)
        let manifest = "\(out)/manifest.json"
        let before = try Data(contentsOf: URL(fileURLWithPath: manifest))
        let shard0 = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(ShardNaming.name(0, of: 2))/data.mdb"))

        var typo = o
        typo.imageRoot = root + "-typo"                          // does not exist
        XCTAssertThrowsError(try F.build(typo)) { XCTAssertTrue("\($0)".contains("not a directory"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: manifest)), before)

        let empty = try temporary("rel-empty")                   // exists, but holds none of the images
        typo.imageRoot = empty
        XCTAssertThrowsError(try F.build(typo)) { e in
            XCTAssertTrue("\(e)".contains("sampled images do not exist") && "\(e)".contains("left untouched"), "\(e)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: manifest)), before)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(ShardNaming.name(0, of: 2))/data.mdb")), shard0)

        var wrongFile = o                                        // a mistyped annotation file name
        wrongFile.annotationFiles = ["\(root)/trian.json"]
        XCTAssertThrowsError(try F.build(wrongFile)) { e in
            XCTAssertTrue("\(e)".contains("trian.json") && "\(e)".contains("left untouched"), "\(e)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: manifest)), before)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(ShardNaming.name(0, of: 2))/data.mdb")), shard0)
        XCTAssertNotNil(try ShardLoaderCheck.listing(out))
    }

    // MARK: class 8

    func testImageReplacedInPlaceRebuildsItsShard() throws {
        let root = try corpus(12)
        let out = try temporary("rel-out")
        let o = F.options(out, shards: 2, annotations: ["\(root)/train.json"], root: root)
        _ = try F.build(o)
        let before = try XCTUnwrap(try F.records(in: out)["train.json:3"]).jpeg
        // Item 3 (shard 1) gets other pixels under the same path.
        try F.write(try F.sceneJPEG(40, size: 40), "\(root)/img/3.jpg")
        let report = try F.build(o)
        XCTAssertEqual(report.builtShards, [1])
        XCTAssertEqual(report.skippedShards, [0])
        let after = try XCTUnwrap(try F.records(in: out)["train.json:3"]).jpeg
        XCTAssertNotEqual(after, before)
        // Unchanged inputs still resume without rebuilding.
        XCTAssertEqual(try F.build(o).skippedShards, [0, 1])
    }

    // MARK: class 9

    func testFIFOsNamedLikeInputsAreRejectedWithoutHanging() throws {
        let root = try corpus(4)
        XCTAssertEqual(mkfifo("\(root)/img/pipe.jpg", 0o644), 0)
        try F.write(F.annotation([("img/0.jpg", "a scene"), ("img/pipe.jpg", "a pipe")]), "\(root)/pipe.json")
        try FileManager.default.createDirectory(atPath: "\(root)/tars", withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo("\(root)/tars/pipe.tar", 0o644), 0)
        let out = try temporary("rel-out")
        var o = F.options(out, shards: 1, annotations: ["\(root)/pipe.json"], tars: ["\(root)/tars"], root: root)
        o.maxRejectFraction = 1
        o.allowLostSources = true
        let done = expectation(description: "build finished")
        var result: Result<DatasetBuildReport, Error>?
        Thread.detachNewThread {
            result = Result { try F.build(o) }
            done.fulfill()
        }
        wait(for: [done], timeout: 60)
        let report = try XCTUnwrap(result).get()
        XCTAssertEqual(report.totalRecords, 1)
        let rejects = try F.rejects(in: out)
        XCTAssertTrue(rejects.contains { $0.item == "img/pipe.jpg" && $0.detail.contains("not a regular file") }, "\(rejects)")
        XCTAssertTrue(rejects.contains { $0.source.hasSuffix("pipe.tar") && $0.detail.contains("not a regular file") }, "\(rejects)")

        // The readers of a built dataset refuse a FIFO manifest instead of blocking on it.
        try FileManager.default.removeItem(atPath: "\(out)/manifest.json")
        XCTAssertEqual(mkfifo("\(out)/manifest.json", 0o644), 0)
        XCTAssertThrowsError(try ShardListing.read(directory: out)) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        XCTAssertThrowsError(try DatasetManifest.load(fromDirectory: out))
    }

    // MARK: class 14

    func testManifestIsNotWrittenThroughAPlantedSymlink() throws {
        let root = try corpus(4)
        let out = try temporary("rel-out")
        let victim = try temporary("rel-victim") + "/victim.txt"
        try F.write("precious", victim)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // The names the old writer used (and would have followed).
        for name in ["manifest.json", "rejects.jsonl"] {
            try FileManager.default.createSymbolicLink(atPath: "\(out)/\(name).tmp-\(getpid())", withDestinationPath: victim)
        }
        _ = try F.build(F.options(out, shards: 1, annotations: ["\(root)/train.json"], root: root))
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
        XCTAssertNoThrow(try DatasetManifest.load(fromDirectory: out))
        // An exclusive create refuses an existing name instead of following it.
        XCTAssertThrowsError(try FileOps.writeSynced([1], to: "\(out)/manifest.json.tmp-\(getpid())", exclusive: true))
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
    }

    // MARK: class 15

    func testSecondBuilderOnTheSameFolderIsRefused() throws {
        let root = try corpus(4)
        let out = try temporary("rel-out")
        // The lock excludes other processes (objects of one process share it), so another process
        // holds it here: util-linux flock(1) on the same lock file, as a second builder would.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["--no-fork", "\(out)/\(FolderLock.fileName)", "sleep", "60"]  // no fork: terminate() ends the holder
        try holder.run()
        defer { if holder.isRunning { holder.terminate(); holder.waitUntilExit() } }
        var held = false
        for _ in 0..<200 where !held {  // wait (at most 10 s) until the child has the lock
            do { try FolderLock(folder: out, purpose: "probe").release(); usleep(50_000) } catch { held = true }
        }
        XCTAssertTrue(held, "flock(1) never took the lock")
        XCTAssertThrowsError(try F.build(F.options(out, shards: 1, annotations: ["\(root)/train.json"], root: root))) { e in
            // flock(1) writes no "pid N on HOST" line, so the holder is "another process".
            XCTAssertTrue("\(e)".contains("\(out) is in use by another process"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(out)/manifest.json"))
        holder.terminate()
        holder.waitUntilExit()
        XCTAssertEqual(try F.build(F.options(out, shards: 1, annotations: ["\(root)/train.json"], root: root)).totalRecords, 4)
    }

    // MARK: class 18

    func testSymlinkedDuplicateZeroByteTarAndLoneSurrogate() throws {
        let root = try corpus(4)
        XCTAssertEqual(symlink("1.jpg", "\(root)/img/alias.jpg"), 0)
        XCTAssertEqual(link("\(root)/img/2.jpg", "\(root)/img/hard.jpg"), 0)
        let json = """
        [{"image": "img/0.jpg", "caption": "zero"}, {"image": "img/1.jpg", "caption": "one"},
         {"image": "img/2.jpg", "caption": "two"}, {"image": "img/alias.jpg", "caption": "one"},
         {"image": "img/hard.jpg", "caption": "two again"}, {"image": "img/3.jpg", "caption": "bad \\ud800 text"}]
        """
        try F.write(json, "\(root)/dups.json")
        try F.write([UInt8](), "\(root)/tars/empty.tar")
        try F.write([UInt8](repeating: 0, count: 1024), "\(root)/tars/nomembers.tar")     // valid, but holds nothing
        let out = try temporary("rel-out")
        var o = F.options(out, shards: 1, annotations: ["\(root)/dups.json"], tars: ["\(root)/tars"], root: root)
        o.maxRejectFraction = 1
        let report = try F.build(o)
        XCTAssertEqual(report.totalRecords, 3)                     // 0, 1, 2 (with "two again" merged)
        let rejects = try F.rejects(in: out)
        XCTAssertTrue(rejects.contains { $0.item == "img/alias.jpg" && $0.reason == .duplicate && $0.detail.contains("link") }, "\(rejects)")
        XCTAssertTrue(rejects.contains { $0.item == "img/3.jpg" && $0.reason == .captionNotUTF8 && $0.detail.contains("entry 5") }, "\(rejects)")
        XCTAssertTrue(rejects.contains { $0.source.hasSuffix("empty.tar") && $0.detail.contains("0 bytes") }, "\(rejects)")
        XCTAssertTrue(rejects.contains { $0.source.hasSuffix("nomembers.tar") && $0.detail.contains("no samples") }, "\(rejects)")
        XCTAssertEqual(try F.records(in: out)["dups.json:2"]?.captions, ["two", "two again"])
        XCTAssertTrue(try XCTUnwrap(report.failure).contains("empty.tar"))    // a lost source fails the build
    }
}

/// The loader's view of a dataset folder (manifest checks included).
enum ShardLoaderCheck {
    static func listing(_ dir: String) throws -> ShardListing { try ShardListing.read(directory: dir) }
}

import Foundation
import XCTest

/// Issue 15 through the `elip` executable: damaged shards in `train` and `inspect-dataset` (class 1),
/// escaped captions (14), the folder lock (15), lost sources and the flag that allows them (6).
final class ReliabilityDatasetCommandTests: XCTestCase {
    /// A small built dataset (synthetic scenes) and its folder.
    func built(_ dir: URL, images: Int = 24, extraCaption: String? = nil) throws -> (syn: String, out: String) {
        let syn = dir.appendingPathComponent("syn").path, out = dir.appendingPathComponent("shards").path
        let s = try CLI.run(["synth", "--out", syn, "--images", "\(images)", "--size", "32", "--test-fraction", "0", "--quiet"])
        XCTAssertEqual(s.status, 0, s.stderr)
        var annotations = syn + "/train.json"
        if let extraCaption {
            // A record of its own (a copy of image 1), so that its first caption is the one given.
            try FileManager.default.copyItem(atPath: syn + "/images/000001.jpg", toPath: syn + "/images/extra.jpg")
            let train = try String(contentsOfFile: annotations, encoding: .utf8)
            annotations = syn + "/extra.json"
            try train.replacingOccurrences(of: "\n]\n", with: ",\n{\"image\": \"images/extra.jpg\", \"caption\": \(extraCaption)}\n]\n")
                .write(toFile: annotations, atomically: true, encoding: .utf8)
        }
        let b = try CLI.run(["build-dataset", "--annotations", annotations, "--image-root", syn, "--out", out, "--shards", "2",
                             "--image-size", "32", "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr + b.stdout)
        return (syn, out)
    }

    func testTruncatedShardIsSkippedInTrainAndAnErrorInInspect() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, out) = try built(dir)
        let data = out + "/shard-00001-of-00002/data.mdb"
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: data)[.size] as? NSNumber).intValue
        XCTAssertEqual(truncate(data, off_t(size / 2)), 0)

        let vocab = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs").path
        let run = dir.appendingPathComponent("run").path
        let t = try CLI.run(["train", "--config", vocab + "/debug.yaml", "--vocab", vocab + "/synthetic-vocab.txt", "--data", out,
                             "--out", run, "--max-steps", "2", "--batch-size", "4"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("shard-00001-of-00002: damaged") && t.stderr.contains("truncated"), t.stderr)
        let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"data_records_in_damaged_shards\":"), metrics)

        let i = try CLI.run(["inspect-dataset", out, "--show", "24", "--out", dir.appendingPathComponent("s.png").path])
        XCTAssertEqual(i.status, 1, i.stdout + i.stderr)
        XCTAssertTrue(i.stdout.contains("shard-00001-of-00002: data.mdb is"), i.stdout)
        let v = try CLI.run(["inspect-dataset", out, "--verify", "--show", "0"])
        XCTAssertEqual(v.status, 1, v.stdout + v.stderr)
    }

    func testInspectEscapesControlCharactersInCaptions() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A caption that would turn the terminal red and set its title.
        let (_, out) = try built(dir, images: 2, extraCaption: "\"evil \\u001b[31mred\\u001b]0;title\\u0007 caption\"")
        let i = try CLI.run(["inspect-dataset", out, "--show", "3", "--out", dir.appendingPathComponent("s.png").path])
        XCTAssertEqual(i.status, 0, i.stdout + i.stderr)
        XCTAssertFalse(i.stdout.utf8.contains(0x1B), "raw ESC printed")
        XCTAssertFalse(i.stdout.utf8.contains(0x07), "raw BEL printed")
        XCTAssertTrue(i.stdout.contains("evil \\u{1B}[31mred"), i.stdout)
    }

    func testSecondBuilderOnAFolderInUseFailsClearly() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (syn, out) = try built(dir, images: 4)
        // This process holds the folder's lock, as a running build would.
        let fd = open(out + "/.elip.lock", O_RDWR | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        _ = "pid \(getpid()) on test\n".withCString { pwrite(fd, $0, strlen($0), 0) }
        let manifest = try Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json"))
        let b = try CLI.run(["build-dataset", "--annotations", syn + "/train.json", "--image-root", syn, "--out", out,
                             "--shards", "2", "--image-size", "32", "--quiet"])
        XCTAssertNotEqual(b.status, 0)
        XCTAssertTrue(b.stderr.contains("in use by pid \(getpid())"), b.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")), manifest)
    }

    func testLostSourceFailsTheBuildUnlessAllowed() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (syn, _) = try built(dir, images: 8)
        let help = try CLI.run(["build-dataset", "--help"])
        XCTAssertTrue(help.stdout.contains("--allow-lost-sources"), help.stdout)
        try FileManager.default.createDirectory(atPath: syn + "/tars", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: syn + "/tars/empty.tar", contents: Data())
        let args = ["build-dataset", "--annotations", syn + "/train.json", "--image-root", syn, "--tar-shards", syn + "/tars",
                    "--out", dir.appendingPathComponent("o").path, "--shards", "1", "--image-size", "32", "--quiet"]
        let failed = try CLI.run(args)
        XCTAssertEqual(failed.status, 1, failed.stdout + failed.stderr)
        XCTAssertTrue(failed.stderr.contains("empty.tar") && failed.stderr.contains("lost entirely"), failed.stderr)
        let allowed = try CLI.run(args + ["--allow-lost-sources", "--max-reject-fraction", "0.5"])
        XCTAssertEqual(allowed.status, 0, allowed.stdout + allowed.stderr)
        XCTAssertTrue(allowed.stdout.contains("failed source"), allowed.stdout)
    }
}

import Foundation
import XCTest

/// synth -> build-dataset -> inspect-dataset --verify through the `elip` executable.
final class DatasetCommandTests: XCTestCase {
    func testSynthBuildInspectEndToEnd() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let syn = dir.appendingPathComponent("syn").path, out = dir.appendingPathComponent("shards").path

        let s = try CLI.run(["synth", "--out", syn, "--images", "20", "--size", "64", "--seed", "7", "--test-fraction", "0.2"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("train.json 16, test.json 4"), s.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: syn + "/images/000020.jpg"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: syn + "/masks/000001.png"))

        // One broken entry (a missing file) among 21: skipped, counted and listed.
        let train = try String(contentsOfFile: syn + "/train.json", encoding: .utf8)
        let withBroken = train.replacingOccurrences(of: "\n]\n", with: ",\n{\"image\": \"images/none.jpg\", \"caption\": \"gone\"}\n]\n")
        try withBroken.write(toFile: syn + "/train-broken.json", atomically: true, encoding: .utf8)

        let b = try CLI.run(["build-dataset", "--annotations", syn + "/train-broken.json", syn + "/test.json",
                             "--image-root", syn, "--out", out, "--shards", "3", "--image-size", "32", "--workers", "2",
                             "--max-reject-fraction", "0.1"])
        XCTAssertEqual(b.status, 0, b.stderr + b.stdout)
        XCTAssertTrue(b.stdout.contains("built 20 records in 3 shards"), b.stdout)
        XCTAssertTrue(b.stdout.contains("missing_file 1"), b.stdout)
        XCTAssertTrue(b.stderr.contains("build: 21/21 images"), b.stderr)        // plain progress lines (not a terminal)
        let rejects = try String(contentsOfFile: out + "/rejects.jsonl", encoding: .utf8)
        XCTAssertTrue(rejects.contains("\"item\": \"images/none.jpg\", \"reason\": \"missing_file\""), rejects)

        let sheet = dir.appendingPathComponent("sheet.png").path
        let i = try CLI.run(["inspect-dataset", out, "--verify", "--show", "6", "--out", sheet])
        XCTAssertEqual(i.status, 0, i.stderr + i.stdout)
        XCTAssertTrue(i.stdout.contains("records: 20 in 3 shards"), i.stdout)
        XCTAssertTrue(i.stdout.contains("per image mean 4.00"), i.stdout)
        XCTAssertTrue(i.stdout.contains("verify: OK (20 records checked in 3 shards)"), i.stdout)
        let png = try Data(contentsOf: URL(fileURLWithPath: sheet))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])

        // Two broken entries of 22 (9%) exceed the default --max-reject-fraction 0.05: exit status 1.
        let twoBroken = withBroken.replacingOccurrences(of: "\n]\n", with: ",\n{\"image\": \"../escape.jpg\", \"caption\": \"out\"}\n]\n")
        try twoBroken.write(toFile: syn + "/train-broken2.json", atomically: true, encoding: .utf8)
        let f = try CLI.run(["build-dataset", "--annotations", syn + "/train-broken2.json", "--image-root", syn,
                             "--out", dir.appendingPathComponent("strict").path, "--shards", "1", "--quiet"])
        XCTAssertEqual(f.status, 1, f.stdout)
        XCTAssertTrue(f.stderr.contains("more than --max-reject-fraction"), f.stderr)

        // A damaged shard fails verification with a clear message and exit status 1.
        let data = out + "/shard-00002-of-00003/data.mdb"
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: data)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: data))
        let v = try CLI.run(["inspect-dataset", out, "--verify", "--show", "0"])
        XCTAssertEqual(v.status, 1)
        XCTAssertTrue(v.stdout.contains("verify: FAILED") && v.stdout.contains("shard-00002-of-00003: data.mdb checksum"), v.stdout)

        // Malformed JSON: reported with file and byte offset.
        try "[{\"image\": \"a.jpg\", \"caption\": \"x\"} {}]".write(toFile: syn + "/bad.json", atomically: true, encoding: .utf8)
        let m = try CLI.run(["build-dataset", "--annotations", syn + "/bad.json", syn + "/test.json", "--image-root", syn,
                             "--out", dir.appendingPathComponent("m").path, "--shards", "1", "--quiet", "--max-reject-fraction", "1"])
        XCTAssertEqual(m.status, 1, m.stderr)            // a lost source fails the build unless allowed
        XCTAssertTrue(m.stderr.contains("bad.json: malformed JSON at byte 36 (line 1, column 37)"), m.stderr)
        XCTAssertTrue(m.stderr.contains("--allow-lost-sources"), m.stderr)
    }
}

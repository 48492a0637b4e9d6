import Foundation
import XCTest

/// Issue 15, class 14 (scripts): cluster/launch.sh refuses non-integer counts before any
/// arithmetic evaluates them (no command substitution runs), and scripts/demo.sh hands paths to
/// Python as arguments and survives spaces, quotes and `$(...)` in them.
final class ReliabilityScriptTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLI.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func bash(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = arguments
        p.currentDirectoryURL = Tiny.repo
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testScriptsParse() throws {
        for script in ["scripts/demo.sh", "scripts/compare.sh", "cluster/launch.sh"] {
            let r = try bash(["-n", script])
            XCTAssertEqual(r.status, 0, "\(script): \(r.output)")
            // Python code with shell expansions inside it runs whatever a path contains.
            let text = try String(contentsOf: Tiny.repo.appendingPathComponent(script), encoding: .utf8)
            XCTAssertNil(text.range(of: #"python3 -c "[^"]*\$"#, options: .regularExpression), "\(script) interpolates shell values into python3 -c source")
        }
    }

    func testLaunchRefusesCountsThatAreNotPositiveIntegers() throws {
        let hosts = tmp.appendingPathComponent("hosts").path
        try "localhost slots=4\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        let elip = tmp.appendingPathComponent("elip").path  // never started: --dry-run
        try "#!/bin/sh\nexit 0\n".write(toFile: elip, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(elip, 0o755), 0)
        let marker = tmp.appendingPathComponent("INJECTED").path
        let evil = ["a[$(touch \(marker))]", "x[`touch \(marker)`]", "0", "-1", "1+1", "", "02", "2; touch \(marker)", "99999999"]
        for option in ["--ranks-per-node", "--threads-per-rank"] {
            for value in evil {
                let r = try bash(["cluster/launch.sh", "--hostfile", hosts, option, value, "--elip", elip, "--dry-run", "--", "train"])
                XCTAssertEqual(r.status, 2, "\(option) '\(value)': \(r.output)")
                XCTAssertTrue(r.output.contains("launch.sh: \(option) must be a positive integer, got '\(value)'"), r.output)
                XCTAssertFalse(r.output.contains("+ mpirun"), "\(option) '\(value)' reached the mpirun line")
                XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "\(option) '\(value)' ran a command")
            }
        }
        let ok = try bash(["cluster/launch.sh", "--hostfile", hosts, "--ranks-per-node", "2", "--threads-per-rank", "3", "--elip", elip, "--dry-run", "--", "train"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(ok.output.contains("-np 2 -x ELIP_THREADS=3"), ok.output)
        let missing = try bash(["cluster/launch.sh", "--hostfile"])
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("--hostfile needs a value"), missing.output)
        let empty = tmp.appendingPathComponent("empty-hosts").path
        try "# no hosts\n\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let none = try bash(["cluster/launch.sh", "--hostfile", empty, "--elip", elip, "--dry-run", "--", "train"])
        XCTAssertEqual(none.status, 2, none.output)
        XCTAssertTrue(none.output.contains("lists no hosts"), none.output)
    }

    /// demo.sh's step that picks the first held-out image and caption (between its
    /// `demo-first-pair` markers), run with an output folder and names full of shell syntax.
    func testDemoReadsPathsWithSpacesAndQuotes() throws {
        let demo = try String(contentsOf: Tiny.repo.appendingPathComponent("scripts/demo.sh"), encoding: .utf8)
        let lines = demo.components(separatedBy: "\n")
        let begin = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("# demo-first-pair begin") })
        let end = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("# demo-first-pair end") })
        let marker = tmp.appendingPathComponent("INJECTED").path
        let out = tmp.appendingPathComponent("out dir 'a' \"b\" $(touch \(marker)) `touch \(marker)`").path
        try FileManager.default.createDirectory(atPath: out + "/corpus", withIntermediateDirectories: true)
        let image = "images/my image 'one' \"two\" $(touch \(marker)).jpg", caption = "a red  circle; rm -rf / $(touch \(marker))"
        try JSONSerialization.data(withJSONObject: [["image": image, "caption": [caption, "other"]]])
            .write(to: URL(fileURLWithPath: out + "/corpus/test.json"))
        let snippet = lines[begin...end].joined(separator: "\n") + "\nprintf '%s\\n%s\\n' \"$IMG\" \"$CAP\"\n"
        let script = tmp.appendingPathComponent("snippet.sh").path
        try snippet.write(toFile: script, atomically: true, encoding: .utf8)
        let r = try bash(["-euo", "pipefail", script], environment: ["OUT": out])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output, image + "\n" + caption + "\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "a path ran a command")
    }
}

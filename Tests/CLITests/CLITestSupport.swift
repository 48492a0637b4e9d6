import Foundation
import XCTest

/// Runs the built `elip` executable (next to the test bundle) and captures its output.
struct ElipRun {
    let status: Int32
    let stdout: String
    let stderr: String
}

enum CLI {
    static var executable: URL {
        // .build/<config>/elipPackageTests.xctest -> .build/<config>/elip
        var dir = Bundle(for: BundleToken.self).bundleURL.deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("elip").path) {
            dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        }
        return dir.appendingPathComponent("elip")
    }

    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                    unsetting: [String] = []) throws -> ElipRun {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        for k in unsetting { env[k] = nil }
        p.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return ElipRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// ../shared (reference data). Tests that need it skip with a message when absent.
    static func shared(_ relative: String) throws -> String {
        var root = ProcessInfo.processInfo.environment["ELIP_SHARED"]
        if root == nil {
            let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            root = repo.deletingLastPathComponent().appendingPathComponent("shared").path
        }
        let p = (root! as NSString).appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: p) else {
            throw XCTSkip("needs ../shared/\(relative) (reference data of the official code); not present")
        }
        return p
    }

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("elip-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }
}

private final class BundleToken {}

import Foundation
import XCTest

/// Locates ../shared (reference outputs of the official code). Tests that need it skip with a
/// message when it is absent, as in a user's fresh clone.
enum SharedData {
    static var root: String? {
        if let env = ProcessInfo.processInfo.environment["ELIP_SHARED"], FileManager.default.fileExists(atPath: env) { return env }
        // <repo>/Tests/ELIPModelTests/SharedData.swift -> <repo>/../shared
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = repo.deletingLastPathComponent().appendingPathComponent("shared").path
        return FileManager.default.fileExists(atPath: shared) ? shared : nil
    }

    static func path(_ relative: String) throws -> String {
        guard let root else { throw XCTSkip("needs ../shared/\(relative) (reference data of the official code); not present") }
        let p = (root as NSString).appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("needs \(p); not present") }
        return p
    }
}

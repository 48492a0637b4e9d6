import Foundation
import XCTest
import Safetensors

/// A fresh directory under the system temp dir, removed by `removeTemporaryDirectory`.
func makeTemporaryDirectory() throws -> String {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("safetensors-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

func removeTemporaryDirectory(_ path: String) {
    try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    try? FileManager.default.removeItem(atPath: path)
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A file made of an explicit length prefix (default: the header's length), header text and data.
func craftFile(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = declaredLength ?? UInt64(h.count)
    return withUnsafeBytes(of: n.littleEndian) { Array($0) } + h + data
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// The shared reference directory: `$ELIP_SHARED`, else `<repo root>/../shared`; skips the test
/// when neither exists (a fresh clone has no shared/).
func sharedDirectory(file: StaticString = #filePath) throws -> String {
    if let env = ProcessInfo.processInfo.environment["ELIP_SHARED"], !env.isEmpty {
        guard FileManager.default.fileExists(atPath: env) else {
            throw XCTSkip("ELIP_SHARED=\(env) does not exist; this test needs the shared reference data")
        }
        return env
    }
    // <repo>/Tests/SafetensorsTests/TestSupport.swift -> <repo>/../shared
    let repo = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let shared = repo.deletingLastPathComponent().appendingPathComponent("shared").standardizedFileURL.path
    guard FileManager.default.fileExists(atPath: shared) else {
        throw XCTSkip("this test needs ../shared (reference data next to the repository, or set ELIP_SHARED); not found at \(shared)")
    }
    return shared
}

/// Runs `body`, requires a `SafetensorsError` of `kind` whose message contains every fragment.
func assertSafetensorsError<T>(_ kind: SafetensorsError.Kind, containing fragments: [String],
                               file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, but the call succeeded", file: file, line: line)
    } catch let error as SafetensorsError {
        XCTAssertEqual(error.kind, kind, "message: \(error)", file: file, line: line)
        let message = error.description
        for f in fragments {
            XCTAssertTrue(message.contains(f), "message \"\(message)\" should mention \"\(f)\"", file: file, line: line)
        }
    } catch {
        XCTFail("expected SafetensorsError, got \(type(of: error)): \(error)", file: file, line: line)
    }
}

/// Deterministic generator for the fuzz loop (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Writes one raw-encoded tensor and reads the file back from memory.
func roundTripRaw(_ dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) throws -> SafetensorsFile {
    // The writer keeps the raw pointer, so `serialized` must run inside the closure.
    return try bytes.withUnsafeBytes { raw -> SafetensorsFile in
        var w = SafetensorsWriter()
        try w.add("t", dtype: dtype, shape: shape, rawBytes: raw)
        return try SafetensorsFile(bytes: try w.serialized())
    }
}

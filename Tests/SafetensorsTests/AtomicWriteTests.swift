#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest
import Safetensors

final class AtomicWriteTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws { directory = try makeTemporaryDirectory() }
    override func tearDown() { removeTemporaryDirectory(directory) }

    private struct ProducerFailure: Error, CustomStringConvertible {
        var description: String { "disk source went away" }
    }

    private func listing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    private func writer(_ value: Float) throws -> SafetensorsWriter {
        var w = SafetensorsWriter(metadata: ["version": "\(value)"])
        try w.add("w", floats: [Float](repeating: value, count: 300_000), shape: [300, 1000])  // > the 1 MB write buffer
        try w.add("temp", floats: [0.07], shape: [])
        return w
    }

    func testAtomicWriteLeavesOnlyTheTarget() throws {
        let path = directory + "/model.safetensors"
        try writer(1).write(to: path)
        XCTAssertEqual(try listing(), ["model.safetensors"])
        XCTAssertEqual(try SafetensorsFile(path: path).floats("w").first, 1)

        try writer(2).write(to: path)  // replace an existing file
        XCTAssertEqual(try listing(), ["model.safetensors"])
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata, ["version": "2.0"])
        XCTAssertEqual(try file.floats("w").allSatisfy { $0 == 2 }, true)
        XCTAssertEqual(try readBytes(path), try writer(2).serialized())
    }

    func testRelativePathInCurrentDirectory() throws {
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(directory))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try writer(3).write(to: "relative.safetensors")
        XCTAssertEqual(try listing(), ["relative.safetensors"])
        XCTAssertEqual(try SafetensorsFile(path: "relative.safetensors").floats("temp"), [0.07])
    }

    /// A source that fails half-way: the old file is untouched and no temporary file remains.
    func testFailedWriteKeepsTheOldFile() throws {
        let path = directory + "/model.safetensors"
        try writer(1).write(to: path)
        let before = try readBytes(path)

        var failing = try writer(5)
        try failing.add("zz.stream", dtype: .f32, shape: [1_000_000]) { emit in
            let chunk = [Float](repeating: 9, count: 100_000)
            try chunk.withUnsafeBytes { try emit($0) }
            try chunk.withUnsafeBytes { try emit($0) }
            throw ProducerFailure()
        }
        assertSafetensorsError(.invalidTensor, containing: [path, "'zz.stream'", "data producer failed", "disk source went away"]) {
            try failing.write(to: path)
        }
        XCTAssertEqual(try listing(), ["model.safetensors"], "no temporary file may remain")
        XCTAssertEqual(try readBytes(path), before, "the old file must be intact")

        var short = try writer(6)
        try short.add("short", dtype: .i64, shape: [4]) { emit in
            try [Int64(1), 2].withUnsafeBytes { try emit($0) }
        }
        assertSafetensorsError(.countMismatch, containing: [path, "'short'", "emitted 16 bytes", "needs 32"]) {
            try short.write(to: path)
        }
        var long = try writer(7)
        try long.add("long", dtype: .i64, shape: [1]) { emit in
            try [Int64(1), 2].withUnsafeBytes { try emit($0) }
        }
        assertSafetensorsError(.countMismatch, containing: [path, "'long'", "more than the 8 bytes"]) {
            try long.write(to: path)
        }
        XCTAssertEqual(try listing(), ["model.safetensors"])
        XCTAssertEqual(try readBytes(path), before)
    }

    func testWriteIntoMissingDirectoryFails() throws {
        let path = directory + "/no/such/dir/model.safetensors"
        assertSafetensorsError(.io, containing: [path, "cannot create temporary file", "No such file"]) {
            try writer(1).write(to: path)
        }
        assertSafetensorsError(.io, containing: [path, "cannot create"]) {
            try writer(1).write(to: path, atomic: false)
        }
    }

    func testWriteIntoReadOnlyDirectoryFailsAndKeepsOldFile() throws {
        if geteuid() == 0 { throw XCTSkip("running as root: permission bits do not stop writes") }
        let path = directory + "/model.safetensors"
        try writer(1).write(to: path)
        let before = try readBytes(path)
        XCTAssertEqual(chmod(directory, 0o555), 0)
        defer { chmod(directory, 0o755) }
        assertSafetensorsError(.io, containing: [path, "Permission denied"]) { try writer(2).write(to: path) }
        XCTAssertEqual(try readBytes(path), before)
        XCTAssertEqual(try listing(), ["model.safetensors"])
    }

    /// Replacing a file by rename leaves readers of the old file (mapped) working.
    func testOpenReaderSurvivesReplacement() throws {
        let path = directory + "/model.safetensors"
        try writer(1).write(to: path)
        let old = try SafetensorsFile(path: path)
        try writer(2).write(to: path)
        XCTAssertEqual(try old.floats("w").first, 1)
        XCTAssertEqual(try SafetensorsFile(path: path).floats("w").first, 2)
    }
}

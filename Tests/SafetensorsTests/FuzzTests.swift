import Foundation
import XCTest
import Safetensors

/// Damaged variants of a valid file must either parse (and then be fully readable) or throw
/// `SafetensorsError`; anything else (a trap, a crash, another error type) fails the run.
final class FuzzTests: XCTestCase {
    private func seedFile() throws -> [UInt8] {
        var w = SafetensorsWriter(metadata: ["format": "pt", "step": "12"])
        try w.add("visual_encoder.pos_embed", floats: (0..<24).map { Float($0) / 7 }, shape: [1, 4, 6])
        try w.add("half", floats: [1, -2, 0.5], shape: [3], as: .f16)
        try w.add("brain", floats: [3, 4], shape: [2], as: .bf16)
        try w.add("double", floats: [1e-3], shape: [], as: .f64)
        try w.add("ids", int64s: [101, 2003, 0], shape: [1, 3])
        try w.add("mask", int64s: [1, 1, 0], shape: [3], as: .bool)
        try w.add("u64", int64s: [5], shape: [1], as: .u64)
        try w.add("empty", floats: [], shape: [0, 3])
        return try w.serialized()
    }

    /// Reads every tensor through every accessor that applies.
    private func exercise(_ file: SafetensorsFile) {
        for e in file.entries {
            _ = try? file.withTensorBytes(e.name) { raw in raw.reduce(0) { $0 &+ Int($1) } }
            if e.dtype.isFloatingPoint {
                _ = try? file.floats(e.name)
                var buffer = [Float](repeating: 0, count: e.elementCount)
                buffer.withUnsafeMutableBufferPointer { p in
                    if let base = p.baseAddress { _ = try? file.copyFloats(e.name, into: base, count: p.count) }
                }
            } else {
                _ = try? file.int64s(e.name)
            }
        }
    }

    private func mutate(_ seed: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var bytes = seed
        let headerEnd = min(bytes.count, 8 + Int(bytes[0]) + Int(bytes[1]) << 8)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:  // truncation anywhere
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
        case 1:  // a few bit flips, mostly in the length prefix and header
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let i = Int.random(in: 0..<headerEnd, using: &rng)
                bytes[i] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
        case 2:  // bit flips anywhere
            for _ in 0..<Int.random(in: 1...16, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
        case 3:  // JSON-significant characters dropped into the header
            let specials = Array("{}[]\",:-0123456789eE.\\u ".utf8)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 8..<headerEnd, using: &rng)] = specials.randomElement(using: &rng)!
            }
        case 4:  // random length prefix
            let n = UInt64.random(in: 0...UInt64(bytes.count + 16), using: &rng)
            withUnsafeBytes(of: n.littleEndian) { for k in 0..<8 { bytes[k] = $0[k] } }
        case 5:  // bit flips in the data buffer only: the file stays valid, values change
            for _ in 0..<Int.random(in: 1...16, using: &rng) where headerEnd < bytes.count {
                let i = Int.random(in: headerEnd..<bytes.count, using: &rng)
                bytes[i] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
        default:  // delete or duplicate a slice of the header (shifts every later offset)
            let a = Int.random(in: 8..<headerEnd, using: &rng)
            let b = min(headerEnd, a + Int.random(in: 1...12, using: &rng))
            if Bool.random(using: &rng) {
                bytes.removeSubrange(a..<b)
            } else {
                bytes.insert(contentsOf: bytes[a..<b], at: a)
            }
        }
        return bytes
    }

    func testDamagedFilesParseOrThrowNeverCrash() throws {
        let seed = try seedFile()
        exercise(try SafetensorsFile(bytes: seed))
        var rng = SeededGenerator(seed: 0x5AFE_7E45)
        let directory = try makeTemporaryDirectory()
        defer { removeTemporaryDirectory(directory) }
        // SAFETENSORS_FUZZ_ITERATIONS raises the count for a longer manual run.
        let iterations = ProcessInfo.processInfo.environment["SAFETENSORS_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 600
        var parsed = 0, rejected = 0
        for iteration in 0..<iterations {
            let bytes = mutate(seed, &rng)
            do {
                // Most iterations parse from memory; every tenth goes through a real file and mmap.
                let file: SafetensorsFile
                if iteration % 10 == 0 && iteration < 5000 {
                    let path = "\(directory)/fuzz\(iteration).safetensors"
                    try writeBytes(bytes, to: path)
                    file = try SafetensorsFile(path: path)
                } else {
                    file = try SafetensorsFile(bytes: bytes)
                }
                exercise(file)
                parsed += 1
            } catch is SafetensorsError {
                rejected += 1
            } catch {
                XCTFail("iteration \(iteration): unexpected error type \(type(of: error)): \(error)")
            }
        }
        XCTAssertEqual(parsed + rejected, iterations)
        XCTAssertGreaterThan(rejected, iterations / 6, "the mutations should break most files")
        XCTAssertGreaterThan(parsed, iterations / 12, "data bit flips leave a valid file")
    }
}

import XCTest
import Safetensors

final class RoundTripTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws { directory = try makeTemporaryDirectory() }
    override func tearDown() { removeTemporaryDirectory(directory) }

    /// Every dtype, each as a matrix, a scalar and two zero-size shapes, written from raw bytes
    /// through a real file (mmap path) and read back byte for byte.
    func testAllDTypesIncludingScalarsAndZeroSize() throws {
        let shapes: [[Int]] = [[2, 3], [], [0], [3, 0, 2]]
        var expected: [String: (SafetensorsDType, [Int], [UInt8])] = [:]
        for (d, dtype) in SafetensorsDType.allCases.enumerated() {
            for (s, shape) in shapes.enumerated() {
                let n = shape.reduce(1, *) * dtype.byteSize
                let bytes = (0..<n).map { i -> UInt8 in
                    dtype == .bool ? UInt8((i + d) % 2) : UInt8(truncatingIfNeeded: i &* 37 &+ d &* 11 &+ s)
                }
                expected["\(dtype.rawValue.lowercased()).\(s)"] = (dtype, shape, bytes)
            }
        }
        let path = directory + "/all.safetensors"
        var writer = SafetensorsWriter(metadata: ["format": "test"])
        // Keep every buffer alive until `write` returns: the writer does not copy raw bytes.
        let storage = expected.mapValues { $0.2 }
        var pointers: [UnsafeMutableRawBufferPointer] = []
        defer { pointers.forEach { $0.deallocate() } }
        for (name, (dtype, shape, _)) in expected {
            let p = UnsafeMutableRawBufferPointer.allocate(byteCount: storage[name]!.count, alignment: 8)
            p.copyBytes(from: storage[name]!)
            pointers.append(p)
            try writer.add(name, dtype: dtype, shape: shape, rawBytes: UnsafeRawBufferPointer(p))
        }
        try writer.write(to: path)

        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.entries.count, expected.count)
        XCTAssertEqual(file.metadata, ["format": "test"])
        XCTAssertEqual(file.holes, [])
        XCTAssertEqual(file.headerLength % 8, 0)
        for (name, (dtype, shape, bytes)) in expected {
            let e = try file.entry(name)
            XCTAssertEqual(e.dtype, dtype, name)
            XCTAssertEqual(e.shape, shape, name)
            XCTAssertEqual(e.elementCount, shape.reduce(1, *), name)
            XCTAssertEqual(e.byteCount, bytes.count, name)
            XCTAssertEqual(try file.withTensorBytes(name) { Array($0) }, bytes, name)
            if dtype.isFloatingPoint {
                XCTAssertEqual(try file.floats(name).count, e.elementCount, name)
            } else {
                let ints = try? file.int64s(name)  // U64 patterns may exceed Int64.max
                if dtype != .u64 { XCTAssertEqual(ints?.count, e.elementCount, name) }
            }
        }
        XCTAssertEqual(file["f32.1"]?.shape, [])
        XCTAssertEqual(file["f32.1"]?.elementCount, 1)
        XCTAssertEqual(try file.floats("f32.2"), [])
        XCTAssertEqual(try file.int64s("i64.3"), [])
    }

    func testTypedValuesRoundTrip() throws {
        let floats: [Float] = [0, -0.0, 1.5, -2.25, .infinity, -.infinity, .leastNonzeroMagnitude,
                               .greatestFiniteMagnitude, 3.14159, 1e-30]
        let ints: [Int64] = [0, 1, -1, .max, .min, 42, -100]
        var w = SafetensorsWriter()
        try w.add("f", floats: floats, shape: [2, 5])
        try w.add("nan", floats: [.nan], shape: [])
        try w.add("scalar", floats: [0.07], shape: [])
        try w.add("i", int64s: ints, shape: [7])
        try w.add("i32", int64s: [Int64(Int32.min), 0, Int64(Int32.max)], shape: [3], as: .i32)
        try w.add("u8", int64s: [0, 255], shape: [2], as: .u8)
        try w.add("mask", int64s: [1, 0, 1], shape: [3], as: .bool)
        try w.add("u64", int64s: [Int64.max], shape: [1], as: .u64)
        try w.add("empty", int64s: [], shape: [0, 5])
        let file = try SafetensorsFile(bytes: try w.serialized())
        XCTAssertEqual(try file.floats("f").map(\.bitPattern), floats.map(\.bitPattern))
        XCTAssertTrue(try file.floats("nan")[0].isNaN)
        XCTAssertEqual(try file.floats("scalar"), [0.07])
        XCTAssertEqual(try file.int64s("i"), ints)
        XCTAssertEqual(try file.int64s("i32"), [Int64(Int32.min), 0, Int64(Int32.max)])
        XCTAssertEqual(try file.int64s("u8"), [0, 255])
        XCTAssertEqual(try file.int64s("mask"), [1, 0, 1])
        XCTAssertEqual(try file.int64s("u64"), [Int64.max])
        XCTAssertEqual(try file.int64s("empty"), [])
        XCTAssertEqual(file["i32"]?.dtype, .i32)
        XCTAssertEqual(file["mask"]?.dtype, .bool)

        var values = [Float](repeating: -1, count: 10)
        try values.withUnsafeMutableBufferPointer { try file.copyFloats("f", into: $0.baseAddress!, count: 10) }
        XCTAssertEqual(values.map(\.bitPattern), floats.map(\.bitPattern))
    }

    func testPointerAndProducerSources() throws {
        let big = (0..<100_000).map { Float($0) * 0.5 }  // larger than the writer's chunk and buffer
        let ids: [Int64] = [3, -1, 70_000]
        let path = directory + "/sources.safetensors"
        // Pointer sources must stay valid until `write` returns, so it runs inside both closures.
        try big.withUnsafeBufferPointer { p in
            try ids.withUnsafeBufferPointer { q in
                var w = SafetensorsWriter()
                try w.add("ids64", int64s: q, shape: [3])
                try w.add("ids32", int64s: q, shape: [3], as: .i32)
                assertSafetensorsError(.valueOutOfRange, containing: ["'ids16'", "70000", "I16"]) {
                    try w.add("ids16", int64s: q, shape: [3], as: .i16)
                }
                try w.add("ptr", floats: p, shape: [1000, 100])
                try w.add("ptr16", floats: p, shape: [100_000], as: .bf16)
                try w.add("gen", dtype: .i32, shape: [3, 1000]) { emit in
                    for row in 0..<3 {  // several pieces of different sizes
                        let values = (0..<1000).map { Int32(row * 1000 + $0) }
                        try values.withUnsafeBytes {
                            try emit(UnsafeRawBufferPointer(rebasing: $0[..<4]))
                            try emit(UnsafeRawBufferPointer(rebasing: $0[4...]))
                        }
                    }
                }
                try w.write(to: path)
            }
        }
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(try file.floats("ptr"), big)
        let narrowed = try file.floats("ptr16")
        // BF16 keeps 8 significant bits: the relative rounding error is at most 2^-8.
        let bad = zip(big, narrowed).filter { x, r in r.bitPattern & 0xFFFF != 0 || abs(r - x) > x * 0x1p-8 }
        XCTAssertTrue(bad.isEmpty, "BF16 rounding out of bounds, e.g. \(bad.prefix(3))")
        XCTAssertEqual(try file.int64s("gen"), (0..<3000).map { Int64($0) })
        XCTAssertEqual(try file.int64s("ids64"), ids)
        XCTAssertEqual(try file.int64s("ids32"), ids)
        XCTAssertEqual(file["ids32"]?.dtype, .i32)
    }

    /// Byte-exact agreement with the reference implementation's own serialization tests
    /// (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization, test_empty,
    /// test_serialization_forced_alignement).
    func testBytesMatchReferenceImplementation() throws {
        var w = SafetensorsWriter()
        try w.add("attn.0", floats: [0, 1, 2, 3, 4, 5], shape: [1, 2, 3])
        XCTAssertEqual(try w.serialized(), [
            64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
            116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
            58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
            101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
            0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
        ])

        XCTAssertEqual(try SafetensorsWriter().serialized(), [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
        XCTAssertEqual(try SafetensorsWriter(metadata: ["framework": "pt"]).serialized(), [
            40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
            95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
            116, 34, 125, 125, 32, 32, 32, 32, 32,
        ])

        var aligned = SafetensorsWriter()
        try aligned.add("attn0", floats: [0, 1, 2, 3, 4, 5], shape: [1, 1, 2, 3])
        XCTAssertEqual(try aligned.serialized(), [
            72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
            121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
            91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
            115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
            32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
            160, 64,
        ])
        // The empty file parses too.
        let empty = try SafetensorsFile(bytes: try SafetensorsWriter().serialized())
        XCTAssertEqual(empty.entries.count, 0)
        XCTAssertEqual(empty.dataLength, 0)
    }

    /// Tensors are laid out by dtype alignment (widest first), then by name; the header lists them
    /// in that order; every tensor is naturally aligned in the file; there are no gaps.
    func testLayoutIsSortedAlignedAndContiguous() throws {
        var w = SafetensorsWriter()
        try w.add("z.bf16", floats: [1, 2, 3], shape: [3], as: .bf16)
        try w.add("b.f32", floats: [1], shape: [1])
        try w.add("mask", int64s: [1, 0, 1], shape: [3], as: .bool)
        try w.add("a.f32", floats: [1, 2, 3], shape: [3])
        try w.add("ids", int64s: [7], shape: [1])
        try w.add("a.f16", floats: [1], shape: [1], as: .f16)
        try w.add("B.f32", floats: [], shape: [0])
        try w.add("u8", int64s: [9, 9, 9, 9, 9], shape: [5], as: .u8)
        try w.add("d", floats: [1], shape: [], as: .f64)
        let file = try SafetensorsFile(bytes: try w.serialized())
        XCTAssertEqual(file.names, ["ids", "d", "B.f32", "a.f32", "b.f32", "z.bf16", "a.f16", "u8", "mask"])
        XCTAssertEqual(file.holes, [])
        var cursor = 0
        for e in file.entries {
            XCTAssertEqual(e.dataOffsets.lowerBound, cursor, e.name)
            XCTAssertEqual((file.dataStart + e.dataOffsets.lowerBound) % e.dtype.byteSize, 0, "\(e.name) unaligned")
            cursor = e.dataOffsets.upperBound
        }
        XCTAssertEqual(cursor, file.dataLength)
        // Deterministic: the same tensors added in another order give the same bytes.
        var w2 = SafetensorsWriter()
        try w2.add("d", floats: [1], shape: [], as: .f64)
        try w2.add("u8", int64s: [9, 9, 9, 9, 9], shape: [5], as: .u8)
        try w2.add("B.f32", floats: [], shape: [0])
        try w2.add("a.f16", floats: [1], shape: [1], as: .f16)
        try w2.add("ids", int64s: [7], shape: [1])
        try w2.add("a.f32", floats: [1, 2, 3], shape: [3])
        try w2.add("mask", int64s: [1, 0, 1], shape: [3], as: .bool)
        try w2.add("b.f32", floats: [1], shape: [1])
        try w2.add("z.bf16", floats: [1, 2, 3], shape: [3], as: .bf16)
        XCTAssertEqual(try w.serialized(), try w2.serialized())
    }

    func testNamesAndMetadataWithEscapesAndUnicode() throws {
        let names = ["quote\"name", "back\\slash", "new\nline", "tab\tctl\u{01}", "ünïcødé.权重", "emoji 🙂", ""]
        var w = SafetensorsWriter(metadata: ["format": "pt", "note": "say \"hi\"\n\u{7f}/ ✓", "": "empty key"])
        for (i, n) in names.enumerated() { try w.add(n, floats: [Float(i)], shape: [1]) }
        let file = try SafetensorsFile(bytes: try w.serialized())
        XCTAssertEqual(Set(file.names), Set(names))
        for (i, n) in names.enumerated() { XCTAssertEqual(try file.floats(n), [Float(i)]) }
        XCTAssertEqual(file.metadata, w.metadata)
    }

    func testReaderAcceptsEscapesAndWhitespaceWrittenByOthers() throws {
        let header = """
          { "__metadata__" : { "k\\u00e9y" : "v\\/\\ud83d\\ude00" } ,
            "a\\u0062" : { "shape" : [ 2 ] , "data_offsets" : [ 0 , 8 ], "dtype" : "F32", "extra": [1, {"x": null}] } }\t\r\n
        """
        let file = try SafetensorsFile(bytes: craftFile(header: header, data: littleEndianBytes([Float(1).bitPattern, Float(2).bitPattern])))
        XCTAssertEqual(file.names, ["ab"])
        XCTAssertEqual(try file.floats("ab"), [1, 2])
        XCTAssertEqual(file.metadata, ["kéy": "v/😀"])
    }

    func testAccessorErrorsNameFileTensorAndProblem() throws {
        var w = SafetensorsWriter()
        try w.add("weights", floats: [1, 2, 3], shape: [3])
        try w.add("ids", int64s: [1], shape: [1])
        let allOnes = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { allOnes.deallocate() }
        allOnes.initializeMemory(as: UInt8.self, repeating: 0xFF)
        try w.add("big", dtype: .u64, shape: [1], rawBytes: UnsafeRawBufferPointer(allOnes))
        let path = directory + "/acc.safetensors"
        try w.write(to: path)
        let file = try SafetensorsFile(path: path)
        assertSafetensorsError(.tensorNotFound, containing: [path, "'nope'", "no such tensor"]) { try file.floats("nope") }
        assertSafetensorsError(.tensorNotFound, containing: ["'nope'"]) { try file.withTensorBytes("nope") { _ in () } }
        assertSafetensorsError(.wrongDType, containing: [path, "'ids'", "I64"]) { try file.floats("ids") }
        assertSafetensorsError(.wrongDType, containing: [path, "'weights'", "F32"]) { try file.int64s("weights") }
        assertSafetensorsError(.valueOutOfRange, containing: [path, "'big'", "18446744073709551615", "Int64"]) { try file.int64s("big") }
        var buffer = [Float](repeating: 0, count: 4)
        assertSafetensorsError(.countMismatch, containing: [path, "'weights'", "4", "3 elements"]) {
            try buffer.withUnsafeMutableBufferPointer { try file.copyFloats("weights", into: $0.baseAddress!, count: 4) }
        }
        XCTAssertEqual(buffer, [0, 0, 0, 0], "a rejected copy must not write")
    }

    func testWriterRejectsInvalidTensors() throws {
        var w = SafetensorsWriter()
        try w.add("a", floats: [1], shape: [1])
        assertSafetensorsError(.duplicateName, containing: ["'a'", "already"]) { try w.add("a", floats: [1], shape: [1]) }
        assertSafetensorsError(.invalidTensor, containing: ["__metadata__", "reserved"]) { try w.add("__metadata__", floats: [1], shape: [1]) }
        assertSafetensorsError(.invalidShape, containing: ["'neg'", "negative"]) { try w.add("neg", floats: [], shape: [2, -1]) }
        assertSafetensorsError(.invalidShape, containing: ["'huge'"]) { try w.add("huge", floats: [], shape: [Int.max, 2]) }
        assertSafetensorsError(.countMismatch, containing: ["'c'", "5 values", "6 elements"]) { try w.add("c", floats: [1, 2, 3, 4, 5], shape: [2, 3]) }
        assertSafetensorsError(.wrongDType, containing: ["'x'", "I32"]) { try w.add("x", floats: [1], shape: [1], as: .i32) }
        assertSafetensorsError(.wrongDType, containing: ["'y'", "F32"]) { try w.add("y", int64s: [1], shape: [1], as: .f32) }
        assertSafetensorsError(.valueOutOfRange, containing: ["'u8'", "256", "U8"]) { try w.add("u8", int64s: [1, 256], shape: [2], as: .u8) }
        assertSafetensorsError(.valueOutOfRange, containing: ["'b'", "BOOL"]) { try w.add("b", int64s: [2], shape: [1], as: .bool) }
        assertSafetensorsError(.valueOutOfRange, containing: ["'u64'"]) { try w.add("u64", int64s: [-1], shape: [1], as: .u64) }
        assertSafetensorsError(.countMismatch, containing: ["'r'", "3 bytes", "8"]) {
            try [UInt8](repeating: 0, count: 3).withUnsafeBytes { try w.add("r", dtype: .f32, shape: [2], rawBytes: $0) }
        }
        // Failed adds leave nothing behind: the names are free and only "a" is written.
        XCTAssertEqual(w.count, 1)
        try w.add("c", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        try w.add("x", floats: [1], shape: [1])
        try w.add("u8", int64s: [1, 255], shape: [2], as: .u8)
        XCTAssertEqual(try SafetensorsFile(bytes: try w.serialized()).names, ["a", "c", "x", "u8"])
    }

    func testNonAtomicWriteReplacesContent() throws {
        let path = directory + "/plain.safetensors"
        try writeBytes([UInt8](repeating: 7, count: 10_000), to: path)
        var w = SafetensorsWriter()
        try w.add("x", floats: [1, 2], shape: [2])
        try w.write(to: path, atomic: false)
        XCTAssertEqual(try readBytes(path), try w.serialized())
        XCTAssertEqual(try SafetensorsFile(path: path).floats("x"), [1, 2])
    }
}

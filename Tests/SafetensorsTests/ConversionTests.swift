import XCTest
import Safetensors

/// Float conversions of the narrow formats, exercised through the public API: raw bits are written
/// with `rawBytes` and decoded by `floats`, and floats written `as:` a narrow dtype are inspected
/// with `withTensorBytes`.
final class ConversionTests: XCTestCase {
    private func decode(_ dtype: SafetensorsDType, _ bits: [UInt16]) throws -> [Float] {
        let bytes = dtype.byteSize == 1 ? bits.map { UInt8($0) } : littleEndianBytes(bits)
        return try roundTripRaw(dtype, shape: [bits.count], bytes: bytes).floats("t")
    }

    private func encode(_ values: [Float], as dtype: SafetensorsDType) throws -> [UInt16] {
        var w = SafetensorsWriter()
        try w.add("t", floats: values, shape: [values.count], as: dtype)
        let file = try SafetensorsFile(bytes: try w.serialized())
        return try file.withTensorBytes("t") { raw in
            (0..<values.count).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        }
    }

    private func assertSameFloat(_ a: Float, _ b: Float, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        if b.isNaN {
            XCTAssertTrue(a.isNaN, "\(context): got \(a), expected NaN", file: file, line: line)
        } else {
            XCTAssertEqual(a.bitPattern, b.bitPattern, "\(context): got \(a), expected \(b)", file: file, line: line)
        }
    }

    func testF16DecodeHandPickedValues() throws {
        let cases: [(UInt16, Float)] = [
            (0x0000, 0), (0x8000, -0.0), (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504),
            (0x0400, 0x1p-14),            // smallest normal
            (0x0001, 0x1p-24),            // smallest subnormal
            (0x03FF, 1023 * 0x1p-24),     // largest subnormal
            (0x8001, -0x1p-24),
            (0x3555, 0.333251953125), (0x2E66, 0.0999755859375),
            (0x7C00, .infinity), (0xFC00, -.infinity),
            (0x7E00, .nan), (0x7C01, .nan), (0xFFFF, .nan),
        ]
        let got = try decode(.f16, cases.map(\.0))
        for (i, c) in cases.enumerated() {
            assertSameFloat(got[i], c.1, "F16 0x\(String(c.0, radix: 16))")
        }
    }

    func testF16EncodeRoundsToNearestEven() throws {
        let cases: [(Float, UInt16)] = [
            (1, 0x3C00), (-2, 0xC000), (-0.0, 0x8000), (0.1, 0x2E66),
            (65504, 0x7BFF), (65519, 0x7BFF),
            (65520, 0x7C00),              // halfway to 2^16: ties to even = infinity
            (1e6, 0x7C00), (-1e6, 0xFC00), (.infinity, 0x7C00), (-.infinity, 0xFC00),
            (1 + 0x1p-11, 0x3C00),        // tie, even is down
            (1 + 3 * 0x1p-11, 0x3C02),    // tie, even is up
            (1 + 0x1p-11 + 0x1p-20, 0x3C01),
            (0x1p-14, 0x0400), (0x1p-24, 0x0001),
            (0x1p-25, 0x0000),            // tie between 0 and the smallest subnormal
            (0x1p-25 * (1 + 0x1p-23), 0x0001),
            (3 * 0x1p-25, 0x0002),        // tie, even is up
            (0x1p-14 - 0x1p-25, 0x0400),  // tie rounds up into the normal range
            (-0x1p-24, 0x8001),
            (.leastNonzeroMagnitude, 0x0000), (-.leastNonzeroMagnitude, 0x8000),
        ]
        let got = try encode(cases.map(\.0), as: .f16)
        for (i, c) in cases.enumerated() {
            XCTAssertEqual(got[i], c.1, "F16 of \(c.0): got 0x\(String(got[i], radix: 16))")
        }
        let nan = try encode([.nan, -.nan, Float(bitPattern: 0x7F80_0001)], as: .f16)
        for bits in nan {
            XCTAssertEqual(bits & 0x7C00, 0x7C00)
            XCTAssertNotEqual(bits & 0x03FF, 0, "NaN must stay NaN, got 0x\(String(bits, radix: 16))")
        }
    }

    #if !(os(macOS) && arch(x86_64))  // Float16 is unavailable on Intel Macs
    func testF16AgainstSwiftFloat16Exhaustively() throws {
        let all = (0...UInt16.max).map { $0 }
        let decoded = try decode(.f16, all)
        for bits in all {
            assertSameFloat(decoded[Int(bits)], Float(Float16(bitPattern: bits)), "F16 0x\(String(bits, radix: 16))")
        }
        // Encoding: every half value, every midpoint between neighbours (ties), and random floats.
        var rng = SeededGenerator(seed: 16)
        var inputs: [Float] = decoded.filter { !$0.isNaN }
        for bits in UInt16(0)..<0x7BFF {
            let lo = Float(Float16(bitPattern: bits)), hi = Float(Float16(bitPattern: bits + 1))
            inputs.append((lo + hi) / 2)  // exact: a half has 11 significant bits
            inputs.append(-(lo + hi) / 2)
        }
        for _ in 0..<100_000 { inputs.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        inputs = inputs.filter { !$0.isNaN }
        let encoded = try encode(inputs, as: .f16)
        for (i, x) in inputs.enumerated() where encoded[i] != Float16(x).bitPattern {
            XCTFail("F16 of \(x) (0x\(String(x.bitPattern, radix: 16))): got 0x\(String(encoded[i], radix: 16)), Float16 gives 0x\(String(Float16(x).bitPattern, radix: 16))")
            break
        }
    }
    #endif

    func testBF16DecodeAndEncode() throws {
        let decodeCases: [(UInt16, Float)] = [
            (0x3F80, 1), (0xC000, -2), (0x8000, -0.0), (0x7F80, .infinity), (0xFF80, -.infinity),
            (0x7FC0, .nan), (0x0001, 0x1p-133), (0x7F7F, Float(bitPattern: 0x7F7F_0000)),
        ]
        let got = try decode(.bf16, decodeCases.map(\.0))
        for (i, c) in decodeCases.enumerated() { assertSameFloat(got[i], c.1, "BF16 0x\(String(c.0, radix: 16))") }

        let encodeCases: [(Float, UInt16)] = [
            (1, 0x3F80), (-0.0, 0x8000), (.pi, 0x4049),
            (1 + 0x1p-8, 0x3F80), (1 + 3 * 0x1p-8, 0x3F82), (1 + 0x1p-8 + 0x1p-20, 0x3F81),
            (.greatestFiniteMagnitude, 0x7F80), (.infinity, 0x7F80), (-.infinity, 0xFF80),
            (.leastNonzeroMagnitude, 0x0000),
        ]
        let enc = try encode(encodeCases.map(\.0), as: .bf16)
        for (i, c) in encodeCases.enumerated() { XCTAssertEqual(enc[i], c.1, "BF16 of \(c.0)") }
        let nan = try encode([.nan, Float(bitPattern: 0x7F80_0001)], as: .bf16)
        for bits in nan { XCTAssertTrue(Float(bitPattern: UInt32(bits) << 16).isNaN, "BF16 NaN became 0x\(String(bits, radix: 16))") }
    }

    func testF8Decode() throws {
        let e4m3: [(UInt16, Float)] = [
            (0x00, 0), (0x80, -0.0), (0x38, 1), (0xB8, -1), (0x7E, 448), (0x01, 0x1p-9), (0x08, 0x1p-6),
            (0x7F, .nan), (0xFF, .nan), (0x78, 256),
        ]
        let a = try decode(.f8e4m3, e4m3.map(\.0))
        for (i, c) in e4m3.enumerated() { assertSameFloat(a[i], c.1, "F8_E4M3 0x\(String(c.0, radix: 16))") }
        let e5m2: [(UInt16, Float)] = [
            (0x3C, 1), (0x7B, 57344), (0x7C, .infinity), (0xFC, -.infinity), (0x7D, .nan), (0x01, 0x1p-16),
        ]
        let b = try decode(.f8e5m2, e5m2.map(\.0))
        for (i, c) in e5m2.enumerated() { assertSameFloat(b[i], c.1, "F8_E5M2 0x\(String(c.0, radix: 16))") }
    }

    func testF64ToFloatRoundsToNearest() throws {
        let values: [Double] = [1 + 0x1p-24, 1 + 3 * 0x1p-24, 1e300, -1e-50, 0.1, -.infinity, .nan]
        let expected: [Float] = [1, 1 + 0x1p-22, .infinity, -0.0, 0.1, -.infinity, .nan]
        let file = try roundTripRaw(.f64, shape: [values.count], bytes: littleEndianBytes(values.map(\.bitPattern)))
        let got = try file.floats("t")
        for i in values.indices { assertSameFloat(got[i], expected[i], "F64 \(values[i])") }

        // Float -> F64 on write is exact.
        var w = SafetensorsWriter()
        try w.add("d", floats: [0.1, -3, .leastNonzeroMagnitude], shape: [3], as: .f64)
        let back = try SafetensorsFile(bytes: try w.serialized())
        XCTAssertEqual(back["d"]?.dtype, .f64)
        XCTAssertEqual(try back.floats("d"), [0.1, -3, .leastNonzeroMagnitude])
    }
}

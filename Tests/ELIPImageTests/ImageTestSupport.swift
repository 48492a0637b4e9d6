import Foundation
import XCTest
@testable import ELIPImage

// Helpers shared by the image test suites.

/// Deterministic pseudo-random image, same generator as the Python script that produced the
/// Pillow reference arrays below (LCG: s = (s * 1103515245 + 12345) mod 2^31, byte = (s >> 16) & 255).
func lcgImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var s = seed
    var px = [UInt8]()
    px.reserveCapacity(width * height * 3)
    for _ in 0..<(width * height * 3) {
        s = (s &* 1103515245 &+ 12345) % (1 << 31)
        px.append(UInt8((s >> 16) & 255))
    }
    return try! RGBImage(width: width, height: height, pixels: px)
}

/// A smooth colour gradient (JPEG-friendly).
func gradientImage(width: Int, height: Int) -> RGBImage {
    var img = try! RGBImage(width: width, height: height)
    for y in 0..<height {
        for x in 0..<width {
            let r = UInt8(x * 255 / max(1, width - 1))
            let g = UInt8(y * 255 / max(1, height - 1))
            let b = UInt8((x + y) * 255 / max(1, width + height - 2))
            img.setPixel(x: x, y: y, RGB(r, g, b))
        }
    }
    return img
}

func psnr(_ a: RGBImage, _ b: RGBImage) -> Double {
    precondition(a.width == b.width && a.height == b.height)
    var se = 0.0
    for i in 0..<a.pixels.count {
        let d = Double(a.pixels[i]) - Double(b.pixels[i])
        se += d * d
    }
    let mse = se / Double(a.pixels.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}

func close(_ p: RGB?, _ q: RGB, tol: Int, file: StaticString = #filePath, line: UInt = #line) {
    guard let p else { return XCTFail("pixel out of bounds", file: file, line: line) }
    let ok = abs(Int(p.r) - Int(q.r)) <= tol && abs(Int(p.g) - Int(q.g)) <= tol && abs(Int(p.b) - Int(q.b)) <= tol
    XCTAssertTrue(ok, "\(p) is not within \(tol) of \(q)", file: file, line: line)
}

/// Inserts an APP1 Exif segment carrying `orientation` right after SOI.
func withExif(_ jpeg: [UInt8], orientation: Int, bigEndian: Bool) -> [UInt8] {
    var tiff: [UInt8]
    let o = UInt8(orientation)
    if bigEndian {
        tiff = [0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,   // header, IFD0 at 8
                0x00, 0x01,                                       // 1 entry
                0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, o, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00]                           // no next IFD
    } else {
        tiff = [0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00,
                0x01, 0x00,
                0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, o, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00]
    }
    let payload: [UInt8] = Array("Exif".utf8) + [0, 0] + tiff
    let len = payload.count + 2
    let segment: [UInt8] = [0xFF, 0xE1, UInt8(len >> 8), UInt8(len & 0xFF)] + payload
    return Array(jpeg[0..<2]) + segment + Array(jpeg[2...])
}

/// CRC-32 (PNG / zlib polynomial).
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }
    return c ^ 0xFFFF_FFFF
}

/// Offset of the first occurrence of marker FF `m`.
func markerOffset(_ data: [UInt8], _ m: UInt8) -> Int? {
    var i = 2
    while i + 1 < data.count {
        if data[i] == 0xFF && data[i + 1] == m { return i }
        i += 1
    }
    return nil
}

func assertImageError(_ expression: @autoclosure () throws -> Any, file: StaticString = #filePath,
                                  line: UInt = #line, _ check: (ImageError) -> Bool) {
    do {
        _ = try expression()
        XCTFail("expected an ImageError", file: file, line: line)
    } catch let e as ImageError {
        XCTAssertTrue(check(e), "unexpected error \(e)", file: file, line: line)
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

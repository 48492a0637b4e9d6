import Foundation
import XCTest
@testable import ELIPImage

// MARK: - helpers (fileprivate: the test target is shared with other suites)

/// Deterministic pseudo-random image, same generator as the Python script that produced the
/// Pillow reference arrays below (LCG: s = (s * 1103515245 + 12345) mod 2^31, byte = (s >> 16) & 255).
fileprivate func lcgImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
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
fileprivate func gradientImage(width: Int, height: Int) -> RGBImage {
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

fileprivate func psnr(_ a: RGBImage, _ b: RGBImage) -> Double {
    precondition(a.width == b.width && a.height == b.height)
    var se = 0.0
    for i in 0..<a.pixels.count {
        let d = Double(a.pixels[i]) - Double(b.pixels[i])
        se += d * d
    }
    let mse = se / Double(a.pixels.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}

fileprivate func close(_ p: RGB?, _ q: RGB, tol: Int, file: StaticString = #filePath, line: UInt = #line) {
    guard let p else { return XCTFail("pixel out of bounds", file: file, line: line) }
    let ok = abs(Int(p.r) - Int(q.r)) <= tol && abs(Int(p.g) - Int(q.g)) <= tol && abs(Int(p.b) - Int(q.b)) <= tol
    XCTAssertTrue(ok, "\(p) is not within \(tol) of \(q)", file: file, line: line)
}

/// Inserts an APP1 Exif segment carrying `orientation` right after SOI.
fileprivate func withExif(_ jpeg: [UInt8], orientation: Int, bigEndian: Bool) -> [UInt8] {
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
fileprivate func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }
    return c ^ 0xFFFF_FFFF
}

/// Offset of the first occurrence of marker FF `m`.
fileprivate func markerOffset(_ data: [UInt8], _ m: UInt8) -> Int? {
    var i = 2
    while i + 1 < data.count {
        if data[i] == 0xFF && data[i + 1] == m { return i }
        i += 1
    }
    return nil
}

fileprivate func assertImageError(_ expression: @autoclosure () throws -> Any, file: StaticString = #filePath,
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

final class ImageTests: XCTestCase {
    // MARK: RGBImage

    func testRGBImageAccessorsAreBoundsSafe() throws {
        var img = try RGBImage(width: 3, height: 2, fill: RGB(1, 2, 3))
        XCTAssertEqual(img.pixels.count, 18)
        XCTAssertEqual(img.pixel(x: 2, y: 1), RGB(1, 2, 3))
        XCTAssertNil(img.pixel(x: 3, y: 0))
        XCTAssertNil(img.pixel(x: -1, y: 0))
        XCTAssertNil(img[0, 2])
        XCTAssertFalse(img.setPixel(x: 5, y: 5, .white))
        XCTAssertTrue(img.setPixel(x: 1, y: 1, .white))
        img[0, 0] = RGB(9, 8, 7)
        img[100, 0] = RGB(9, 8, 7)            // ignored
        XCTAssertEqual(img[0, 0], RGB(9, 8, 7))
        XCTAssertEqual(img.channel(x: 1, y: 1, c: 2), 255)
        XCTAssertNil(img.channel(x: 1, y: 1, c: 3))
        XCTAssertThrowsError(try RGBImage(width: 2, height: 2, pixels: [1, 2, 3]))
        XCTAssertThrowsError(try RGBImage(width: -1, height: 2))
        XCTAssertThrowsError(try RGBImage(width: Int.max, height: 2))
        let crop = try img.cropped(x: 1, y: 1, width: 10, height: 10)
        XCTAssertEqual(crop.width, 2)
        XCTAssertEqual(crop.height, 1)
        XCTAssertEqual(crop[0, 0], .white)
        XCTAssertThrowsError(try img.cropped(x: 3, y: 0, width: 1, height: 1))
    }

    func testTransposesMatchPILDefinitions() throws {
        // 3x2 image with pixel value = index.
        let px: [UInt8] = (0..<6).flatMap { i -> [UInt8] in [UInt8(i), 0, 0] }
        let img = try RGBImage(width: 3, height: 2, pixels: px)
        func reds(_ t: RGBImage.Transpose) -> (Int, Int, [UInt8]) {
            let o = img.transformed(t)
            return (o.width, o.height, stride(from: 0, to: o.pixels.count, by: 3).map { o.pixels[$0] })
        }
        // Source:  0 1 2 / 3 4 5
        XCTAssertTrue(reds(.identity) == (3, 2, [0, 1, 2, 3, 4, 5]))
        XCTAssertTrue(reds(.flipHorizontal) == (3, 2, [2, 1, 0, 5, 4, 3]))
        XCTAssertTrue(reds(.flipVertical) == (3, 2, [3, 4, 5, 0, 1, 2]))
        XCTAssertTrue(reds(.rotate180) == (3, 2, [5, 4, 3, 2, 1, 0]))
        XCTAssertTrue(reds(.transpose) == (2, 3, [0, 3, 1, 4, 2, 5]))
        XCTAssertTrue(reds(.transverse) == (2, 3, [5, 2, 4, 1, 3, 0]))
        XCTAssertTrue(reds(.rotate90CW) == (2, 3, [3, 0, 4, 1, 5, 2]))
        XCTAssertTrue(reds(.rotate90CCW) == (2, 3, [2, 5, 1, 4, 0, 3]))
    }

    func testSniff() throws {
        XCTAssertEqual(sniffImageFormat([0xFF, 0xD8, 0xFF, 0xE0]), .jpeg)
        XCTAssertEqual(sniffImageFormat([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0]), .png)
        XCTAssertEqual(sniffImageFormat([UInt8]()), .other)
        XCTAssertEqual(sniffImageFormat([0xFF, 0xD8]), .other)
        XCTAssertEqual(sniffImageFormat(Array("GIF89a".utf8)), .other)
        let png = try PNG.encode(gradientImage(width: 4, height: 4))
        XCTAssertEqual(sniffImageFormat(png), .png)
        XCTAssertEqual(sniffImageFormat(Data(try JPEG.encode(gradientImage(width: 4, height: 4)))), .jpeg)
    }

    // MARK: JPEG

    func testJPEGRoundTripPSNR() throws {
        let img = gradientImage(width: 96, height: 64)
        for (samp, q, minPSNR) in [(JPEGSubsampling.s444, 95, 40.0), (.s420, 90, 35.0), (.s422, 75, 32.0)] {
            let jpeg = try JPEG.encode(img, quality: q, subsampling: samp)
            XCTAssertEqual(sniffImageFormat(jpeg), .jpeg)
            let back = try JPEG.decode(jpeg)
            XCTAssertEqual(back.width, 96)
            XCTAssertEqual(back.height, 64)
            let p = psnr(img, back)
            XCTAssertGreaterThan(p, minPSNR, "\(samp) q\(q)")
        }
        // Progressive + reusable decoder, Data input.
        let prog = try JPEG.encode(img, quality: 92, progressive: true)
        let decoder = try JPEGDecoder()
        let a = try decoder.decode(Data(prog))
        let b = try decoder.decode(prog)
        XCTAssertEqual(a, b)
        XCTAssertGreaterThan(psnr(img, a), 35)
        // Header without decoding.
        let h = try JPEG.header(prog)
        XCTAssertEqual(h.width, 96)
        XCTAssertEqual(h.height, 64)
        XCTAssertEqual(h.components, 3)
        XCTAssertEqual(h.sofMarker, 0xC2)
        XCTAssertNil(h.exifOrientation)
    }

    func testJPEGEncodeRejectsBadArguments() throws {
        let img = gradientImage(width: 8, height: 8)
        assertImageError(try JPEG.encode(img, quality: 0)) { if case .invalidImage = $0 { return true }; return false }
        assertImageError(try JPEG.encode(img, quality: 101)) { if case .invalidImage = $0 { return true }; return false }
        assertImageError(try JPEG.encode(bytes: [1, 2, 3], width: 2, height: 2, format: .rgb)) {
            if case .invalidImage = $0 { return true }; return false
        }
        assertImageError(try JPEG.encode(RGBImage(width: 0, height: 5))) {
            if case .invalidImage = $0 { return true }; return false
        }
    }

    func testGreyJPEGDecodesToEqualChannels() throws {
        let w = 40, h = 24
        let grey = (0..<(w * h)).map { i in UInt8((i % w) * 5 + (i / w)) }
        let jpeg = try JPEG.encode(bytes: grey, width: w, height: h, format: .gray, quality: 95)
        XCTAssertEqual(try JPEG.header(jpeg).components, 1)
        let img = try JPEG.decode(jpeg)
        XCTAssertEqual(img.width, w)
        XCTAssertEqual(img.height, h)
        var maxErr = 0
        for y in 0..<h {
            for x in 0..<w {
                let p = try XCTUnwrap(img.pixel(x: x, y: y))
                XCTAssertEqual(p.r, p.g)
                XCTAssertEqual(p.g, p.b)
                maxErr = max(maxErr, abs(Int(p.r) - Int(grey[y * w + x])))
            }
        }
        XCTAssertLessThanOrEqual(maxErr, 6)
    }

    func testCMYKJPEGDecodesToRGB() throws {
        // Four 16x16 blocks, CMYK stored with Adobe (inverted) polarity: 255 = no ink.
        // red = M+Y ink, green = C+Y ink, white = no ink, 50% grey = K ink 128.
        let blocks: [([UInt8], RGB)] = [
            ([255, 0, 0, 255], RGB(255, 0, 0)),
            ([0, 255, 0, 255], RGB(0, 255, 0)),
            ([255, 255, 255, 255], RGB(255, 255, 255)),
            ([255, 255, 255, 127], RGB(127, 127, 127)),
        ]
        let w = 64, h = 16
        var cmyk = [UInt8](repeating: 0, count: w * h * 4)
        for y in 0..<h {
            for x in 0..<w {
                let v = blocks[x / 16].0
                for c in 0..<4 { cmyk[(y * w + x) * 4 + c] = v[c] }
            }
        }
        let jpeg = try JPEG.encode(bytes: cmyk, width: w, height: h, format: .cmyk, quality: 98, subsampling: .s444)
        let info = try JPEG.header(jpeg)
        XCTAssertEqual(info.components, 4)
        XCTAssertTrue(info.hasAdobeMarker)
        let img = try JPEG.decode(jpeg)
        XCTAssertEqual(img.width, w)
        for (i, block) in blocks.enumerated() {
            close(img.pixel(x: i * 16 + 8, y: 8), block.1, tol: 4)
        }
        // Bit-exact conversion formula (Pillow's CMYK;I + cmyk2rgb).
        let rgb = JPEGDecoder.cmykToRGB([255, 0, 0, 255, 200, 100, 50, 180, 0, 0, 0, 0], pixelCount: 3)
        // pixel 2: C=55,M=155,Y=205, nk=180: 180 - muldiv255(55,180)=180-39=141, 180-109=71, 180-145=35
        XCTAssertEqual(rgb, [255, 0, 0, 141, 71, 35, 0, 0, 0])
    }

    func testEXIFOrientationAllEight() throws {
        // 64x32 grey image: red block at the top-left, green block at the top-right.
        var img = try RGBImage(width: 64, height: 32, fill: RGB(128, 128, 128))
        img.fill(x: 0, y: 0, width: 16, height: 16, with: RGB(255, 0, 0))
        img.fill(x: 48, y: 0, width: 16, height: 16, with: RGB(0, 255, 0))
        let base = try JPEG.encode(img, quality: 95, subsampling: .s444)
        enum Corner { case tl, tr, bl, br }
        // Expected corners of (red, green) after applying the orientation (PIL exif_transpose).
        let expected: [Int: (Corner, Corner)] = [
            1: (.tl, .tr), 2: (.tr, .tl), 3: (.br, .bl), 4: (.bl, .br),
            5: (.tl, .bl), 6: (.tr, .br), 7: (.br, .tr), 8: (.bl, .tl),
        ]
        for bigEndian in [false, true] {
            for o in 1...8 {
                let jpeg = withExif(base, orientation: o, bigEndian: bigEndian)
                XCTAssertEqual(try JPEG.header(jpeg).exifOrientation, o)
                let out = try JPEG.decode(jpeg)
                let swapped = o >= 5
                XCTAssertEqual(out.width, swapped ? 32 : 64, "orientation \(o)")
                XCTAssertEqual(out.height, swapped ? 64 : 32, "orientation \(o)")
                func at(_ c: Corner) -> RGB? {
                    let (x, y): (Int, Int)
                    switch c {
                    case .tl: (x, y) = (8, 8)
                    case .tr: (x, y) = (out.width - 8, 8)
                    case .bl: (x, y) = (8, out.height - 8)
                    case .br: (x, y) = (out.width - 8, out.height - 8)
                    }
                    return out.pixel(x: x, y: y)
                }
                let (red, green) = try XCTUnwrap(expected[o])
                close(at(red), RGB(255, 0, 0), tol: 12)
                close(at(green), RGB(0, 255, 0), tol: 12)
                // Orientation can be switched off (PIL Image.open behaviour).
                let raw = try JPEG.decode(jpeg, options: JPEGDecodeOptions(applyEXIFOrientation: false))
                XCTAssertEqual(raw.width, 64)
                close(raw.pixel(x: 8, y: 8), RGB(255, 0, 0), tol: 12)
            }
        }
    }

    func testMalformedEXIFIsIgnored() throws {
        let base = try JPEG.encode(gradientImage(width: 16, height: 16), quality: 90)
        let bad: [[UInt8]] = [
            [],                                                   // empty TIFF
            [0x49, 0x49, 0x2A, 0x00],                             // short header
            [0x49, 0x49, 0x2A, 0x00, 0xFF, 0xFF, 0xFF, 0x7F],     // IFD offset far away
            [0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, 0xFF, 0xFF],   // 65535 entries, none present
            [0x49, 0x49, 0x2B, 0x00, 0x08, 0x00, 0x00, 0x00],     // wrong magic
            [0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
             0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00],  // orientation 9
            [0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
             0x12, 0x01, 0x03, 0x00],                             // entry cut short
        ]
        for tiff in bad {
            let payload: [UInt8] = Array("Exif".utf8) + [0, 0] + tiff
            let len = payload.count + 2
            let jpeg = Array(base[0..<2]) + [0xFF, 0xE1, UInt8(len >> 8), UInt8(len & 0xFF)] + payload + Array(base[2...])
            XCTAssertNil(try JPEG.header(jpeg).exifOrientation)
            let img = try JPEG.decode(jpeg)
            XCTAssertEqual(img.width, 16)
        }
        // Randomised TIFF blobs: never trap.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<64, using: &rng)
            var tiff = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n >= 4 && Bool.random(using: &rng) { tiff[0] = 0x49; tiff[1] = 0x49; tiff[2] = 0x2A; tiff[3] = 0 }
            let o = tiff.withUnsafeBytes { JPEGMarkers.exifOrientation($0) }
            if let o { XCTAssertTrue((1...8).contains(o)) }
        }
    }

    func testEmptyRandomAndWrongFormatInputs() throws {
        assertImageError(try JPEG.decode([UInt8]())) { $0 == .empty }
        assertImageError(try JPEG.decode([0xFF])) { $0 == .wrongFormat(expected: "JPEG", detected: .other) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var junk = (0..<Int.random(in: 1..<512, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if junk.count > 1 && junk[0] == 0xFF && junk[1] == 0xD8 { junk[0] = 0 }
            assertImageError(try JPEG.decode(junk)) { if case .wrongFormat = $0 { return true }; return false }
        }
        let png = try PNG.encode(gradientImage(width: 8, height: 8))
        assertImageError(try JPEG.decode(png)) { $0 == .wrongFormat(expected: "JPEG", detected: .png) }
        // JPEG magic followed by junk: an error, never a crash.
        for _ in 0..<300 {
            let junk = [0xFF, 0xD8, 0xFF] + (0..<Int.random(in: 0..<400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try JPEG.decode(junk))
        }
    }

    func testEveryTruncationIsRejected() throws {
        let img = gradientImage(width: 40, height: 24)
        for progressive in [false, true] {
            let jpeg = try JPEG.encode(img, quality: 85, progressive: progressive)
            let decoder = try JPEGDecoder()
            XCTAssertNoThrow(try decoder.decode(jpeg))
            var truncatedCount = 0
            for cut in 0..<jpeg.count {
                let prefix = Array(jpeg[0..<cut])
                do {
                    _ = try decoder.decode(prefix)
                    XCTFail("prefix of \(cut)/\(jpeg.count) bytes decoded (progressive: \(progressive))")
                } catch let e as ImageError {
                    if case .truncated = e { truncatedCount += 1 }
                }
            }
            // Past the first 3 bytes (magic), every prefix is reported as truncation.
            XCTAssertEqual(truncatedCount, jpeg.count - 3)
            // Also under the strict policy.
            let strict = JPEGDecodeOptions(warningPolicy: .rejectAll)
            assertImageError(try decoder.decode(Array(jpeg[0..<(jpeg.count * 2 / 3)]), options: strict)) {
                if case .truncated = $0 { return true }; return false
            }
        }
    }

    func testWarningPolicy() throws {
        // Garbage bytes between two marker segments: libjpeg warns "Corrupt JPEG data: 3 extraneous
        // bytes before marker" but decodes. Default policy accepts (as PIL does), strict rejects.
        let img = gradientImage(width: 32, height: 32)
        let jpeg = try JPEG.encode(img, quality: 90)
        let sof = try XCTUnwrap(markerOffset(jpeg, 0xC0))
        let patched = Array(jpeg[0..<sof]) + [0x12, 0x34, 0x56] + Array(jpeg[sof...])
        let lenient = try JPEG.decode(patched)
        XCTAssertEqual(lenient, try JPEG.decode(jpeg))
        assertImageError(try JPEG.decode(patched, options: JPEGDecodeOptions(warningPolicy: .rejectAll))) {
            if case let .corrupt(m) = $0 { return m.contains("extraneous") }
            return false
        }
    }

    func testRandomCorruptionNeverTraps() throws {
        let jpeg = try JPEG.encode(gradientImage(width: 48, height: 40), quality: 80)
        let decoder = try JPEGDecoder()
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<1500 {
            var bad = jpeg
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                bad[Int.random(in: 2..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            do {
                let out = try decoder.decode(bad, options: JPEGDecodeOptions(maxPixels: 1 << 20))
                XCTAssertLessThanOrEqual(out.pixelCount, 1 << 20)
                XCTAssertEqual(out.pixels.count, out.pixelCount * 3)
            } catch is ImageError {
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 0)
    }

    func testPixelLimitRefusedFromHeader() throws {
        let jpeg = try JPEG.encode(gradientImage(width: 16, height: 16), quality: 90)
        let sof = try XCTUnwrap(markerOffset(jpeg, 0xC0))
        var bomb = jpeg
        // SOF0: FF C0 len(2) P(1) H(2) W(2): claim 30000 x 30000 = 900 MP.
        bomb[sof + 5] = 0x75; bomb[sof + 6] = 0x30
        bomb[sof + 7] = 0x75; bomb[sof + 8] = 0x30
        let start = Date()
        assertImageError(try JPEG.decode(bomb)) { $0 == .tooLarge(width: 30000, height: 30000, limit: 100_000_000) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)   // refused, not decoded
        // A configurable limit applies to normal images too.
        assertImageError(try JPEG.decode(jpeg, options: JPEGDecodeOptions(maxPixels: 255))) {
            $0 == .tooLarge(width: 16, height: 16, limit: 255)
        }
        XCTAssertNoThrow(try JPEG.decode(jpeg, options: JPEGDecodeOptions(maxPixels: 256)))
        // Claimed 65535 x 65535 with the default limit.
        bomb[sof + 5] = 0xFF; bomb[sof + 6] = 0xFF; bomb[sof + 7] = 0xFF; bomb[sof + 8] = 0xFF
        assertImageError(try JPEG.decode(bomb)) { if case .tooLarge = $0 { return true }; return false }
    }

    // MARK: PNG

    func testPNGRoundTrip() throws {
        let img = lcgImage(width: 37, height: 23, seed: 7)
        let png = try PNG.encode(img)
        XCTAssertEqual(sniffImageFormat(png), .png)
        XCTAssertEqual(try PNG.decode(png), img)
        XCTAssertEqual(try PNG.decode(Data(png)), img)
        let header = try PNG.header(png)
        XCTAssertTrue(header == (37, 23, false))

        // Grey and grey+alpha expand to RGB.
        let grey: [UInt8] = (0..<20).map { UInt8($0 * 13) }
        let g = try PNG.decode(PNG.encode(bytes: grey, width: 5, height: 4, format: .gray))
        XCTAssertEqual(g.pixel(x: 2, y: 1), RGB(91, 91, 91))
        let ga: [UInt8] = [10, 255, 200, 0]
        let gaImg = try PNG.decode(PNG.encode(bytes: ga, width: 2, height: 1, format: .grayAlpha))
        XCTAssertEqual(gaImg.pixels, [10, 10, 10, 200, 200, 200])

        // RGBA: strip (PIL convert("RGB")), composite on black / white.
        let rgba: [UInt8] = [200, 100, 50, 255, 200, 100, 50, 0, 200, 100, 50, 128]
        let rgbaPNG = try PNG.encode(bytes: rgba, width: 3, height: 1, format: .rgba)
        XCTAssertTrue(try PNG.header(rgbaPNG).hasAlpha)
        XCTAssertEqual(try PNG.decode(rgbaPNG).pixels, [200, 100, 50, 200, 100, 50, 200, 100, 50])
        XCTAssertEqual(try PNG.decode(rgbaPNG, options: PNGDecodeOptions(alpha: .compositeOnBlack)).pixels,
                       [200, 100, 50, 0, 0, 0, 100, 50, 25])
        XCTAssertEqual(try PNG.decode(rgbaPNG, options: PNGDecodeOptions(alpha: .compositeOnWhite)).pixels,
                       [200, 100, 50, 255, 255, 255, 227, 177, 152])
    }

    func testPNGWriteFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let img = lcgImage(width: 9, height: 5, seed: 3)
        let path = dir.appendingPathComponent("a.png").path
        try PNG.write(img, toFile: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try PNG.decode(bytes), img)
        assertImageError(try PNG.write(img, toFile: dir.path + "/missing/dir/b.png")) {
            if case .io = $0 { return true }; return false
        }
    }

    func testPNGErrors() throws {
        let png = try PNG.encode(lcgImage(width: 30, height: 20, seed: 11))
        assertImageError(try PNG.decode([UInt8]())) { $0 == .empty }
        let jpeg = try JPEG.encode(gradientImage(width: 8, height: 8))
        assertImageError(try PNG.decode(jpeg)) { $0 == .wrongFormat(expected: "PNG", detected: .jpeg) }
        assertImageError(try PNG.decode(Array(png[0..<(png.count / 2)]))) {
            if case .truncated = $0 { return true }; return false
        }
        // Every strict prefix after the signature is an error.
        for cut in 8..<png.count - 12 {    // the last 12 bytes are the IEND chunk
            XCTAssertThrowsError(try PNG.decode(Array(png[0..<cut])), "prefix \(cut)")
        }
        assertImageError(try PNG.decode(png, options: PNGDecodeOptions(maxPixels: 599))) {
            $0 == .tooLarge(width: 30, height: 20, limit: 599)
        }
        // IHDR patched to claim 100000 x 100000 with a valid CRC: refused by the pixel limit.
        var bomb = png
        bomb[16] = 0; bomb[17] = 0x01; bomb[18] = 0x86; bomb[19] = 0xA0
        bomb[20] = 0; bomb[21] = 0x01; bomb[22] = 0x86; bomb[23] = 0xA0
        let crc = crc32(Array(bomb[12..<29]))          // chunk type + 13 data bytes
        bomb[29] = UInt8(crc >> 24); bomb[30] = UInt8((crc >> 16) & 0xFF)
        bomb[31] = UInt8((crc >> 8) & 0xFF); bomb[32] = UInt8(crc & 0xFF)
        assertImageError(try PNG.decode(bomb)) { $0 == .tooLarge(width: 100_000, height: 100_000, limit: 100_000_000) }
        // Without the CRC fix-up it is a corrupt file.
        var badCRC = bomb
        badCRC[32] ^= 0xFF
        assertImageError(try PNG.decode(badCRC)) { if case .corrupt = $0 { return true }; return false }
        // Random corruption never traps.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var bad = png
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bad[Int.random(in: 8..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = try? PNG.decode(bad)
        }
        assertImageError(try PNG.encode(bytes: [1, 2], width: 1, height: 1, format: .rgb)) {
            if case .invalidImage = $0 { return true }; return false
        }
    }

    // MARK: resize

    func testResizeHandComputed() throws {
        // 2x1 -> 1x1: support 4, both taps weight 0.5 -> (10 + 21) / 2 = 15.5 rounds to 16.
        let two = try RGBImage(width: 2, height: 1, pixels: [10, 0, 255, 21, 255, 0])
        XCTAssertEqual(try two.resized(width: 1, height: 1).pixels, [16, 128, 128])
        // 2x1 -> 4x1 upscaling, values 100 and 200: taps normalised to
        // [1.0882, -0.0882], [0.7929, 0.2071], mirrored -> 91, 121, 179, 209.
        let up = try RGBImage(width: 2, height: 1, pixels: [100, 100, 100, 200, 200, 200])
        XCTAssertEqual(try up.resized(width: 4, height: 1).pixels,
                       [91, 91, 91, 121, 121, 121, 179, 179, 179, 209, 209, 209])
        // Overshoot is clamped: 0 / 255 step -> first sample would be negative.
        let step = try RGBImage(width: 2, height: 1, pixels: [0, 0, 0, 255, 255, 255])
        let s = try step.resized(width: 4, height: 1).pixels
        XCTAssertEqual(s[0], 0)
        XCTAssertEqual(s[9], 255)
        // Identity returns the same pixels; constant images stay constant at any size.
        let img = lcgImage(width: 8, height: 6, seed: 12345)
        XCTAssertEqual(try img.resized(width: 8, height: 6), img)
        let flat = try RGBImage(width: 13, height: 7, fill: RGB(77, 0, 255))
        for (w, h) in [(1, 1), (5, 3), (29, 17), (13, 2), (4, 7)] {
            let r = try flat.resized(width: w, height: h)
            XCTAssertEqual(r, try RGBImage(width: w, height: h, fill: RGB(77, 0, 255)))
        }
        XCTAssertThrowsError(try img.resized(width: 0, height: 3))
    }

    /// Reference arrays computed once with Pillow 13.0.0 (`Image.resize(..., Image.BICUBIC)`) on
    /// `lcgImage(8, 6, seed 12345)`. None of these sizes triggers Pillow 13's vertical-first order,
    /// so Pillow 11 gives identical bytes.
    func testResizeMatchesPillow() throws {
        let img = lcgImage(width: 8, height: 6, seed: 12345)
        XCTAssertEqual(Array(img.pixels.prefix(6)), [220, 4, 101, 170, 31, 173])  // same generator as the script

        XCTAssertEqual(try img.resized(width: 3, height: 2).pixels,
                       [126, 56, 135, 133, 101, 135, 141, 124, 108, 135, 150, 148, 177, 142, 130, 164, 121, 122])
        XCTAssertEqual(try img.resized(width: 11, height: 7).pixels, [
            229, 2, 94, 202, 16, 142, 119, 47, 203, 31, 94, 217, 208, 167, 58, 136, 139, 0, 22, 98, 27, 105, 126,
            103, 234, 30, 234, 169, 70, 203, 12, 183, 87, 49, 0, 165, 140, 10, 77, 143, 45, 48, 26, 79, 138, 110,
            79, 197, 177, 86, 188, 196, 71, 139, 166, 22, 90, 226, 148, 94, 141, 215, 85, 0, 207, 68, 111, 136,
            212, 135, 71, 66, 172, 15, 17, 196, 14, 162, 120, 23, 244, 97, 133, 169, 142, 183, 86, 235, 45, 135,
            131, 187, 27, 73, 199, 53, 82, 107, 158, 81, 151, 178, 89, 126, 147, 134, 99, 152, 185, 87, 205, 83,
            76, 179, 42, 163, 157, 101, 217, 135, 245, 120, 108, 130, 100, 121, 114, 74, 138, 186, 47, 146, 0, 77,
            162, 80, 164, 198, 153, 214, 219, 149, 169, 191, 110, 144, 94, 118, 141, 117, 166, 133, 156, 226, 96,
            110, 192, 36, 166, 172, 35, 137, 177, 68, 61, 47, 106, 199, 165, 184, 130, 249, 208, 112, 223, 134,
            170, 239, 152, 55, 245, 140, 15, 232, 94, 78, 194, 36, 219, 174, 117, 68, 146, 149, 29, 122, 127, 94,
            100, 193, 148, 182, 140, 45, 179, 119, 70, 64, 160, 245, 174, 175, 41, 245, 198, 102, 225, 209, 250,
            105, 192, 254, 78, 240, 80, 156, 242, 114, 255, 211, 255,
        ])
        XCTAssertEqual(try img.resized(width: 5, height: 9).pixels, [
            209, 10, 133, 101, 93, 188, 118, 145, 4, 131, 81, 141, 123, 103, 173, 147, 4, 114, 88, 78, 143, 146,
            103, 114, 172, 78, 115, 107, 170, 115, 93, 26, 99, 103, 47, 104, 157, 76, 218, 207, 90, 85, 88, 219, 62,
            142, 113, 117, 196, 2, 138, 97, 134, 158, 171, 141, 81, 81, 140, 100, 89, 133, 158, 148, 84, 181, 67,
            157, 158, 177, 135, 116, 141, 63, 139, 42, 132, 189, 110, 179, 196, 94, 151, 145, 198, 97, 147, 188, 32,
            138, 105, 154, 178, 236, 175, 140, 214, 116, 43, 213, 47, 127, 138, 95, 47, 141, 159, 125, 194, 158,
            130, 238, 154, 76, 162, 131, 161, 155, 179, 97, 154, 157, 80, 121, 144, 136, 224, 198, 134, 113, 219,
            196, 184, 236, 168,
        ])
        // BILINEAR (5, 4).
        XCTAssertEqual(try img.resized(width: 5, height: 4, filter: .bilinear).pixels, [
            159, 15, 120, 99, 78, 149, 140, 109, 97, 157, 87, 117, 109, 150, 125, 115, 88, 125, 149, 50, 141, 116,
            118, 162, 177, 118, 100, 103, 144, 99, 79, 138, 172, 154, 150, 169, 134, 139, 121, 191, 94, 131, 160,
            70, 109, 140, 157, 117, 174, 156, 135, 221, 164, 94, 158, 150, 163, 165, 183, 119,
        ])
        // torchvision resized_crop == img.crop((1, 2, 7, 6)).resize((4, 3), BICUBIC).
        XCTAssertEqual(try img.resized(crop: CropBox(x: 1, y: 2, width: 6, height: 4), width: 4, height: 3).pixels, [
            157, 61, 117, 115, 73, 197, 127, 180, 119, 138, 124, 92, 170, 200, 193, 151, 146, 111, 185, 110, 118,
            195, 54, 135, 188, 150, 104, 192, 167, 92, 214, 160, 181, 116, 193, 103,
        ])
        // Pillow resize with a fractional box: img.resize((4, 3), BICUBIC, box=(0.5, 1.25, 7.0, 5.5)).
        XCTAssertEqual(try img.resized(crop: CropBox(x: 0.5, y: 1.25, width: 6.5, height: 4.25), width: 4, height: 3,
                                       edges: .sourceImage).pixels, [
            136, 48, 74, 127, 40, 183, 159, 111, 145, 156, 150, 67, 101, 143, 182, 124, 122, 170, 126, 159, 132,
            178, 70, 134, 164, 169, 134, 204, 160, 106, 222, 126, 115, 157, 128, 115,
        ])
    }

    /// Pillow 13 (PR #9549) runs the vertical pass first when the height shrinks by more than twice
    /// as many pixels as the width; Pillow <= 12 always starts horizontally. 8x6 -> 9x2 is such a
    /// case; references from Pillow 13.0.0 and 11.3.0 respectively.
    func testResizePassOrderMatchesBothPillowGenerations() throws {
        let img = lcgImage(width: 8, height: 6, seed: 12345)
        XCTAssertEqual(try img.resized(width: 9, height: 2).pixels, [
            109, 59, 161, 151, 48, 86, 116, 61, 149, 121, 80, 178, 117, 124, 135, 138, 117, 98, 194, 79, 109,
            156, 143, 119, 62, 140, 106, 54, 132, 176, 167, 169, 111, 174, 146, 184, 158, 134, 117, 170, 157, 93,
            194, 143, 159, 180, 103, 154, 133, 135, 78, 178, 113, 137,
        ])
        XCTAssertEqual(try img.resized(width: 9, height: 2, order: .horizontalFirst).pixels, [
            108, 59, 161, 151, 48, 86, 116, 61, 149, 121, 80, 178, 117, 124, 135, 138, 117, 98, 195, 79, 109,
            156, 143, 119, 62, 140, 105, 54, 132, 175, 167, 169, 111, 174, 146, 185, 159, 134, 118, 171, 157, 93,
            193, 144, 159, 179, 103, 154, 134, 135, 77, 178, 114, 135,
        ])
    }

    func testCropResizeConsistency() throws {
        let img = lcgImage(width: 50, height: 40, seed: 99)
        // Integer crop + resize in one pass == explicit crop then resize.
        for (x, y, w, h, ow, oh) in [(3, 5, 30, 20, 16, 16), (0, 0, 50, 40, 256, 200), (10, 7, 9, 31, 4, 11), (49, 39, 1, 1, 3, 2)] {
            let onePass = try img.resized(crop: CropBox(x: x, y: y, width: w, height: h), width: ow, height: oh)
            let twoStep = try img.cropped(x: x, y: y, width: w, height: h).resized(width: ow, height: oh)
            XCTAssertEqual(onePass, twoStep, "crop \(x),\(y),\(w),\(h) -> \(ow)x\(oh)")
        }
        // Full-image box with either edge mode equals a plain resize.
        let full = CropBox(x: 0, y: 0, width: 50, height: 40)
        XCTAssertEqual(try img.resized(crop: full, width: 17, height: 9), try img.resized(width: 17, height: 9))
        XCTAssertEqual(try img.resized(crop: full, width: 17, height: 9, edges: .sourceImage),
                       try img.resized(width: 17, height: 9))
        // Fractional box, clampToCrop: same as resizing the covering window with a relative box.
        let frac = try img.resized(crop: CropBox(x: 2.5, y: 3.25, width: 20.5, height: 10.5), width: 8, height: 8)
        let window = try img.cropped(x: 2, y: 3, width: 21, height: 11)
        let viaWindow = try window.resized(crop: CropBox(x: 0.5, y: 0.25, width: 20.5, height: 10.5), width: 8,
                                           height: 8, edges: .sourceImage)
        XCTAssertEqual(frac, viaWindow)
        // Invalid boxes are errors, not traps.
        for bad in [CropBox(x: -1, y: 0, width: 5, height: 5), CropBox(x: 0, y: 0, width: 0, height: 5),
                    CropBox(x: 48, y: 0, width: 5, height: 5), CropBox(x: .nan, y: 0, width: 5, height: 5),
                    CropBox(x: 0, y: 0, width: .infinity, height: 5)] {
            XCTAssertThrowsError(try img.resized(crop: bad, width: 4, height: 4))
        }
    }

    func testShorterSideNeverUpscales() throws {
        let img = lcgImage(width: 60, height: 45, seed: 5)
        let r = try img.shorterSide(to: 30)
        XCTAssertEqual(r.width, 40)
        XCTAssertEqual(r.height, 30)
        XCTAssertEqual(r, try img.resized(width: 40, height: 30))
        let tall = try lcgImage(width: 45, height: 70, seed: 5).shorterSide(to: 20)
        XCTAssertEqual(tall.width, 20)
        XCTAssertEqual(tall.height, 31)              // int(20 * 70 / 45) = int(31.11)
        XCTAssertEqual(try img.shorterSide(to: 45), img)
        XCTAssertEqual(try img.shorterSide(to: 500), img)
        XCTAssertThrowsError(try img.shorterSide(to: 0))
    }

    func testDecodeCropResizePipeline() throws {
        // End-to-end like the loader: decode, RandomResizedCrop-style crop, 256x256 bicubic.
        let src = gradientImage(width: 384, height: 288)
        let jpeg = try JPEG.encode(src, quality: 90)
        let decoder = try JPEGDecoder()
        let img = try decoder.decode(jpeg)
        let out = try img.resized(crop: CropBox(x: 37, y: 20, width: 301, height: 240), width: 256, height: 256)
        XCTAssertEqual(out.width, 256)
        XCTAssertEqual(out.height, 256)
        let ref = try src.resized(crop: CropBox(x: 37, y: 20, width: 301, height: 240), width: 256, height: 256)
        XCTAssertGreaterThan(psnr(out, ref), 35)
    }
}

import Foundation
import XCTest
@testable import ELIPImage

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
}

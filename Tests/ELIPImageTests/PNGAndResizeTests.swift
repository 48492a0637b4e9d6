import Foundation
import XCTest
@testable import ELIPImage

final class PNGAndResizeTests: XCTestCase {
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

import ELIPImage
import ImageFormatFixtures
import XCTest

/// PNG of every colour type and bit depth, GIF, WebP and BMP decoded as PIL's
/// `Image.open(p).convert("RGB")` (ALBEF's loader, dataset/caption_dataset.py) gives them: palette
/// looked up, grey replicated, alpha (and tRNS) dropped rather than composited.
final class ImageFormatTests: XCTestCase {
    typealias F = FormatFixtures

    func rgb(_ image: RGBImage) -> [[UInt8]] {
        (0..<image.width * image.height).map { Array(image.pixels[(3 * $0)..<(3 * $0 + 3)]) }
    }

    func testPNGEveryColourTypeAndBitDepth() throws {
        let grey1 = F.png(width: 8, height: 1, colorType: 0, bitDepth: 1, rows: [F.pack([0, 1, 0, 1, 1, 0, 0, 1], bits: 1)])
        XCTAssertEqual(rgb(try PNG.decode(grey1)).map { $0[0] }, [0, 255, 0, 255, 255, 0, 0, 255])
        let grey2 = F.png(width: 4, height: 1, colorType: 0, bitDepth: 2, rows: [F.pack([0, 1, 2, 3], bits: 2)])
        XCTAssertEqual(rgb(try PNG.decode(grey2)), [[0, 0, 0], [85, 85, 85], [170, 170, 170], [255, 255, 255]])
        let grey4 = F.png(width: 2, height: 1, colorType: 0, bitDepth: 4, rows: [F.pack([1, 14], bits: 4)])
        XCTAssertEqual(rgb(try PNG.decode(grey4)), [[17, 17, 17], [238, 238, 238]])
        let palette: [(UInt8, UInt8, UInt8)] = [(255, 0, 0), (0, 128, 0), (10, 20, 250)]
        for bits in [1, 2, 4, 8] where (1 << bits) >= 2 {
            let indices = [0, 1, 1, 0]
            let p = F.png(width: 4, height: 1, colorType: 3, bitDepth: UInt8(bits), rows: [bits == 8 ? indices.map(UInt8.init) : F.pack(indices, bits: bits)],
                          palette: Array(palette.prefix(2)))
            XCTAssertEqual(rgb(try PNG.decode(p)), [[255, 0, 0], [0, 128, 0], [0, 128, 0], [255, 0, 0]], "\(bits)-bit palette")
        }
        // Palette with tRNS (index 1 fully transparent, index 2 half): colours kept, transparency dropped.
        let trns = F.png(width: 3, height: 1, colorType: 3, bitDepth: 8, rows: [[0, 1, 2]], palette: palette, transparency: [255, 0, 128])
        XCTAssertEqual(rgb(try PNG.decode(trns)), [[255, 0, 0], [0, 128, 0], [10, 20, 250]])
        let greyAlpha = F.png(width: 2, height: 1, colorType: 4, bitDepth: 8, rows: [[100, 0, 200, 128]])
        XCTAssertEqual(rgb(try PNG.decode(greyAlpha)), [[100, 100, 100], [200, 200, 200]])
        let rgba = F.png(width: 2, height: 1, colorType: 6, bitDepth: 8, rows: [[10, 20, 30, 0, 40, 50, 60, 255]])
        XCTAssertEqual(rgb(try PNG.decode(rgba)), [[10, 20, 30], [40, 50, 60]])
        let rgb8 = F.png(width: 1, height: 2, colorType: 2, bitDepth: 8, rows: [[1, 2, 3], [250, 251, 252]])
        XCTAssertEqual(rgb(try PNG.decode(rgb8)), [[1, 2, 3], [250, 251, 252]])
        // 16-bit samples: PIL keeps the high byte ("RGB;16B").
        let rgb16 = F.png(width: 2, height: 1, colorType: 2, bitDepth: 16, rows: [[0x12, 0x34, 0xAB, 0xCD, 0xFF, 0x00, 0x00, 0x80, 0x80, 0x7F, 0xFF, 0xFF]])
        // Within one level of the high byte PIL keeps (libpng rounds v / 257 instead of v >> 8).
        func close(_ got: [[UInt8]], _ samples16: [Int], _ what: String) {
            XCTAssertEqual(got.count * 3, samples16.count, what)
            for (g, s) in zip(got.flatMap { $0 }, samples16) { XCTAssertLessThanOrEqual(abs(Int(g) - s >> 8), 1, "\(what): \(g) for \(s)") }
        }
        close(rgb(try PNG.decode(rgb16)), [0x1234, 0xABCD, 0xFF00, 0x0080, 0x807F, 0xFFFF], "16-bit RGB")
        let rgba16 = F.png(width: 1, height: 1, colorType: 6, bitDepth: 16, rows: [[0x12, 0x34, 0xAB, 0xCD, 0xFF, 0x00, 0x00, 0x00]])
        close(rgb(try PNG.decode(rgba16)), [0x1234, 0xABCD, 0xFF00], "16-bit RGBA (alpha 0 dropped)")
        let grey16 = F.png(width: 3, height: 1, colorType: 0, bitDepth: 16, rows: [[0x00, 0xFF, 0x80, 0x80, 0xFF, 0xFF]])
        close(rgb(try PNG.decode(grey16)), [0x00FF, 0x00FF, 0x00FF, 0x8080, 0x8080, 0x8080, 0xFFFF, 0xFFFF, 0xFFFF], "16-bit grey")
    }

    // MARK: GIF

    func testGIFFirstFrameWithTransparencyAndInterlace() throws {
        let palette: [(UInt8, UInt8, UInt8)] = [(9, 9, 9), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        // 4x5 canvas, first frame 2x3 at (1, 1); a second frame that must be ignored.
        let first: [UInt8] = [1, 2, 3, 1, 2, 3]
        for interlace in [false, true] {
            for transparent: UInt8? in [nil, 3] {
                let bytes = F.gif(width: 4, height: 5, palette: palette,
                                  frames: [((1, 1), (2, 3), first), ((0, 0), (4, 5), [UInt8](repeating: 2, count: 20))],
                                  transparent: transparent, interlace: interlace)
                XCTAssertEqual(try GIF.header(bytes).width, 4)
                let img = try GIF.decode(bytes)
                XCTAssertEqual([img.width, img.height], [4, 5])
                let outside = Array([palette[Int(transparent ?? 0)]].map { [$0.0, $0.1, $0.2] }[0])
                var expected = [[UInt8]](repeating: outside, count: 20)
                for y in 0..<3 { for x in 0..<2 { let c = palette[Int(first[y * 2 + x])]; expected[(y + 1) * 4 + x + 1] = [c.0, c.1, c.2] } }
                XCTAssertEqual(rgb(img), expected, "interlace \(interlace), transparent \(String(describing: transparent))")
            }
        }
        let bytes = F.gif(width: 4, height: 5, palette: palette, frames: [((0, 0), (4, 5), [UInt8](repeating: 1, count: 20))])
        XCTAssertThrowsError(try GIF.decode(Array(bytes.prefix(bytes.count - 8)))) { XCTAssertTrue("\($0)".contains("GIF"), "\($0)") }
        XCTAssertThrowsError(try GIF.decode(Array(bytes.prefix(20))))
        XCTAssertThrowsError(try GIF.decode(bytes, maxPixels: 19)) { XCTAssertEqual($0 as? ImageError, .tooLarge(width: 4, height: 5, limit: 19)) }
    }

    // MARK: WebP

    func testWebPLosslessRGBAndAlphaDropped() throws {
        let px: [UInt8] = [10, 20, 30, 200, 100, 50, 0, 0, 0, 255, 255, 255]
        let plain = F.webp(width: 2, height: 2, pixels: px, alpha: false)
        XCTAssertEqual(try WebP.decode(plain).pixels, px)
        let withAlpha = F.webp(width: 2, height: 1, pixels: [10, 20, 30, 128, 200, 100, 50, 255], alpha: true)
        XCTAssertEqual(try WebP.decode(withAlpha).pixels, [10, 20, 30, 200, 100, 50])
        XCTAssertThrowsError(try WebP.decode(Array(plain.prefix(plain.count - 6))))
        XCTAssertThrowsError(try WebP.decode(Array(plain.prefix(12)))) { XCTAssertEqual($0 as? ImageError, .truncated("WebP ends inside its headers")) }
        XCTAssertThrowsError(try WebP.decode(plain, maxPixels: 3)) { XCTAssertEqual($0 as? ImageError, .tooLarge(width: 2, height: 2, limit: 3)) }
    }

    // MARK: BMP

    func testBMPVariants() throws {
        // 2x2, 24-bit bottom-up: rows stored bottom first, each padded to 8 bytes.
        let b24 = F.bmp(width: 2, height: 2, bitsPerPixel: 24, pixelRows: [[3, 2, 1, 6, 5, 4, 0, 0], [30, 20, 10, 60, 50, 40, 0, 0]])
        XCTAssertEqual(rgb(try BMP.decode(b24)), [[10, 20, 30], [40, 50, 60], [1, 2, 3], [4, 5, 6]])
        // 32-bit top-down (negative height): BGRX, the 4th byte dropped.
        let b32 = F.bmp(width: 1, height: -2, bitsPerPixel: 32, pixelRows: [[3, 2, 1, 99], [6, 5, 4, 0]])
        XCTAssertEqual(rgb(try BMP.decode(b32)), [[1, 2, 3], [4, 5, 6]])
        // 32-bit BI_BITFIELDS with RGBA masks in another byte order.
        let bf = F.bmp(width: 1, height: 1, bitsPerPixel: 32, compression: 3, pixelRows: [[7, 8, 9, 200]], masks: [0xFF, 0xFF00, 0xFF_0000])
        XCTAssertEqual(rgb(try BMP.decode(bf)), [[7, 8, 9]])
        // 8-bit and 4-bit palettes, 1-bit.
        let pal: [(UInt8, UInt8, UInt8)] = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
        let b8 = F.bmp(width: 3, height: 1, bitsPerPixel: 8, palette: pal, pixelRows: [[2, 1, 0, 0]])
        XCTAssertEqual(rgb(try BMP.decode(b8)), [[0, 0, 255], [255, 0, 0], [0, 0, 0]])
        let b4 = F.bmp(width: 3, height: 1, bitsPerPixel: 4, palette: pal, pixelRows: [[0x21, 0x00, 0, 0]])
        XCTAssertEqual(rgb(try BMP.decode(b4)), [[0, 0, 255], [255, 0, 0], [0, 0, 0]])
        let b1 = F.bmp(width: 3, height: 1, bitsPerPixel: 1, palette: Array(pal.prefix(2)), pixelRows: [[0b1010_0000, 0, 0, 0]])
        XCTAssertEqual(rgb(try BMP.decode(b1)), [[255, 0, 0], [0, 0, 0], [255, 0, 0]])
        // Refused clearly: RLE, 16-bit, an index past the palette, truncated pixels.
        XCTAssertThrowsError(try BMP.decode(F.bmp(width: 1, height: 1, bitsPerPixel: 8, compression: 1, palette: pal, pixelRows: [[0, 0, 0, 0]]))) {
            XCTAssertEqual($0 as? ImageError, .unsupported("RLE-compressed BMP"))
        }
        XCTAssertThrowsError(try BMP.decode(F.bmp(width: 1, height: 1, bitsPerPixel: 16, pixelRows: [[0, 0, 0, 0]]))) {
            XCTAssertEqual($0 as? ImageError, .unsupported("16-bit BMP (1/4/8/24/32-bit are decoded)"))
        }
        XCTAssertThrowsError(try BMP.decode(F.bmp(width: 1, height: 1, bitsPerPixel: 8, palette: pal, pixelRows: [[7, 0, 0, 0]]))) {
            XCTAssertEqual($0 as? ImageError, .corrupt("BMP pixel (0, 0) uses colour 7 of a 3-colour palette"))
        }
        XCTAssertThrowsError(try BMP.decode(Array(b24.prefix(b24.count - 1)))) { error in
            guard case .truncated? = error as? ImageError else { return XCTFail("\(error)") }
        }
        for n in 0..<b8.count { _ = try? BMP.decode(Array(b8.prefix(n))) }  // never traps
    }

    // MARK: damaged input

    /// Random byte flips and truncations of valid GIF, WebP, BMP and PNG files: an error or an
    /// image, never a trap or a hang.
    func testDamagedFilesNeverTrap() throws {
        let palette: [(UInt8, UInt8, UInt8)] = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        let files: [(String, [UInt8], ([UInt8]) throws -> RGBImage)] = [
            ("GIF", F.gif(width: 8, height: 6, palette: palette, frames: [((0, 0), (8, 6), (0..<48).map { UInt8($0 % 4) })], interlace: true),
             { try GIF.decode($0, maxPixels: 1 << 20) }),
            ("WebP", F.webp(width: 8, height: 6, pixels: (0..<144).map { UInt8($0) }, alpha: false), { try WebP.decode($0, maxPixels: 1 << 20) }),
            ("BMP", F.bmp(width: 3, height: 2, bitsPerPixel: 8, palette: palette, pixelRows: [[0, 1, 2, 0], [3, 2, 1, 0]]), { try BMP.decode($0, maxPixels: 1 << 20) }),
            ("PNG", F.png(width: 4, height: 1, colorType: 3, bitDepth: 2, rows: [F.pack([0, 1, 2, 3], bits: 2)], palette: palette, transparency: [0]),
             { try PNG.decode($0, options: PNGDecodeOptions(maxPixels: 1 << 20)) }),
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(truncatingIfNeeded: state >> 33) }
        for (name, good, decode) in files {
            XCTAssertNoThrow(try decode(good), name)
            var failures = 0
            for round in 0..<300 {
                var bytes = good
                if round % 3 == 0 {
                    bytes = Array(bytes.prefix(next() % bytes.count))
                } else {
                    for _ in 0..<(1 + next() % 4) { bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next()) }
                }
                if (try? decode(bytes)) == nil { failures += 1 }
            }
            XCTAssertGreaterThan(failures, 50, name)  // damage is noticed, not decoded into silence
        }
    }
}

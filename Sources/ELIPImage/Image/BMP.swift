// A small BMP decoder for what photo folders hold: Windows BMP (BITMAPINFOHEADER, V4, V5) with
// uncompressed 24-bit, 32-bit (BI_RGB, or BI_BITFIELDS with byte-aligned masks) and 1/4/8-bit
// palette pixels, bottom-up or top-down. Everything else (RLE, 16-bit, OS/2 headers, embedded
// JPEG/PNG) is refused as unsupported. Every offset and size is checked against the data.
//
// As PIL's `convert("RGB")`: a 4th byte or alpha mask is dropped, palette indices are looked up
// (an index past the palette is a corrupt file).

import Foundation

public enum BMP {
    struct Header {
        let width: Int, height: Int, topDown: Bool, bitsPerPixel: Int, compression: Int
        let headerSize: Int, dataOffset: Int, colorsUsed: Int
    }

    private static func u16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
    private static func u32(_ b: [UInt8], _ i: Int) -> Int { u16(b, i) | u16(b, i + 2) << 16 }
    private static func i32(_ b: [UInt8], _ i: Int) -> Int { Int(Int32(bitPattern: UInt32(u32(b, i)))) }

    static func parseHeader(_ b: [UInt8]) throws -> Header {
        guard b.count >= 2, b[0] == 0x42, b[1] == 0x4D else { throw ImageError.wrongFormat(expected: "BMP", detected: sniffImageFormat(b)) }
        guard b.count >= 18 else { throw ImageError.truncated("BMP ends inside its file header (\(b.count) bytes)") }
        let headerSize = u32(b, 14)
        guard headerSize == 40 || headerSize == 52 || headerSize == 56 || headerSize == 108 || headerSize == 124 else {
            throw ImageError.unsupported("BMP with a \(headerSize)-byte info header (only Windows BITMAPINFOHEADER/V4/V5 are decoded)")
        }
        guard b.count >= 14 + headerSize else { throw ImageError.truncated("BMP ends inside its info header") }
        let width = i32(b, 18), rawHeight = i32(b, 22)
        guard width > 0, rawHeight != 0, rawHeight != Int(Int32.min) else { throw ImageError.corrupt("BMP is \(width)x\(rawHeight)") }
        return Header(width: width, height: abs(rawHeight), topDown: rawHeight < 0, bitsPerPixel: u16(b, 28), compression: u32(b, 30),
                      headerSize: headerSize, dataOffset: u32(b, 10), colorsUsed: u32(b, 46))
    }

    /// Width and height from the headers.
    public static func header(_ bytes: [UInt8]) throws -> (width: Int, height: Int) {
        let h = try parseHeader(bytes)
        return (h.width, h.height)
    }

    public static func decode(_ b: [UInt8], maxPixels: Int = 100_000_000) throws -> RGBImage {
        let h = try parseHeader(b)
        guard h.width * h.height <= maxPixels else { throw ImageError.tooLarge(width: h.width, height: h.height, limit: maxPixels) }
        // Byte offsets of R, G, B inside a pixel (little-endian BGR order unless masks say otherwise).
        var channelBytes = [2, 1, 0]
        switch (h.compression, h.bitsPerPixel) {
        case (0, 1), (0, 4), (0, 8), (0, 24), (0, 32): break
        case (3, 32), (6, 32):  // BI_BITFIELDS / BI_ALPHABITFIELDS: masks after the 40-byte header or inside V4/V5
            guard b.count >= 14 + 40 + 12 else { throw ImageError.truncated("BMP ends inside its colour masks") }
            let masks = [u32(b, 54), u32(b, 58), u32(b, 62)]
            let byteOf: [Int: Int] = [0xFF: 0, 0xFF00: 1, 0xFF_0000: 2, 0xFF00_0000: 3]
            guard let r = byteOf[masks[0]], let g = byteOf[masks[1]], let bl = byteOf[masks[2]] else {
                throw ImageError.unsupported("32-bit BMP with colour masks \(masks.map { String($0, radix: 16) }) (only byte-aligned masks are decoded)")
            }
            channelBytes = [r, g, bl]
        case (1, _), (2, _): throw ImageError.unsupported("RLE-compressed BMP")
        case (4, _), (5, _): throw ImageError.unsupported("BMP holding an embedded JPEG/PNG")
        case (0, let bpp), (3, let bpp): throw ImageError.unsupported("\(bpp)-bit BMP (1/4/8/24/32-bit are decoded)")
        default: throw ImageError.unsupported("BMP compression \(h.compression) with \(h.bitsPerPixel) bits per pixel")
        }
        var palette: [(UInt8, UInt8, UInt8)] = []
        if h.bitsPerPixel <= 8 {
            let count = h.colorsUsed == 0 ? 1 << h.bitsPerPixel : h.colorsUsed
            guard count <= 1 << h.bitsPerPixel else { throw ImageError.corrupt("BMP palette of \(count) colours for \(h.bitsPerPixel)-bit pixels") }
            let start = 14 + h.headerSize
            guard start + 4 * count <= b.count else { throw ImageError.truncated("BMP ends inside its palette") }
            palette = (0..<count).map { i in (b[start + 4 * i + 2], b[start + 4 * i + 1], b[start + 4 * i]) }
        }
        let rowBytes = ((h.width * h.bitsPerPixel + 31) / 32) * 4  // rows padded to 4 bytes
        let (needed, overflow) = rowBytes.multipliedReportingOverflow(by: h.height)
        guard !overflow, h.dataOffset >= 14 + h.headerSize, h.dataOffset <= b.count, needed <= b.count - h.dataOffset else {
            throw ImageError.truncated("BMP pixel data (\(rowBytes) x \(h.height) bytes at offset \(h.dataOffset)) runs past the end of the \(b.count)-byte file")
        }
        var pixels = [UInt8](repeating: 0, count: h.width * h.height * 3)
        for y in 0..<h.height {
            let row = h.dataOffset + (h.topDown ? y : h.height - 1 - y) * rowBytes
            for x in 0..<h.width {
                let o = 3 * (y * h.width + x)
                switch h.bitsPerPixel {
                case 24, 32:
                    let p = row + x * h.bitsPerPixel / 8
                    pixels[o] = b[p + channelBytes[0]]; pixels[o + 1] = b[p + channelBytes[1]]; pixels[o + 2] = b[p + channelBytes[2]]
                default:
                    let bit = x * h.bitsPerPixel
                    let byte = b[row + bit / 8]
                    let index = Int(byte >> UInt8(8 - h.bitsPerPixel - bit % 8)) & ((1 << h.bitsPerPixel) - 1)
                    guard index < palette.count else { throw ImageError.corrupt("BMP pixel (\(x), \(y)) uses colour \(index) of a \(palette.count)-colour palette") }
                    (pixels[o], pixels[o + 1], pixels[o + 2]) = palette[index]
                }
            }
        }
        return try RGBImage(width: h.width, height: h.height, pixels: pixels)
    }
}

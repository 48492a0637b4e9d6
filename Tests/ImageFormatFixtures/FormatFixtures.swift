import CGIF
import CWebP
import ELIPImage
import Foundation

/// Writes PNG (any colour type and bit depth, stored deflate), BMP (by hand), GIF (giflib's
/// encoder) and WebP (libwebp's lossless encoder) bytes for the decoder tests.
public enum FormatFixtures {
    public static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    public static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    public static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    public static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }

    /// zlib stream of stored (uncompressed) deflate blocks.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            out.append(i + n == data.count ? 1 : 0)
            out += le16(n) + le16(~n & 0xFFFF) + data[i..<(i + n)]
            i += n
        } while i < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return out + be32(b << 16 | a)
    }

    /// PNG from packed scanlines (filter byte 0 is added).
    public static func png(width: Int, height: Int, colorType: UInt8, bitDepth: UInt8, rows: [[UInt8]],
                    palette: [(UInt8, UInt8, UInt8)] = [], transparency: [UInt8]? = nil) -> [UInt8] {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [bitDepth, colorType, 0, 0, 0])
        if !palette.isEmpty { out += chunk("PLTE", palette.flatMap { [$0.0, $0.1, $0.2] }) }
        if let transparency { out += chunk("tRNS", transparency) }
        out += chunk("IDAT", zlibStored(rows.flatMap { [0] + $0 }))
        return out + chunk("IEND", [])
    }

    /// Packs samples of `bits` bits (1/2/4) into bytes, most significant first.
    public static func pack(_ samples: [Int], bits: Int) -> [UInt8] {
        var out: [UInt8] = []
        var byte = 0, used = 0
        for s in samples {
            byte = byte << bits | s
            used += bits
            if used == 8 { out.append(UInt8(byte)); byte = 0; used = 0 }
        }
        if used > 0 { out.append(UInt8(byte << (8 - used))) }
        return out
    }

    /// BMP with a 40-byte header; `pixelRows` are the stored rows (already padded), in file order.
    public static func bmp(width: Int, height: Int, bitsPerPixel: Int, compression: Int = 0, palette: [(UInt8, UInt8, UInt8)] = [],
                    pixelRows: [[UInt8]], masks: [Int]? = nil) -> [UInt8] {
        let paletteBytes: [UInt8] = palette.flatMap { [$0.2, $0.1, $0.0, 0] }
        let maskBytes: [UInt8] = masks.map { m in m.flatMap { le32($0) } } ?? []
        let offset = 14 + 40 + maskBytes.count + paletteBytes.count
        let data: [UInt8] = pixelRows.flatMap { $0 }
        var out: [UInt8] = Array("BM".utf8) + le32(offset + data.count) + le32(0) + le32(offset)
        out += le32(40) + le32(width) + le32(height) + le16(1) + le16(bitsPerPixel) + le32(compression) + le32(data.count)
            + le32(2835) + le32(2835) + le32(palette.count) + le32(0)
        return out + maskBytes + paletteBytes + data
    }

    /// GIF through giflib: `frames` of palette indices (first frame at `origin`), optional
    /// transparency index on the first frame, interlaced or not.
    public static func gif(width: Int, height: Int, palette: [(UInt8, UInt8, UInt8)], frames: [(origin: (Int, Int), size: (Int, Int), indices: [UInt8])],
                    transparent: UInt8? = nil, interlace: Bool = false) -> [UInt8] {
        final class Sink { var bytes: [UInt8] = [] }
        let sink = Sink()
        let write: OutputFunc = { gif, data, count in
            let s = Unmanaged<Sink>.fromOpaque(gif!.pointee.UserData!).takeUnretainedValue()
            s.bytes += UnsafeBufferPointer(start: data, count: Int(count))
            return count
        }
        var error: Int32 = 0
        let file = EGifOpen(Unmanaged.passUnretained(sink).toOpaque(), write, &error)!
        EGifSetGifVersion(file, true)
        var colors = palette.map { GifColorType(Red: $0.0, Green: $0.1, Blue: $0.2) }
        var size = 2
        while size < colors.count { size *= 2 }
        colors += Array(repeating: GifColorType(Red: 0, Green: 0, Blue: 0), count: size - colors.count)
        let map = GifMakeMapObject(Int32(size), &colors)
        EGifPutScreenDesc(file, Int32(width), Int32(height), 8, 0, map)
        for (n, frame) in frames.enumerated() {
            if n == 0, let t = transparent {
                var gce: [UInt8] = [1, 0, 0, t]
                EGifPutExtension(file, GRAPHICS_EXT_FUNC_CODE, 4, &gce)
            }
            EGifPutImageDesc(file, Int32(frame.origin.0), Int32(frame.origin.1), Int32(frame.size.0), Int32(frame.size.1), interlace, nil)
            let rowOrder = interlace
                ? [(0, 8), (4, 8), (2, 4), (1, 2)].flatMap { s, step in Array(stride(from: s, to: frame.size.1, by: step)) }
                : Array(0..<frame.size.1)
            for y in rowOrder {
                var line = Array(frame.indices[(y * frame.size.0)..<((y + 1) * frame.size.0)])
                EGifPutLine(file, &line, Int32(frame.size.0))
            }
        }
        EGifCloseFile(file, &error)
        GifFreeMapObject(map)
        return withExtendedLifetime(sink) { sink.bytes }
    }

    /// Lossless WebP of RGB or RGBA pixels.
    public static func webp(width: Int, height: Int, pixels: [UInt8], alpha: Bool) -> [UInt8] {
        var output: UnsafeMutablePointer<UInt8>? = nil
        let size = pixels.withUnsafeBufferPointer { p in
            alpha ? WebPEncodeLosslessRGBA(p.baseAddress, Int32(width), Int32(height), Int32(width * 4), &output)
                  : WebPEncodeLosslessRGB(p.baseAddress, Int32(width), Int32(height), Int32(width * 3), &output)
        }
        defer { WebPFree(output) }
        return Array(UnsafeBufferPointer(start: output, count: size))
    }

    /// A JPEG of a smooth gradient.
    public static func jpeg(width: Int, height: Int) throws -> [UInt8] {
        var px: [UInt8] = []
        for y in 0..<height { for x in 0..<width { px += [UInt8(x * 255 / max(1, width - 1)), UInt8(y * 255 / max(1, height - 1)), 90] } }
        return try JPEG.encode(try RGBImage(width: width, height: height, pixels: px), quality: 90)
    }
}

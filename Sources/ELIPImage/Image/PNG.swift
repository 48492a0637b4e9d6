// PNG encode/decode through libpng's *simplified* API (png_image, libpng >= 1.6; installed 1.6.39).
//
// libpng's classic API reports errors with setjmp/longjmp, which must never unwind through Swift
// frames. The simplified API runs every libpng call inside libpng's own png_safe_execute (the
// setjmp and the longjmp both stay in C) and reports failure through its return value and
// `png_image.message`, so it is safe to call from Swift without a C helper target.
//
// Decoding: any PNG (palette, grey, grey+alpha, RGB, RGBA, tRNS, 1-16 bit, interlaced) is converted
// by libpng to 8-bit RGB or RGBA. Alpha handling (`PNGAlphaHandling`):
//   - `.strip` (default): drop the alpha channel and keep the stored colour values. This is what
//     PIL's `Image.open(p).convert("RGB")` does for RGBA/LA/P+tRNS images.
//   - `.compositeOnBlack` / `.compositeOnWhite`: out = (c * a + bg * (255 - a) + 127) / 255 per
//     channel, in the stored (sRGB-encoded) values, not in linear light.
// Differences from PIL (documented, rare in photo datasets): libpng applies a gAMA chunk that
// differs from sRGB when producing 8-bit output; 16-bit samples are read as sRGB-encoded and
// rounded to 8 bits (v / 257) where PIL keeps the high byte (v >> 8), at most one level apart;
// and for 16-bit greyscale PIL's "I;16" -> RGB conversion clips every value above 255 to white,
// which is not reproduced (the grey levels are kept, as for 16-bit colour).
// The pixel limit (default 100 MP) is checked after the header is read and before the pixel buffer
// is allocated.

import CPNG
import Foundation

public enum PNGAlphaHandling: Sendable, Equatable {
    case strip
    case compositeOnBlack
    case compositeOnWhite
}

public struct PNGDecodeOptions: Sendable, Equatable {
    public var maxPixels: Int = 100_000_000
    public var alpha: PNGAlphaHandling = .strip

    public init(maxPixels: Int = 100_000_000, alpha: PNGAlphaHandling = .strip) {
        self.maxPixels = maxPixels
        self.alpha = alpha
    }

    public static let `default` = PNGDecodeOptions()
}

/// Raw 8-bit pixel layouts for PNG encoding.
public enum PNGPixelFormat: Sendable {
    case gray, grayAlpha, rgb, rgba

    var channels: Int {
        switch self {
        case .gray: return 1
        case .grayAlpha: return 2
        case .rgb: return 3
        case .rgba: return 4
        }
    }

    var pngFormat: UInt32 {
        switch self {
        case .gray: return 0
        case .grayAlpha: return PNGConst.flagAlpha
        case .rgb: return PNGConst.flagColor
        case .rgba: return PNGConst.flagColor | PNGConst.flagAlpha
        }
    }
}

enum PNGConst {
    // png.h PNG_FORMAT_FLAG_* (spelled out: the composite macros do not import into Swift).
    static let flagAlpha: UInt32 = 0x01
    static let flagColor: UInt32 = 0x02
    static let flagLinear: UInt32 = 0x04
    static let flagColormap: UInt32 = 0x08
    static let version: UInt32 = 1       // PNG_IMAGE_VERSION
    static let flag16BitSRGB: UInt32 = 0x04  // PNG_IMAGE_FLAG_16BIT_sRGB
}

public enum PNG {
    // MARK: decode

    /// Decodes PNG bytes to 8-bit RGB.
    public static func decode<B: ContiguousBytes>(_ bytes: B, options: PNGDecodeOptions = .default) throws -> RGBImage {
        try bytes.withUnsafeBytes { try decode(buffer: $0, options: options) }
    }

    /// Reads the header only: (width, height, hasAlpha).
    public static func header<B: ContiguousBytes>(_ bytes: B) throws -> (width: Int, height: Int, hasAlpha: Bool) {
        try bytes.withUnsafeBytes { raw in
            let image = try beginRead(raw)
            defer { release(image) }
            return (Int(image.pointee.width), Int(image.pointee.height), image.pointee.format & PNGConst.flagAlpha != 0)
        }
    }

    /// A zeroed `png_image` at a stable heap address. libpng keeps a pointer to the struct (as the
    /// error-handler context) for the lifetime of its control block, so it must never be moved or
    /// copied while `opaque` is set: always pass this pointer, never a Swift `inout` copy.
    private static func allocateImage() -> UnsafeMutablePointer<png_image> {
        let p = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
        p.initialize(to: png_image())
        p.pointee.version = PNGConst.version
        p.pointee.opaque = nil
        return p
    }

    /// Frees libpng's control block (no-op if already freed) and the struct itself.
    private static func release(_ p: UnsafeMutablePointer<png_image>) {
        png_image_free(p)
        p.deinitialize(count: 1)
        p.deallocate()
    }

    private static func beginRead(_ raw: UnsafeRawBufferPointer) throws -> UnsafeMutablePointer<png_image> {
        if raw.isEmpty { throw ImageError.empty }
        let fmt = sniffImageFormat(raw)
        guard fmt == .png else { throw ImageError.wrongFormat(expected: "PNG", detected: fmt) }
        let image = allocateImage()
        guard png_image_begin_read_from_memory(image, raw.baseAddress, raw.count) != 0 else {
            let msg = message(of: image)
            release(image)
            throw classify(msg)
        }
        return image
    }

    private static func decode(buffer raw: UnsafeRawBufferPointer, options: PNGDecodeOptions) throws -> RGBImage {
        let image = try beginRead(raw)
        defer { release(image) }               // png_image_free is idempotent

        // 16-bit samples without gAMA/sRGB are sRGB-encoded as PIL reads them, not linear light
        // (libpng's default for 16-bit, which would brighten them): PNG_IMAGE_FLAG_16BIT_sRGB.
        image.pointee.flags |= PNGConst.flag16BitSRGB
        let width = Int(image.pointee.width), height = Int(image.pointee.height)
        guard width > 0, height > 0 else { throw ImageError.corrupt("zero image size") }
        try JPEGDecoder.checkLimit(width: width, height: height, limit: options.maxPixels)

        let hasAlpha = image.pointee.format & PNGConst.flagAlpha != 0
        let channels = hasAlpha ? 4 : 3
        let stride = width * channels
        guard stride <= Int(Int32.max) else {
            throw ImageError.tooLarge(width: width, height: height, limit: options.maxPixels)
        }
        image.pointee.format = hasAlpha ? (PNGConst.flagColor | PNGConst.flagAlpha) : PNGConst.flagColor

        let count = stride * height
        var ok: Int32 = 0
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            buf.initialize(repeating: 0)
            ok = png_image_finish_read(image, nil, buf.baseAddress, Int32(stride), nil)
            initialized = count
        }
        guard ok != 0 else { throw classify(message(of: image)) }

        if !hasAlpha {
            return RGBImage(uncheckedWidth: width, height: height, pixels: buffer)
        }
        let n = width * height
        let bg: Int
        switch options.alpha {
        case .strip: bg = -1
        case .compositeOnBlack: bg = 0
        case .compositeOnWhite: bg = 255
        }
        let rgb = [UInt8](unsafeUninitializedCapacity: n * 3) { dst, initialized in
            buffer.withUnsafeBufferPointer { src in
                if bg < 0 {
                    for i in 0..<n {
                        dst[i &* 3] = src[i &* 4]
                        dst[i &* 3 &+ 1] = src[i &* 4 &+ 1]
                        dst[i &* 3 &+ 2] = src[i &* 4 &+ 2]
                    }
                } else {
                    for i in 0..<n {
                        let a = Int(src[i &* 4 &+ 3])
                        for c in 0..<3 {
                            let v = (Int(src[i &* 4 &+ c]) &* a &+ bg &* (255 &- a) &+ 127) / 255
                            dst[i &* 3 &+ c] = UInt8(truncatingIfNeeded: v)
                        }
                    }
                }
            }
            initialized = n * 3
        }
        return RGBImage(uncheckedWidth: width, height: height, pixels: rgb)
    }

    private static func classify(_ msg: String) -> ImageError {
        let lower = msg.lowercased()
        if lower.contains("end of data") || lower.contains("not enough") || lower.contains("truncat")
            || lower.contains("eof") {
            return .truncated(msg)
        }
        if lower.contains("not a png") || lower.contains("signature") { return .corrupt(msg) }
        if lower.contains("unsupported") || lower.contains("not supported") { return .unsupported(msg) }
        return .corrupt(msg)
    }

    private static func message(of image: UnsafeMutablePointer<png_image>) -> String {
        withUnsafeBytes(of: image.pointee.message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            let s = String(decoding: bytes, as: UTF8.self)
            return s.isEmpty ? "libpng error" : s
        }
    }

    // MARK: encode

    /// Encodes an RGB image to PNG bytes.
    public static func encode(_ image: RGBImage) throws -> [UInt8] {
        try encode(bytes: image.pixels, width: image.width, height: image.height, format: .rgb)
    }

    /// Encodes raw 8-bit interleaved pixels (no row padding) to PNG bytes.
    public static func encode(bytes: [UInt8], width: Int, height: Int, format: PNGPixelFormat) throws -> [UInt8] {
        let image = try writeImage(width: width, height: height, format: format, byteCount: bytes.count)
        defer { release(image) }
        // First pass measures, second writes (each call sets up and frees its own libpng state).
        var size: Int = 0
        let probe = bytes.withUnsafeBytes { src in
            png_image_write_to_memory(image, nil, &size, 0, src.baseAddress, 0, nil)
        }
        guard probe != 0, size > 0 else { throw ImageError.encodeFailed(message(of: image)) }
        var out = [UInt8](repeating: 0, count: size)
        var written = size
        let ok = bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                png_image_write_to_memory(image, dst.baseAddress, &written, 0, src.baseAddress, 0, nil)
            }
        }
        guard ok != 0, written <= size else { throw ImageError.encodeFailed(message(of: image)) }
        out.removeLast(size - written)
        return out
    }

    /// Writes an RGB image as a PNG file.
    public static func write(_ image: RGBImage, toFile path: String) throws {
        try write(bytes: image.pixels, width: image.width, height: image.height, format: .rgb, toFile: path)
    }

    /// Writes raw 8-bit pixels as a PNG file.
    public static func write(bytes: [UInt8], width: Int, height: Int, format: PNGPixelFormat, toFile path: String) throws {
        let image = try writeImage(width: width, height: height, format: format, byteCount: bytes.count)
        defer { release(image) }
        let ok = bytes.withUnsafeBytes { src in
            png_image_write_to_file(image, path, 0, src.baseAddress, 0, nil)
        }
        guard ok != 0 else { throw ImageError.io("\(path): \(message(of: image))") }
    }

    private static func writeImage(width: Int, height: Int, format: PNGPixelFormat,
                                   byteCount: Int) throws -> UnsafeMutablePointer<png_image> {
        guard width > 0, height > 0, width <= Int(Int32.max) / 4, height <= Int(Int32.max) else {
            throw ImageError.invalidImage("PNG dimensions must be positive, got \(width)x\(height)")
        }
        let (n, o) = width.multipliedReportingOverflow(by: height * format.channels)
        guard !o, n == byteCount else {
            throw ImageError.invalidImage("expected \(width)x\(height)x\(format.channels) bytes, got \(byteCount)")
        }
        let image = allocateImage()
        image.pointee.width = UInt32(width)
        image.pointee.height = UInt32(height)
        image.pointee.format = format.pngFormat
        return image
    }
}

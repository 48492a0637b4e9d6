// JPEG decoding/encoding through the TurboJPEG API of libjpeg-turbo (the installed 2.1.x has the
// classic tjInitDecompress / tjDecompressHeader3 / tjDecompress2 / tjCompress2 API; no tj3).
//
// Decoding pipeline (never traps on any byte sequence; every failure is an `ImageError`):
//   1. magic check (FF D8 FF), otherwise `.empty` / `.wrongFormat`;
//   2. our own bounds-checked marker walk up to SOS: finds SOFn (size, precision, components, coding
//      process), the first APP1 "Exif" segment (orientation tag 0x0112 of IFD0) and whether an Adobe
//      APP14 segment exists; data ending before SOS is `.truncated`;
//   3. pixel limit (`maxPixels`, default 100 MP) checked on the SOF size BEFORE libjpeg allocates
//      anything, then again on the size tjDecompressHeader3 reports;
//   4. tjDecompress2 to RGB (grey is expanded by libjpeg), or to CMYK for 4-component files, which
//      we convert with Pillow's formula (Adobe/inverted polarity assumed, as Pillow does);
//   5. EXIF orientation 2...8 applied (optional; note that PIL's `Image.open(...).convert("RGB")`,
//      which ALBEF uses, does NOT apply it - set `applyEXIFOrientation = false` for strict parity).
//
// libjpeg warnings: TurboJPEG returns -1 with tjGetErrorCode == TJERR_WARNING when libjpeg emitted
// a warning but still produced an image. A truncated file always produces one ("Premature end of
// JPEG file": the memory source inserts a fake EOI and warns). Policy `.rejectTruncated` (default)
// rejects truncation (confirmed either by that message or by a structural walk that finds no EOI
// marker after the scan data) and accepts other warnings ("extraneous bytes before marker" and the
// like, which PIL also accepts); `.rejectAll` rejects every warning (decoding stops at the first).
//
// Thread rules: a `JPEGDecoder` / `JPEGEncoder` owns a TurboJPEG handle and must be used by one
// thread at a time (keep one per loader thread). The static helpers create a temporary handle.

import CTurboJPEG
import Foundation

/// How libjpeg warnings (recoverable errors) are treated.
public enum JPEGWarningPolicy: Sendable, Equatable {
    /// Reject truncated files, accept images that only produced other warnings (PIL-like).
    case rejectTruncated
    /// Reject on any warning.
    case rejectAll
}

public struct JPEGDecodeOptions: Sendable, Equatable {
    /// Maximum width * height accepted (checked from the header, before allocation).
    public var maxPixels: Int = 100_000_000
    /// Apply the EXIF orientation tag (1-8). PIL's plain `Image.open` does not.
    public var applyEXIFOrientation: Bool = true
    public var warningPolicy: JPEGWarningPolicy = .rejectTruncated
    /// Use the fast integer IDCT (slightly less accurate, a bit faster). Default: accurate (ISLOW),
    /// which is what PIL uses.
    public var fastDCT: Bool = false
    /// Use libjpeg's fast (non-"fancy") chroma upsampling. Default off (PIL uses fancy upsampling).
    public var fastUpsample: Bool = false

    public init(maxPixels: Int = 100_000_000, applyEXIFOrientation: Bool = true,
                warningPolicy: JPEGWarningPolicy = .rejectTruncated,
                fastDCT: Bool = false, fastUpsample: Bool = false) {
        self.maxPixels = maxPixels
        self.applyEXIFOrientation = applyEXIFOrientation
        self.warningPolicy = warningPolicy
        self.fastDCT = fastDCT
        self.fastUpsample = fastUpsample
    }

    public static let `default` = JPEGDecodeOptions()
}

/// Header facts gathered by our own marker walk (no decoding).
public struct JPEGHeaderInfo: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// Number of colour components (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK).
    public var components: Int
    /// Sample precision in bits (8 for everything libjpeg-turbo's 8-bit build decodes).
    public var precision: Int
    /// SOF marker byte (0xC0 baseline, 0xC1 extended, 0xC2 progressive, 0xC9/0xCA arithmetic, ...).
    public var sofMarker: UInt8
    /// EXIF orientation 1...8 if an Exif APP1 segment carried a valid tag, else nil.
    public var exifOrientation: Int?
    /// True if an Adobe APP14 segment is present.
    public var hasAdobeMarker: Bool
    /// Offset of the SOS marker (0xFF of FF DA).
    var sosOffset: Int

    /// Width and height as displayed after the EXIF orientation is applied.
    public var orientedSize: (width: Int, height: Int) {
        if let o = exifOrientation, o >= 5 { return (height, width) }
        return (width, height)
    }
}

/// Chroma subsampling for encoding.
public enum JPEGSubsampling: Sendable {
    case s444, s422, s420, gray

    var tj: Int32 {
        switch self {
        case .s444: return Int32(TJSAMP_444.rawValue)
        case .s422: return Int32(TJSAMP_422.rawValue)
        case .s420: return Int32(TJSAMP_420.rawValue)
        case .gray: return Int32(TJSAMP_GRAY.rawValue)
        }
    }
}

/// Raw pixel layouts accepted by the encoder.
public enum JPEGInputPixelFormat: Sendable {
    /// 3 bytes per pixel R G B.
    case rgb
    /// 1 byte per pixel (forces a single-component greyscale JPEG).
    case gray
    /// 4 bytes per pixel C M Y K, written as a 4-component (YCCK-coded, Adobe-marked) JPEG. Values
    /// are stored as given; decoders (ours and PIL) interpret them with Adobe "inverted" polarity,
    /// i.e. 255 = no ink.
    case cmyk

    var tj: Int32 {
        switch self {
        case .rgb: return Int32(TJPF_RGB.rawValue)
        case .gray: return Int32(TJPF_GRAY.rawValue)
        case .cmyk: return Int32(TJPF_CMYK.rawValue)
        }
    }

    var bytesPerPixel: Int {
        switch self {
        case .rgb: return 3
        case .gray: return 1
        case .cmyk: return 4
        }
    }
}

// MARK: - decoder

/// A reusable JPEG decoder (owns one TurboJPEG decompression handle). Not thread-safe: use one per
/// thread.
public final class JPEGDecoder {
    private var handle: tjhandle

    public init() throws {
        guard let h = tjInitDecompress() else {
            throw ImageError.unsupported("tjInitDecompress failed: \(JPEGDecoder.globalErrorString())")
        }
        handle = h
    }

    deinit { tjDestroy(handle) }

    /// Decodes JPEG bytes to an RGB image.
    public func decode<B: ContiguousBytes>(_ bytes: B, options: JPEGDecodeOptions = .default) throws -> RGBImage {
        try bytes.withUnsafeBytes { try decode(buffer: $0, options: options) }
    }

    /// Header only (our marker walk): size, components, orientation. Throws like `decode`.
    public func header<B: ContiguousBytes>(_ bytes: B) throws -> JPEGHeaderInfo {
        try bytes.withUnsafeBytes { raw in
            try JPEGMarkers.checkMagic(raw)
            return try JPEGMarkers.scan(raw)
        }
    }

    private func decode(buffer raw: UnsafeRawBufferPointer, options: JPEGDecodeOptions) throws -> RGBImage {
        do {
            return try decodeOnce(buffer: raw, options: options)
        } catch {
            // TurboJPEG can leave a handle unusable after some failures (e.g. "Bogus marker
            // length" makes every later valid image fail with "Bogus Huffman table definition"):
            // a loader worker would then reject every following record. Start afresh.
            if let fresh = tjInitDecompress() {
                tjDestroy(handle)
                handle = fresh
            }
            throw error
        }
    }

    private func decodeOnce(buffer raw: UnsafeRawBufferPointer, options: JPEGDecodeOptions) throws -> RGBImage {
        try JPEGMarkers.checkMagic(raw)
        let info = try JPEGMarkers.scan(raw)
        guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { throw ImageError.empty }

        // Structural sanity before libjpeg sees anything.
        switch info.sofMarker {
        case 0xC3, 0xC7, 0xCB, 0xCF:
            throw ImageError.unsupported("lossless JPEG (SOF\(info.sofMarker - 0xC0))")
        case 0xC5, 0xC6, 0xCD, 0xCE:
            throw ImageError.unsupported("hierarchical JPEG (SOF\(info.sofMarker - 0xC0))")
        default: break
        }
        guard info.precision == 8 else { throw ImageError.unsupported("\(info.precision)-bit samples") }
        guard info.components == 1 || info.components == 3 || info.components == 4 else {
            throw ImageError.unsupported("\(info.components) colour components")
        }
        guard info.width > 0 else { throw ImageError.corrupt("zero image width") }
        guard info.height > 0 else { throw ImageError.unsupported("height defined by DNL marker") }
        try Self.checkLimit(width: info.width, height: info.height, limit: options.maxPixels)

        // Header through TurboJPEG (cheap: parses markers, allocates no pixel memory).
        var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        let rcHeader = tjDecompressHeader3(handle, base, UInt(raw.count), &w, &h, &subsamp, &colorspace)
        if rcHeader != 0 {
            let message = errorString()
            if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) {
                try handleWarning(message, raw: raw, info: info, policy: options.warningPolicy)
            } else if message.contains("subsampling"), w > 0, h > 0 {
                // TurboJPEG 2.1 refuses to *name* unusual sampling factors here; libjpeg itself
                // decodes them fine, so carry on with the sizes it did read.
            } else {
                throw Self.classifyFatal(message)
            }
        }
        guard Int(w) == info.width, Int(h) == info.height else {
            throw ImageError.corrupt("header size \(w)x\(h) disagrees with SOF \(info.width)x\(info.height)")
        }
        try Self.checkLimit(width: Int(w), height: Int(h), limit: options.maxPixels)

        let width = info.width, height = info.height
        let isCMYK = info.components == 4
        let pixelFormat = isCMYK ? Int32(TJPF_CMYK.rawValue) : Int32(TJPF_RGB.rawValue)
        let bpp = isCMYK ? 4 : 3
        var flags = TJFLAG_LIMITSCANS
        if options.warningPolicy == .rejectAll { flags |= TJFLAG_STOPONWARNING }
        if options.fastDCT { flags |= TJFLAG_FASTDCT } else { flags |= TJFLAG_ACCURATEDCT }
        if options.fastUpsample { flags |= TJFLAG_FASTUPSAMPLE }

        let count = width * height * bpp
        var rc: Int32 = 0
        var out = [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            // Zero-fill is unnecessary for success, but on failure we return nothing anyway;
            // libjpeg writes every row it produces and the buffer is discarded otherwise.
            rc = tjDecompress2(handle, base, UInt(raw.count), buf.baseAddress, Int32(width), 0,
                               Int32(height), pixelFormat, flags)
            initialized = count
        }
        if rc != 0 {
            let message = errorString()
            if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) {
                try handleWarning(message, raw: raw, info: info, policy: options.warningPolicy)
            } else {
                throw Self.classifyFatal(message)
            }
        }

        if isCMYK { out = Self.cmykToRGB(out, pixelCount: width * height) }
        var image = RGBImage(uncheckedWidth: width, height: height, pixels: out)
        if options.applyEXIFOrientation, let o = info.exifOrientation, o != 1 {
            image = image.applyingEXIFOrientation(o)
        }
        return image
    }

    /// Decides what a libjpeg warning means; returns normally if the image is acceptable.
    private func handleWarning(_ message: String, raw: UnsafeRawBufferPointer, info: JPEGHeaderInfo,
                               policy: JPEGWarningPolicy) throws {
        let lower = message.lowercased()
        if lower.contains("premature end of jpeg file") { throw ImageError.truncated(message) }
        if !JPEGMarkers.hasEOIAfterScan(raw, sosOffset: info.sosOffset) {
            throw ImageError.truncated("no EOI marker after the scan data (\(message))")
        }
        if policy == .rejectAll { throw ImageError.corrupt(message) }
    }

    static func classifyFatal(_ message: String) -> ImageError {
        let lower = message.lowercased()
        if lower.contains("premature end") { return .truncated(message) }
        if lower.contains("unsupported") || lower.contains("not implemented")
            || lower.contains("not supported") {
            return .unsupported(message)
        }
        return .corrupt(message)
    }

    static func checkLimit(width: Int, height: Int, limit: Int) throws {
        let (n, o) = width.multipliedReportingOverflow(by: height)
        if o || n > limit { throw ImageError.tooLarge(width: width, height: height, limit: limit) }
    }

    private func errorString() -> String {
        guard let p = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
        return String(cString: p)
    }

    static func globalErrorString() -> String {
        guard let p = tjGetErrorStr2(nil) else { return "unknown TurboJPEG error" }
        return String(cString: p)
    }

    /// CMYK (Adobe inverted polarity, as Pillow assumes: stored 255 = no ink) to RGB, bit-exact with
    /// Pillow's `"CMYK;I"` unpack + `cmyk2rgb`: with C = 255 - stored, nk = 255 - K,
    /// out = nk - muldiv255(C, nk), muldiv255(a, b) = ((t >> 8) + t) >> 8 with t = a*b + 128.
    static func cmykToRGB(_ cmyk: [UInt8], pixelCount n: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: n * 3) { dst, initialized in
            cmyk.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let s = i &* 4, d = i &* 3
                    let nk = Int(src[s &+ 3])             // 255 - K where K = 255 - stored
                    for c in 0..<3 {
                        let ink = 255 &- Int(src[s &+ c])
                        let t = ink &* nk &+ 128
                        let v = nk &- (((t >> 8) &+ t) >> 8)
                        dst[d &+ c] = UInt8(clamping: v)
                    }
                }
            }
            initialized = n * 3
        }
    }
}

// MARK: - encoder

/// A reusable JPEG encoder (owns one TurboJPEG compression handle). Not thread-safe.
public final class JPEGEncoder {
    private let handle: tjhandle

    public init() throws {
        guard let h = tjInitCompress() else {
            throw ImageError.encodeFailed("tjInitCompress failed: \(JPEGDecoder.globalErrorString())")
        }
        handle = h
    }

    deinit { tjDestroy(handle) }

    /// Encodes an RGB image. `quality` 1...100.
    public func encode(_ image: RGBImage, quality: Int = 90, subsampling: JPEGSubsampling = .s420,
                       progressive: Bool = false) throws -> [UInt8] {
        try encode(bytes: image.pixels, width: image.width, height: image.height, format: .rgb,
                   quality: quality, subsampling: subsampling, progressive: progressive)
    }

    /// Encodes raw interleaved pixels (`width * height * bytesPerPixel` bytes, no row padding).
    public func encode(bytes: [UInt8], width: Int, height: Int, format: JPEGInputPixelFormat,
                       quality: Int = 90, subsampling: JPEGSubsampling = .s420,
                       progressive: Bool = false) throws -> [UInt8] {
        guard width > 0, height > 0, width <= 65_535, height <= 65_535 else {
            throw ImageError.invalidImage("JPEG dimensions must be 1...65535, got \(width)x\(height)")
        }
        guard (1...100).contains(quality) else {
            throw ImageError.invalidImage("JPEG quality must be 1...100, got \(quality)")
        }
        guard bytes.count == width * height * format.bytesPerPixel else {
            throw ImageError.invalidImage("expected \(width * height * format.bytesPerPixel) bytes, got \(bytes.count)")
        }
        let samp: JPEGSubsampling = format == .gray ? .gray : (subsampling == .gray ? .gray : subsampling)
        var flags = TJFLAG_ACCURATEDCT
        if progressive { flags |= TJFLAG_PROGRESSIVE }
        var jpegBuf: UnsafeMutablePointer<UInt8>? = nil
        var jpegSize: UInt = 0
        defer { if let p = jpegBuf { tjFree(p) } }
        let rc = bytes.withUnsafeBufferPointer { src -> Int32 in
            tjCompress2(handle, src.baseAddress, Int32(width), 0, Int32(height), format.tj,
                        &jpegBuf, &jpegSize, samp.tj, Int32(quality), flags)
        }
        guard rc == 0, let out = jpegBuf else {
            let msg = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown TurboJPEG error"
            throw ImageError.encodeFailed(msg)
        }
        return Array(UnsafeBufferPointer(start: out, count: Int(jpegSize)))
    }
}

// MARK: - namespace with one-shot helpers

public enum JPEG {
    /// Decodes with a temporary decoder (use `JPEGDecoder` in hot loops).
    public static func decode<B: ContiguousBytes>(_ bytes: B, options: JPEGDecodeOptions = .default) throws -> RGBImage {
        try JPEGDecoder().decode(bytes, options: options)
    }

    /// Header facts from the marker walk, without decoding.
    public static func header<B: ContiguousBytes>(_ bytes: B) throws -> JPEGHeaderInfo {
        try bytes.withUnsafeBytes { raw in
            try JPEGMarkers.checkMagic(raw)
            return try JPEGMarkers.scan(raw)
        }
    }

    public static func encode(_ image: RGBImage, quality: Int = 90, subsampling: JPEGSubsampling = .s420,
                              progressive: Bool = false) throws -> [UInt8] {
        try JPEGEncoder().encode(image, quality: quality, subsampling: subsampling, progressive: progressive)
    }

    public static func encode(bytes: [UInt8], width: Int, height: Int, format: JPEGInputPixelFormat,
                              quality: Int = 90, subsampling: JPEGSubsampling = .s420,
                              progressive: Bool = false) throws -> [UInt8] {
        try JPEGEncoder().encode(bytes: bytes, width: width, height: height, format: format, quality: quality,
                                 subsampling: subsampling, progressive: progressive)
    }
}

// RGBImage: an 8-bit, 3-channel image stored as interleaved HWC bytes (row-major, R G B per pixel),
// plus the error type shared by the image codecs (JPEG.swift, PNG.swift) and resizing (Resize.swift).
//
// The value type never traps on caller input: element accessors return nil / false when out of
// bounds and the initialisers validate sizes (throwing `ImageError.invalidImage`).

/// One RGB pixel.
public struct RGB: Hashable, Sendable, CustomStringConvertible {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    public static let black = RGB(0, 0, 0)
    public static let white = RGB(255, 255, 255)

    public var description: String { "RGB(\(r), \(g), \(b))" }
}

/// Errors from image decoding, encoding and geometric operations.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Zero-length input.
    case empty
    /// The bytes do not start with the expected magic (`expected` is "JPEG" or "PNG"); `detected` is
    /// the sniffed format of the input.
    case wrongFormat(expected: String, detected: ImageFormat)
    /// The data ends before the image is complete.
    case truncated(String)
    /// The data is structurally invalid or the codec reported corruption.
    case corrupt(String)
    /// The header declares more pixels than the configured limit; refused before any pixel buffer
    /// is allocated (decompression-bomb guard).
    case tooLarge(width: Int, height: Int, limit: Int)
    /// Valid but unsupported variant (12-bit or lossless JPEG, arithmetic-less builds, ...).
    case unsupported(String)
    /// A caller-side argument is invalid (bad dimensions, buffer size mismatch, empty crop, ...).
    case invalidImage(String)
    /// Encoding failed inside the codec.
    case encodeFailed(String)
    /// File-system error (write to file).
    case io(String)

    public var description: String {
        switch self {
        case .empty: return "image data is empty"
        case let .wrongFormat(expected, detected): return "not a \(expected) image (detected \(detected))"
        case let .truncated(m): return "truncated image: \(m)"
        case let .corrupt(m): return "corrupt image: \(m)"
        case let .tooLarge(w, h, limit): return "image \(w)x\(h) exceeds the pixel limit \(limit)"
        case let .unsupported(m): return "unsupported image: \(m)"
        case let .invalidImage(m): return "invalid image argument: \(m)"
        case let .encodeFailed(m): return "encoding failed: \(m)"
        case let .io(m): return "I/O error: \(m)"
        }
    }
}

/// An 8-bit RGB image, HWC interleaved: byte `(y * width + x) * 3 + c`.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// Interleaved RGB bytes, `width * height * 3` of them, rows top to bottom.
    public private(set) var pixels: [UInt8]

    /// Bytes per row (`width * 3`).
    public var rowBytes: Int { width &* 3 }
    public var pixelCount: Int { width &* height }
    public var isEmpty: Bool { width == 0 || height == 0 }

    /// Wraps existing bytes; throws if the count does not equal `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        let n = try RGBImage.checkedByteCount(width: width, height: height)
        guard pixels.count == n else {
            throw ImageError.invalidImage("expected \(n) bytes for \(width)x\(height) RGB, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A uniformly filled image.
    public init(width: Int, height: Int, fill: RGB = .black) throws {
        let n = try RGBImage.checkedByteCount(width: width, height: height)
        var px = [UInt8](repeating: 0, count: n)
        if fill != .black {
            var i = 0
            while i < n {
                px[i] = fill.r
                px[i + 1] = fill.g
                px[i + 2] = fill.b
                i += 3
            }
        }
        self.width = width
        self.height = height
        self.pixels = px
    }

    /// Internal unchecked initialiser: the caller guarantees `pixels.count == width * height * 3`.
    init(uncheckedWidth width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Byte count for a width x height RGB image, throwing on negative sizes or overflow.
    static func checkedByteCount(width: Int, height: Int) throws -> Int {
        guard width >= 0, height >= 0 else {
            throw ImageError.invalidImage("negative dimensions \(width)x\(height)")
        }
        let (wh, o1) = width.multipliedReportingOverflow(by: height)
        let (n, o2) = wh.multipliedReportingOverflow(by: 3)
        guard !o1, !o2 else { throw ImageError.invalidImage("dimensions \(width)x\(height) overflow") }
        return n
    }

    // MARK: accessors (bounds-safe)

    public func contains(x: Int, y: Int) -> Bool {
        x >= 0 && y >= 0 && x < width && y < height
    }

    /// The pixel at (x, y), or nil when out of bounds.
    public func pixel(x: Int, y: Int) -> RGB? {
        guard contains(x: x, y: y) else { return nil }
        let i = (y &* width &+ x) &* 3
        return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Sets the pixel at (x, y); returns false (and changes nothing) when out of bounds.
    @discardableResult
    public mutating func setPixel(x: Int, y: Int, _ value: RGB) -> Bool {
        guard contains(x: x, y: y) else { return false }
        let i = (y &* width &+ x) &* 3
        pixels[i] = value.r
        pixels[i + 1] = value.g
        pixels[i + 2] = value.b
        return true
    }

    /// Bounds-safe subscript: reads nil out of bounds; writes out of bounds (or of nil) are ignored.
    public subscript(x: Int, y: Int) -> RGB? {
        get { pixel(x: x, y: y) }
        set {
            if let v = newValue { setPixel(x: x, y: y, v) }
        }
    }

    /// One channel value (c in 0..<3) or nil when out of bounds.
    public func channel(x: Int, y: Int, c: Int) -> UInt8? {
        guard contains(x: x, y: y), c >= 0, c < 3 else { return nil }
        return pixels[(y &* width &+ x) &* 3 &+ c]
    }

    /// Fills a rectangle (clipped to the image).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, with value: RGB) {
        let x0 = max(0, x), y0 = max(0, y)
        let x1 = min(width, x &+ max(0, w)), y1 = min(height, y &+ max(0, h))
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 {
            var i = (yy * width + x0) * 3
            for _ in x0..<x1 {
                pixels[i] = value.r
                pixels[i + 1] = value.g
                pixels[i + 2] = value.b
                i += 3
            }
        }
    }

    /// Read-only access to the raw bytes without copying.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try pixels.withUnsafeBytes(body)
    }

    // MARK: simple geometry

    /// The integer crop [x, x+w) x [y, y+h) intersected with the image; throws if the intersection
    /// is empty.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) throws -> RGBImage {
        let x0 = max(0, x), y0 = max(0, y)
        let x1 = min(width, x &+ max(0, w)), y1 = min(height, y &+ max(0, h))
        guard x0 < x1, y0 < y1 else {
            throw ImageError.invalidImage("crop (\(x), \(y), \(w), \(h)) is empty inside \(width)x\(height)")
        }
        let ow = x1 - x0, oh = y1 - y0
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for yy in 0..<oh {
                    let s = ((y0 + yy) * width + x0) * 3
                    let d = yy * ow * 3
                    for i in 0..<(ow * 3) { dst[d + i] = src[s + i] }
                }
            }
        }
        return RGBImage(uncheckedWidth: ow, height: oh, pixels: out)
    }

    /// Mirror left-right.
    public func flippedHorizontally() -> RGBImage { transformed(.flipHorizontal) }
    /// Mirror top-bottom.
    public func flippedVertically() -> RGBImage { transformed(.flipVertical) }

    /// The 8 axis-aligned transforms (dihedral group), named like PIL's `Image.transpose` methods.
    public enum Transpose: Sendable, CaseIterable {
        case identity
        case flipHorizontal     // PIL FLIP_LEFT_RIGHT
        case flipVertical       // PIL FLIP_TOP_BOTTOM
        case rotate180          // PIL ROTATE_180
        case transpose          // PIL TRANSPOSE: out(x, y) = in(y, x)
        case transverse         // PIL TRANSVERSE: out(x, y) = in(W-1-y, H-1-x)
        case rotate90CW         // PIL ROTATE_270 (PIL rotates counter-clockwise)
        case rotate90CCW        // PIL ROTATE_90

        /// The transform that displays an image stored with EXIF orientation `o` upright
        /// (PIL `ImageOps.exif_transpose`). Values outside 1...8 map to identity.
        public init(exifOrientation o: Int) {
            switch o {
            case 2: self = .flipHorizontal
            case 3: self = .rotate180
            case 4: self = .flipVertical
            case 5: self = .transpose
            case 6: self = .rotate90CW
            case 7: self = .transverse
            case 8: self = .rotate90CCW
            default: self = .identity
            }
        }

        var swapsAxes: Bool {
            switch self {
            case .transpose, .transverse, .rotate90CW, .rotate90CCW: return true
            default: return false
            }
        }
    }

    /// Applies one of the eight axis-aligned transforms.
    public func transformed(_ t: Transpose) -> RGBImage {
        if t == .identity || isEmpty { return t.swapsAxes ? RGBImage(uncheckedWidth: height, height: width, pixels: pixels) : self }
        let W = width, H = height
        let ow = t.swapsAxes ? H : W
        let oh = t.swapsAxes ? W : H
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        // Source coordinate of output pixel (x, y).
                        let sx: Int, sy: Int
                        switch t {
                        case .identity: sx = x; sy = y
                        case .flipHorizontal: sx = W - 1 - x; sy = y
                        case .flipVertical: sx = x; sy = H - 1 - y
                        case .rotate180: sx = W - 1 - x; sy = H - 1 - y
                        case .transpose: sx = y; sy = x
                        case .transverse: sx = W - 1 - y; sy = H - 1 - x
                        case .rotate90CW: sx = y; sy = H - 1 - x
                        case .rotate90CCW: sx = W - 1 - y; sy = x
                        }
                        let s = (sy * W + sx) * 3
                        let d = (y * ow + x) * 3
                        dst[d] = src[s]
                        dst[d + 1] = src[s + 1]
                        dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(uncheckedWidth: ow, height: oh, pixels: out)
    }

    /// The upright image for EXIF orientation `o` (1...8; anything else is treated as 1).
    public func applyingEXIFOrientation(_ o: Int) -> RGBImage {
        transformed(Transpose(exifOrientation: o))
    }
}

/// Container format detected from magic bytes.
public enum ImageFormat: String, Sendable, Equatable {
    case jpeg, png, other
}

/// Sniffs JPEG (FF D8 FF) or PNG (89 50 4E 47 0D 0A 1A 0A) from the first bytes.
public func sniffImageFormat<B: Collection>(_ bytes: B) -> ImageFormat where B.Element == UInt8 {
    var it = bytes.makeIterator()
    var head = [UInt8]()
    head.reserveCapacity(8)
    while head.count < 8, let b = it.next() { head.append(b) }
    if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
    if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
    return .other
}

// Separable resampling of RGB images, bit-exact with Pillow's `Image.resize(size, BICUBIC / BILINEAR,
// box=...)` for 8-bit images (libImaging/Resample.c, same algorithm reimplemented here):
//
//   * per axis, scale = (in1 - in0) / outSize (box edges are float32 in Pillow, so the subtraction is
//     done in Float), filterscale = max(scale, 1), support = filter.support * filterscale (this is
//     the antialiasing: when downscaling the kernel is stretched by the scale factor);
//   * for output index i: center = in0 + (i + 0.5) * scale; taps xmin = trunc(center - support +
//     0.5) clamped to >= 0 ... xmax = trunc(center + support + 0.5) clamped to <= inSize; weights
//     filter((x - center + 0.5) / filterscale), normalised to sum 1, then converted to fixed point
//     with 22 fractional bits (round half away from zero);
//   * two passes, the intermediate image stored as uint8; each output sample is
//     clamp((2^21 + sum(pixel * weight)) >> 22, 0, 255). Pass order (`ResamplePassOrder`): Pillow
//     <= 12 always runs the horizontal pass first (over only the source rows the vertical pass
//     needs); Pillow 13 (PR #9549) runs the vertical pass first when
//     (inH - outH) > 0 && (inH - outH) > 2 * (inW - outW). The order changes the intermediate
//     rounding, so results differ by a few levels in those cases; both are reproduced exactly.
//   * bicubic kernel: a = -0.5, support 2; bilinear: triangle, support 1.
//
// Crop + resize in one pass (`resized(crop:...)`): with `.clampToCrop` (default) the filter taps are
// clamped to the crop window, which makes the result identical to torchvision's
// `F.resized_crop` = `img.crop((x, y, x + w, y + h)).resize(size, BICUBIC)` for integer crops; for
// fractional boxes the window is [floor(x), ceil(x + w)) and the result equals
// `img.crop(window).resize(size, box=(x - floor(x), ..., ...))`. With `.sourceImage` the taps may
// read source pixels outside the box (clamped to the image): Pillow's `img.resize(size, box=...)`.
//
// Performance: coefficients are computed once per output row / column; both passes run on raw
// buffers with Int32 fixed-point arithmetic; the vertical pass accumulates whole rows so it
// vectorises. No allocation per pixel.

public enum ResampleFilter: Sendable, Equatable {
    case bicubic
    case bilinear

    var support: Double {
        switch self {
        case .bicubic: return 2.0
        case .bilinear: return 1.0
        }
    }

    @inline(__always)
    func weight(_ x0: Double) -> Double {
        let x = x0 < 0 ? -x0 : x0
        switch self {
        case .bicubic:
            let a = -0.5
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        case .bilinear:
            return x < 1.0 ? 1.0 - x : 0.0
        }
    }
}

/// Which Pillow version's pass order to reproduce (see the file header).
public enum ResamplePassOrder: Sendable, Equatable {
    /// Pillow >= 13: vertical pass first when the height shrinks by more than twice as many pixels
    /// as the width. Default (current Pillow).
    case pillow13
    /// Pillow <= 12 (the versions ALBEF-era torchvision pipelines ran with): horizontal first.
    case horizontalFirst
}

/// A crop rectangle in source pixel coordinates (may be fractional).
public struct CropBox: Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.init(x: Double(x), y: Double(y), width: Double(width), height: Double(height))
    }
}

/// Which source pixels the filter taps at the crop border may read.
public enum CropEdgeMode: Sendable, Equatable {
    /// Taps are clamped to the crop window: torchvision `resized_crop` (crop, then resize).
    case clampToCrop
    /// Taps may read pixels outside the box, clamped to the image: Pillow `resize(box=)`.
    case sourceImage
}

/// Upper bound on output pixels of a resize (guards against absurd requests).
let maxResizeOutputPixels = 100_000_000

extension RGBImage {
    /// Resizes the whole image (Pillow `resize((width, height), filter)`).
    public func resized(width outW: Int, height outH: Int, filter: ResampleFilter = .bicubic,
                        order: ResamplePassOrder = .pillow13) throws -> RGBImage {
        try Resampler.resample(self, window: (0, 0, width, height),
                               box: (0, 0, Float(width), Float(height)),
                               outW: outW, outH: outH, filter: filter, order: order)
    }

    /// Crops `crop` and resizes it to `width` x `height` in one pass (see `CropEdgeMode`).
    /// The box must have positive size and lie inside the image.
    public func resized(crop: CropBox, width outW: Int, height outH: Int, filter: ResampleFilter = .bicubic,
                        edges: CropEdgeMode = .clampToCrop, order: ResamplePassOrder = .pillow13) throws -> RGBImage {
        let c = crop
        guard c.x.isFinite, c.y.isFinite, c.width.isFinite, c.height.isFinite,
              c.width > 0, c.height > 0 else {
            throw ImageError.invalidImage("crop box \(c) must be finite with positive size")
        }
        guard c.x >= 0, c.y >= 0, c.x + c.width <= Double(width), c.y + c.height <= Double(height) else {
            throw ImageError.invalidImage("crop box \(c) exceeds the \(width)x\(height) image")
        }
        switch edges {
        case .sourceImage:
            return try Resampler.resample(self, window: (0, 0, width, height),
                                          box: (Float(c.x), Float(c.y), Float(c.x + c.width), Float(c.y + c.height)),
                                          outW: outW, outH: outH, filter: filter, order: order)
        case .clampToCrop:
            let wx0 = Int(c.x.rounded(.down)), wy0 = Int(c.y.rounded(.down))
            let wx1 = min(width, Int((c.x + c.width).rounded(.up)))
            let wy1 = min(height, Int((c.y + c.height).rounded(.up)))
            let bx0 = Float(c.x - Double(wx0)), by0 = Float(c.y - Double(wy0))
            // Float rounding must not push the box past the window edge.
            let bx1 = min(bx0 + Float(c.width), Float(wx1 - wx0))
            let by1 = min(by0 + Float(c.height), Float(wy1 - wy0))
            return try Resampler.resample(self, window: (wx0, wy0, wx1 - wx0, wy1 - wy0),
                                          box: (bx0, by0, bx1, by1),
                                          outW: outW, outH: outH, filter: filter, order: order)
        }
    }

    /// Resizes so that the shorter side equals `size`, keeping the aspect ratio like torchvision's
    /// `Resize(size)` (long side = int(size * long / short)); never upscales: an image whose shorter
    /// side is already <= `size` is returned unchanged.
    public func shorterSide(to size: Int, filter: ResampleFilter = .bicubic,
                            order: ResamplePassOrder = .pillow13) throws -> RGBImage {
        guard size > 0 else { throw ImageError.invalidImage("target size must be positive, got \(size)") }
        let short = min(width, height), long = max(width, height)
        if short <= size { return self }
        let newLong = Int(Double(size) * Double(long) / Double(short))
        if width <= height {
            return try resized(width: size, height: newLong, filter: filter, order: order)
        } else {
            return try resized(width: newLong, height: size, filter: filter, order: order)
        }
    }
}

/// Per-axis filter coefficients in Pillow's fixed-point form.
struct AxisCoefficients {
    /// Taps per output sample (stride of `weights`).
    var ksize: Int
    /// First source index per output sample (relative to the window).
    var start: [Int]
    /// Number of taps per output sample.
    var count: [Int]
    /// `outSize * ksize` fixed-point weights (22 fractional bits).
    var weights: [Int32]

    static let precisionBits = 22

    init(inSize: Int, in0: Float, in1: Float, outSize: Int, filter: ResampleFilter) {
        let scale = Double(in1 - in0) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = filter.support * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        self.ksize = ksize
        start = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let ss = 1.0 / filterscale
        let one = Double(1 << AxisCoefficients.precisionBits)
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            if xmax < 0 { xmax = 0 }
            if xmax > ksize { xmax = ksize }           // cannot happen; keeps indexing provably safe
            var ww = 0.0
            for x in 0..<xmax {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax {
                var w = k[x]
                if ww != 0.0 { w /= ww }
                // (int)(±0.5 + w * 2^22): C truncation toward zero.
                weights[xx * ksize + x] = w < 0 ? Int32(-0.5 + w * one) : Int32(0.5 + w * one)
            }
            start[xx] = xmin
            count[xx] = xmax
        }
    }
}

enum Resampler {
    /// Resamples the source sub-window `window` (x, y, w, h: integer, inside the image) so that the
    /// window-relative box `box` (x0, y0, x1, y1) maps onto outW x outH.
    static func resample(_ src: RGBImage, window: (x: Int, y: Int, w: Int, h: Int),
                         box: (Float, Float, Float, Float), outW: Int, outH: Int,
                         filter: ResampleFilter, order: ResamplePassOrder) throws -> RGBImage {
        guard outW > 0, outH > 0 else {
            throw ImageError.invalidImage("output size must be positive, got \(outW)x\(outH)")
        }
        let (outPixels, overflow) = outW.multipliedReportingOverflow(by: outH)
        guard !overflow, outPixels <= maxResizeOutputPixels else {
            throw ImageError.tooLarge(width: outW, height: outH, limit: maxResizeOutputPixels)
        }
        guard window.w > 0, window.h > 0, window.x >= 0, window.y >= 0,
              window.x + window.w <= src.width, window.y + window.h <= src.height else {
            throw ImageError.invalidImage("empty or out-of-bounds source window")
        }
        let (bx0, by0, bx1, by1) = box
        guard bx0.isFinite, by0.isFinite, bx1.isFinite, by1.isFinite,
              bx0 >= 0, by0 >= 0, bx1 <= Float(window.w), by1 <= Float(window.h),
              bx1 - bx0 > 0, by1 - by0 > 0 else {
            throw ImageError.invalidImage("invalid resample box")
        }

        let inW = window.w, inH = window.h
        // Pillow's tests (note: compares the box end with the OUTPUT size, as Pillow does).
        let needH = outW != inW || bx0 != 0 || bx1 != Float(outW)
        let needV = outH != inH || by0 != 0 || by1 != Float(outH)
        let verticalFirst = order == .pillow13 && (inH - outH) > 0 && (inH - outH) > (inW - outW) * 2

        let srcStride = src.width * 3
        return try src.pixels.withUnsafeBufferPointer { srcBuf throws -> RGBImage in
            // Non-empty (window checks above), so the base address exists; checked anyway.
            guard let srcBase = srcBuf.baseAddress else { throw ImageError.invalidImage("empty image") }
            let origin = srcBase + window.y * srcStride + window.x * 3

            if verticalFirst {
                // Vertical pass over every window column -> inW x outH, then horizontal.
                let vert = AxisCoefficients(inSize: inH, in0: by0, in1: by1, outSize: outH, filter: filter)
                var temp = [UInt8](repeating: 0, count: inW * 3 * outH)
                temp.withUnsafeMutableBufferPointer { t in
                    guard let tb = t.baseAddress else { return }
                    verticalPass(src: origin, srcStride: srcStride, rowOffset: 0, rowBytes: inW * 3,
                                 dst: tb, outH: outH, coeffs: vert)
                }
                guard needH else { return RGBImage(uncheckedWidth: inW, height: outH, pixels: temp) }
                let horiz = AxisCoefficients(inSize: inW, in0: bx0, in1: bx1, outSize: outW, filter: filter)
                var out = [UInt8](repeating: 0, count: outW * 3 * outH)
                temp.withUnsafeBufferPointer { t in
                    out.withUnsafeMutableBufferPointer { o in
                        guard let tb = t.baseAddress, let ob = o.baseAddress else { return }
                        horizontalPass(src: tb, srcStride: inW * 3, rows: outH, dst: ob, outW: outW, coeffs: horiz)
                    }
                }
                return RGBImage(uncheckedWidth: outW, height: outH, pixels: out)
            }

            // Horizontal first (Pillow <= 12 always; Pillow 13 in all other cases).
            let vert = AxisCoefficients(inSize: inH, in0: by0, in1: by1, outSize: outH, filter: filter)
            // Source rows the vertical pass uses.
            let yFirst = vert.start[0]
            let yLast = max(yFirst, vert.start[outH - 1] + vert.count[outH - 1])
            let rowsUsed = needV ? yLast - yFirst : inH
            let rowBase = needV ? yFirst : 0
            let tempW = needH ? outW : inW
            var temp: [UInt8]
            if needH {
                let horiz = AxisCoefficients(inSize: inW, in0: bx0, in1: bx1, outSize: outW, filter: filter)
                temp = [UInt8](repeating: 0, count: outW * 3 * rowsUsed)
                temp.withUnsafeMutableBufferPointer { t in
                    guard let tb = t.baseAddress else { return }
                    horizontalPass(src: origin + rowBase * srcStride, srcStride: srcStride, rows: rowsUsed,
                                   dst: tb, outW: outW, coeffs: horiz)
                }
            } else {
                // Copy the window rows (no horizontal filtering needed).
                temp = [UInt8](repeating: 0, count: inW * 3 * rowsUsed)
                temp.withUnsafeMutableBufferPointer { t in
                    guard let tb = t.baseAddress else { return }
                    for r in 0..<rowsUsed {
                        (tb + r * inW * 3).update(from: origin + (rowBase + r) * srcStride, count: inW * 3)
                    }
                }
            }
            guard needV else { return RGBImage(uncheckedWidth: tempW, height: rowsUsed, pixels: temp) }
            var out = [UInt8](repeating: 0, count: tempW * 3 * outH)
            temp.withUnsafeBufferPointer { t in
                out.withUnsafeMutableBufferPointer { o in
                    guard let tb = t.baseAddress, let ob = o.baseAddress else { return }
                    verticalPass(src: tb, srcStride: tempW * 3, rowOffset: yFirst, rowBytes: tempW * 3,
                                 dst: ob, outH: outH, coeffs: vert)
                }
            }
            return RGBImage(uncheckedWidth: tempW, height: outH, pixels: out)
        }
    }

    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        let s = v >> Int32(AxisCoefficients.precisionBits)
        return s < 0 ? 0 : (s > 255 ? 255 : UInt8(truncatingIfNeeded: s))
    }

    /// Horizontal pass: `rows` rows starting at `src` (stride `srcStride` bytes) -> `outW` pixels
    /// per row, packed in `dst`. Tap indices in `coeffs` are relative to the row start.
    static func horizontalPass(src: UnsafePointer<UInt8>, srcStride: Int, rows: Int,
                               dst: UnsafeMutablePointer<UInt8>, outW: Int, coeffs: AxisCoefficients) {
        let half: Int32 = 1 << Int32(AxisCoefficients.precisionBits - 1)
        let ksize = coeffs.ksize
        coeffs.weights.withUnsafeBufferPointer { kw in
            coeffs.start.withUnsafeBufferPointer { starts in
                coeffs.count.withUnsafeBufferPointer { counts in
                    guard let kBase = kw.baseAddress else { return }
                    for r in 0..<rows {
                        let row = src + r * srcStride
                        var d = dst + r * outW * 3
                        for xx in 0..<outW {
                            let k = kBase + xx * ksize
                            var p = row + starts[xx] * 3
                            var s0 = half, s1 = half, s2 = half
                            for x in 0..<counts[xx] {
                                let w = k[x]
                                s0 = s0 &+ Int32(p[0]) &* w
                                s1 = s1 &+ Int32(p[1]) &* w
                                s2 = s2 &+ Int32(p[2]) &* w
                                p += 3
                            }
                            d[0] = clip8(s0)
                            d[1] = clip8(s1)
                            d[2] = clip8(s2)
                            d += 3
                        }
                    }
                }
            }
        }
    }

    /// Vertical pass: output row yy combines source rows `coeffs.start[yy] - rowOffset + j`
    /// (stride `srcStride`), `rowBytes` bytes each, into packed rows of `dst`.
    static func verticalPass(src: UnsafePointer<UInt8>, srcStride: Int, rowOffset: Int, rowBytes: Int,
                             dst: UnsafeMutablePointer<UInt8>, outH: Int, coeffs: AxisCoefficients) {
        let half: Int32 = 1 << Int32(AxisCoefficients.precisionBits - 1)
        let ksize = coeffs.ksize
        let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowBytes)
        defer { acc.deallocate() }
        coeffs.weights.withUnsafeBufferPointer { kw in
            guard let kBase = kw.baseAddress else { return }
            for yy in 0..<outH {
                acc.initialize(repeating: half, count: rowBytes)
                let k = kBase + yy * ksize
                let first = coeffs.start[yy] - rowOffset
                for j in 0..<coeffs.count[yy] {
                    let w = k[j]
                    let row = src + (first + j) * srcStride
                    for i in 0..<rowBytes {
                        acc[i] = acc[i] &+ Int32(row[i]) &* w
                    }
                }
                let d = dst + yy * rowBytes
                for i in 0..<rowBytes { d[i] = clip8(acc[i]) }
            }
        }
    }
}

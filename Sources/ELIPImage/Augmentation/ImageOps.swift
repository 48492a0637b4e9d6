import Foundation

// The pixel operations of ALBEF's RandAugment (dataset/randaugment.py, used with isPIL=True, so
// the image is an RGB HWC uint8 array), reimplemented to give the same bytes:
//
//   AutoContrast  per channel: lo = min, hi = max; hi <= lo -> unchanged; else
//                 lut[v] = trunc(clamp(v * scale + offset, 0, 255)), scale = 255 / (hi - lo) (float64).
//                 ALBEF computes offset = -lo * scale with lo a numpy uint8, so -lo wraps to 256 - lo
//                 (salesforce/ALBEF issue #134): every channel with lo > 0 becomes 255. `.albef`
//                 reproduces that, `.pil` uses offset = -lo * scale (PIL's ImageOps.autocontrast).
//   Equalize      per channel (PIL's ImageOps.equalize): step = (sum of the histogram minus the count
//                 of the highest occupied bin) / 255 (floor); step 0 -> unchanged; else
//                 lut[i] = min(255, (step / 2 + count of values < i) / step).
//   Brightness    lut[v] = trunc(clamp(float32(v) * float32(factor), 0, 255)) (PIL's blend with a black
//                 image).
//   Sharpness     degenerate = round(3x3 filter [1 1 1; 1 5 1; 1 1 1] / 13) (PIL's SMOOTH); border pixels
//                 unchanged; interior = float32(deg + factor * (v - deg)) cast to uint8 -- numpy's cast
//                 wraps modulo 256 (`.albef`), PIL clamps (`.pil`).
//   ShearX/Y, TranslateX/Y, Rotate: cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT, fill) with the
//                 forward matrices [[1, f, 0], [0, 1, 0]] / [[1, 0, 0], [f, 1, 0]] / [[1, 0, -t], [0, 1, 0]] /
//                 [[1, 0, 0], [0, 1, -t]] (float32, as numpy builds them) and cv2.getRotationMatrix2D
//                 ((W/2, H/2), degrees, 1) (float64); see `warpAffine`.
//
// All functions are total: any size (including 0 x 0 and 1 x 1) is accepted and never traps.

/// How faithfully to reproduce ALBEF's numpy arithmetic where it differs from PIL.
public enum AugmentFidelity: String, Sendable, Equatable, CaseIterable {
    /// Byte-for-byte ALBEF (numpy uint8 wrap-around in AutoContrast's offset and Sharpness's cast).
    case albef
    /// PIL's ImageOps / ImageEnhance semantics (correct offset, clamped blend).
    case pil
}

public enum ImageOps {
    // MARK: helpers

    @inline(__always)
    static func make(_ image: RGBImage, _ pixels: [UInt8]) -> RGBImage {
        RGBImage(uncheckedWidth: image.width, height: image.height, pixels: pixels)
    }

    /// Applies one 256-entry table per channel.
    static func applyTables(_ image: RGBImage, _ tables: [[UInt8]]) -> RGBImage {
        var out = image.pixels
        let n = image.pixelCount
        tables[0].withUnsafeBufferPointer { t0 in
            tables[1].withUnsafeBufferPointer { t1 in
                tables[2].withUnsafeBufferPointer { t2 in
                    out.withUnsafeMutableBufferPointer { p in
                        var i = 0
                        for _ in 0..<n {
                            p[i] = t0[Int(p[i])]
                            p[i + 1] = t1[Int(p[i + 1])]
                            p[i + 2] = t2[Int(p[i + 2])]
                            i += 3
                        }
                    }
                }
            }
        }
        return make(image, out)
    }

    static let identityTable: [UInt8] = (0..<256).map { UInt8($0) }

    // MARK: geometry

    /// Mirror left-right (torchvision `hflip`).
    public static func flipHorizontal(_ image: RGBImage) -> RGBImage {
        let w = image.width, h = image.height
        guard w > 1, h > 0 else { return image }
        var out = [UInt8](repeating: 0, count: image.pixels.count)
        image.pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for y in 0..<h {
                    let row = y * w * 3
                    for x in 0..<w {
                        let si = row + (w - 1 - x) * 3, di = row + x * 3
                        d[di] = s[si]
                        d[di + 1] = s[si + 1]
                        d[di + 2] = s[si + 2]
                    }
                }
            }
        }
        return make(image, out)
    }

    // MARK: colour

    /// ALBEF `autocontrast_func` (cutoff 0).
    public static func autoContrast(_ image: RGBImage, fidelity: AugmentFidelity = .albef) -> RGBImage {
        guard !image.isEmpty else { return image }
        var lo: [UInt8] = [255, 255, 255], hi: [UInt8] = [0, 0, 0]
        image.pixels.withUnsafeBufferPointer { p in
            var i = 0
            for _ in 0..<image.pixelCount {
                for c in 0..<3 {
                    let v = p[i + c]
                    if v < lo[c] { lo[c] = v }
                    if v > hi[c] { hi[c] = v }
                }
                i += 3
            }
        }
        var tables: [[UInt8]] = []
        for c in 0..<3 {
            guard hi[c] > lo[c] else { tables.append(identityTable); continue }
            let scale = 255.0 / Double(hi[c] - lo[c])
            let offset: Double
            switch fidelity {
            case .albef: offset = Double(UInt8(truncatingIfNeeded: 256 - Int(lo[c]))) * scale
            case .pil: offset = -Double(lo[c]) * scale
            }
            tables.append((0..<256).map { v in
                let t = Double(v) * scale + offset
                return t <= 0 ? 0 : (t >= 255 ? 255 : UInt8(t))
            })
        }
        return applyTables(image, tables)
    }

    /// ALBEF `equalize_func` = PIL `ImageOps.equalize`.
    public static func equalize(_ image: RGBImage) -> RGBImage {
        guard !image.isEmpty else { return image }
        var hist = [[Int]](repeating: [Int](repeating: 0, count: 256), count: 3)
        image.pixels.withUnsafeBufferPointer { p in
            var i = 0
            for _ in 0..<image.pixelCount {
                hist[0][Int(p[i])] += 1
                hist[1][Int(p[i + 1])] += 1
                hist[2][Int(p[i + 2])] += 1
                i += 3
            }
        }
        var tables: [[UInt8]] = []
        for c in 0..<3 {
            let h = hist[c]
            let total = h.reduce(0, +)
            let last = h.last(where: { $0 != 0 }) ?? 0
            let step = (total - last) / 255
            guard step > 0 else { tables.append(identityTable); continue }
            var table = [UInt8](repeating: 0, count: 256)
            var n = step / 2
            for i in 0..<256 {
                table[i] = UInt8(min(255, n / step))
                n += h[i]
            }
            tables.append(table)
        }
        return applyTables(image, tables)
    }

    /// ALBEF `brightness_func` (PIL `ImageEnhance.Brightness`: blend with black).
    public static func brightness(_ image: RGBImage, factor: Double) -> RGBImage {
        let f = Float(factor)
        let table: [UInt8] = (0..<256).map { v in
            let t = Float(v) * f
            return t.isNaN || t <= 0 ? 0 : (t >= 255 ? 255 : UInt8(t))
        }
        return applyTables(image, [table, table, table])
    }

    /// ALBEF `sharpness_func` (PIL `ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image,
    /// border pixels unchanged).
    public static func sharpness(_ image: RGBImage, factor: Double, fidelity: AugmentFidelity = .albef) -> RGBImage {
        let w = image.width, h = image.height
        guard w > 2, h > 2 else {
            // ALBEF: no interior; factor 0 returns the filtered image, whose pixels are all border
            // pixels here (cv2's reflect-101 border) -- keep the image unchanged instead.
            return image
        }
        let f = Float(factor)
        var out = image.pixels
        let stride = w * 3
        image.pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for y in 1..<(h - 1) {
                    for x in 1..<(w - 1) {
                        let base = y * stride + x * 3
                        for c in 0..<3 {
                            let i = base + c
                            let center = Int(s[i])
                            var sum = 4 * center
                            sum += Int(s[i - stride - 3]) + Int(s[i - stride]) + Int(s[i - stride + 3])
                            sum += Int(s[i - 3]) + center + Int(s[i + 3])
                            sum += Int(s[i + stride - 3]) + Int(s[i + stride]) + Int(s[i + stride + 3])
                            // round(sum / 13): never a tie (sum / 13 is at least 1/26 from any .5).
                            let deg = (2 * sum + 13) / 26
                            let fd = Float(deg)
                            let v = fd + f * (Float(center) - fd)
                            d[i] = castToByte(v, fidelity)
                        }
                    }
                }
            }
        }
        return make(image, out)
    }

    /// float32 -> uint8 as numpy's astype does on x86-64 (truncate toward zero, keep the low 8 bits)
    /// for `.albef`, or clamped (PIL) for `.pil`.
    @inline(__always)
    static func castToByte(_ v: Float, _ fidelity: AugmentFidelity) -> UInt8 {
        switch fidelity {
        case .pil:
            return v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(v))
        case .albef:
            guard v.isFinite, v > -2.1e9, v < 2.1e9 else { return 0 }
            return UInt8(truncatingIfNeeded: Int32(v))
        }
    }

    // MARK: affine (OpenCV warpAffine)

    /// A 2x3 affine matrix [a b c; d e f] in OpenCV's convention: the forward map
    /// (x, y) -> (a x + b y + c, d x + e y + f) from source to destination.
    public struct AffineMatrix: Sendable, Equatable {
        public var m: (Double, Double, Double, Double, Double, Double)
        public init(_ a: Double, _ b: Double, _ c: Double, _ d: Double, _ e: Double, _ f: Double) {
            m = (a, b, c, d, e, f)
        }
        public static func == (l: AffineMatrix, r: AffineMatrix) -> Bool {
            l.m.0 == r.m.0 && l.m.1 == r.m.1 && l.m.2 == r.m.2 && l.m.3 == r.m.3 && l.m.4 == r.m.4 && l.m.5 == r.m.5
        }

        /// A matrix built as numpy float32 (as ALBEF's shear/translate functions do).
        public static func float32(_ a: Double, _ b: Double, _ c: Double, _ d: Double, _ e: Double, _ f: Double) -> AffineMatrix {
            AffineMatrix(Double(Float(a)), Double(Float(b)), Double(Float(c)), Double(Float(d)), Double(Float(e)), Double(Float(f)))
        }

        /// cv2.getRotationMatrix2D(center, angle (degrees, counter-clockwise), scale).
        public static func rotation(centerX: Float, centerY: Float, degrees: Double, scale: Double = 1) -> AffineMatrix {
            let angle = degrees * (3.1415926535897932384626433832795 / 180)
            let alpha = cos(angle) * scale, beta = sin(angle) * scale
            let cx = Double(centerX), cy = Double(centerY)
            return AffineMatrix(alpha, beta, (1 - alpha) * cx - beta * cy,
                                -beta, alpha, beta * cx + (1 - alpha) * cy)
        }

        /// OpenCV's inversion inside warpAffine (without WARP_INVERSE_MAP).
        var inverted: (Double, Double, Double, Double, Double, Double) {
            var (m0, m1, m2, m3, m4, m5) = m
            var d = m0 * m4 - m1 * m3
            d = d != 0 ? 1 / d : 0
            let a11 = m4 * d, a22 = m0 * d
            m0 = a11
            m1 *= -d
            m3 *= -d
            m4 = a22
            let b1 = -m0 * m2 - m1 * m5
            let b2 = -m3 * m2 - m4 * m5
            return (m0, m1, b1, m3, m4, b2)
        }
    }

    /// cvRound / saturate_cast<int>(double): round half to even, saturating (NaN -> Int32.min as
    /// the x86 conversion does).
    @inline(__always)
    static func cvRound(_ v: Double) -> Int32 {
        guard v.isFinite else { return Int32.min }
        let r = v.rounded(.toNearestOrEven)
        if r >= 2147483647 { return Int32.max }
        if r <= -2147483648 { return Int32.min }
        return Int32(r)
    }

    @inline(__always)
    static func saturateShort(_ v: Int32) -> Int32 { min(max(v, -32768), 32767) }

    /// `cv2.warpAffine(img, M, (W, H), flags=INTER_LINEAR, borderMode=BORDER_CONSTANT,
    /// borderValue=fill)` for 8-bit RGB, OpenCV's fixed-point bilinear path (OpenCV <= 4.10: source
    /// coordinates quantised to 1/32 pixel, 15-bit weights, taps outside the image read `fill`).
    public static func warpAffine(_ image: RGBImage, _ matrix: AffineMatrix, fill: RGB) -> RGBImage {
        let W = image.width, H = image.height
        guard W > 0, H > 0 else { return image }
        let (i0, i1, i2, i3, i4, i5) = matrix.inverted
        let abScale = 1024.0
        let roundDelta: Int32 = 16
        var adelta = [Int32](repeating: 0, count: W), bdelta = [Int32](repeating: 0, count: W)
        for x in 0..<W {
            adelta[x] = cvRound(i0 * Double(x) * abScale)
            bdelta[x] = cvRound(i3 * Double(x) * abScale)
        }
        let fillv = [Int32(fill.r), Int32(fill.g), Int32(fill.b)]
        var out = [UInt8](repeating: 0, count: W * H * 3)
        let stride = W * 3
        let width1 = UInt32(max(W - 1, 0)), height1 = UInt32(max(H - 1, 0))
        image.pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for y in 0..<H {
                    let x0 = cvRound((i1 * Double(y) + i2) * abScale) &+ roundDelta
                    let y0 = cvRound((i4 * Double(y) + i5) * abScale) &+ roundDelta
                    var di = y * stride
                    for x in 0..<W {
                        let X = (x0 &+ adelta[x]) >> 5
                        let Y = (y0 &+ bdelta[x]) >> 5
                        let sx = saturateShort(X >> 5), sy = saturateShort(Y >> 5)
                        let fx = X & 31, fy = Y & 31
                        let w0 = (32 - fx) * (32 - fy), w1 = fx * (32 - fy)
                        let w2 = (32 - fx) * fy, w3 = fx * fy
                        if UInt32(bitPattern: sx) < width1 && UInt32(bitPattern: sy) < height1 {
                            let si = Int(sy) * stride + Int(sx) * 3
                            for c in 0..<3 {
                                let v = Int32(s[si + c]) * w0 + Int32(s[si + 3 + c]) * w1
                                    + Int32(s[si + stride + c]) * w2 + Int32(s[si + stride + 3 + c]) * w3
                                d[di + c] = UInt8(truncatingIfNeeded: min(255, (v + 512) >> 10))
                            }
                        } else if sx >= Int32(W) || sx + 1 < 0 || sy >= Int32(H) || sy + 1 < 0 {
                            d[di] = fill.r
                            d[di + 1] = fill.g
                            d[di + 2] = fill.b
                        } else {
                            let inX0 = sx >= 0, inX1 = sx + 1 < Int32(W)
                            let inY0 = sy >= 0, inY1 = sy + 1 < Int32(H)
                            for c in 0..<3 {
                                func tap(_ xx: Int32, _ yy: Int32, _ inside: Bool) -> Int32 {
                                    inside ? Int32(s[Int(yy) * stride + Int(xx) * 3 + c]) : fillv[c]
                                }
                                let v = tap(sx, sy, inX0 && inY0) * w0 + tap(sx + 1, sy, inX1 && inY0) * w1
                                    + tap(sx, sy + 1, inX0 && inY1) * w2 + tap(sx + 1, sy + 1, inX1 && inY1) * w3
                                d[di + c] = UInt8(truncatingIfNeeded: min(255, max(0, (v + 512) >> 10)))
                            }
                        }
                        di += 3
                    }
                }
            }
        }
        return make(image, out)
    }

    /// ALBEF `shear_x_func`: forward matrix float32 [[1, factor, 0], [0, 1, 0]].
    public static func shearX(_ image: RGBImage, factor: Double, fill: RGB) -> RGBImage {
        warpAffine(image, .float32(1, factor, 0, 0, 1, 0), fill: fill)
    }

    /// ALBEF `shear_y_func`: forward matrix float32 [[1, 0, 0], [factor, 1, 0]].
    public static func shearY(_ image: RGBImage, factor: Double, fill: RGB) -> RGBImage {
        warpAffine(image, .float32(1, 0, 0, factor, 1, 0), fill: fill)
    }

    /// ALBEF `translate_x_func`: out(x, y) = in(x + offset, y).
    public static func translateX(_ image: RGBImage, offset: Double, fill: RGB) -> RGBImage {
        warpAffine(image, .float32(1, 0, -offset, 0, 1, 0), fill: fill)
    }

    /// ALBEF `translate_y_func`: out(x, y) = in(x, y + offset).
    public static func translateY(_ image: RGBImage, offset: Double, fill: RGB) -> RGBImage {
        warpAffine(image, .float32(1, 0, 0, 0, 1, -offset), fill: fill)
    }

    /// ALBEF `rotate_func`: counter-clockwise by `degrees` about (W/2, H/2).
    public static func rotate(_ image: RGBImage, degrees: Double, fill: RGB) -> RGBImage {
        warpAffine(image, .rotation(centerX: Float(image.width) / 2, centerY: Float(image.height) / 2, degrees: degrees),
                   fill: fill)
    }
}

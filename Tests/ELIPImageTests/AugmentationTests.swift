@testable import ELIPImage
import XCTest

/// ALBEF's image transforms: RandAugment ops on small hand-computed cases (and on a few images whose
/// expected bytes were produced by ALBEF's dataset/randaugment.py functions with numpy + OpenCV
/// 4.10), RandomResizedCrop box statistics, normalisation values.
final class AugmentationTests: XCTestCase {
    let fill = RGB(128, 128, 128)

    /// A w x h image whose channel values are given by `f(x, y, c)`.
    func image(_ w: Int, _ h: Int, _ f: (Int, Int, Int) -> Int) throws -> RGBImage {
        var p: [UInt8] = []
        for y in 0..<h { for x in 0..<w { for c in 0..<3 { p.append(UInt8(truncatingIfNeeded: f(x, y, c))) } } }
        return try RGBImage(width: w, height: h, pixels: p)
    }

    func channel(_ img: RGBImage, _ c: Int) -> [Int] {
        stride(from: c, to: img.pixels.count, by: 3).map { Int(img.pixels[$0]) }
    }

    // MARK: geometry

    func testHorizontalFlip() throws {
        let img = try image(4, 4) { x, y, c in 10 * y + x + 100 * c }
        let f = ImageOps.flipHorizontal(img)
        for y in 0..<4 { for x in 0..<4 { XCTAssertEqual(f.pixel(x: x, y: y), img.pixel(x: 3 - x, y: y)) } }
        XCTAssertEqual(ImageOps.flipHorizontal(f), img)
    }

    func testTranslateByWholePixelsFillsWith128() throws {
        let img = try image(4, 4) { x, y, c in 10 * y + x + 1 + 50 * c }
        for offset in [1, 2, -1, -2] {
            let tx = ImageOps.translateX(img, offset: Double(offset), fill: fill)
            let ty = ImageOps.translateY(img, offset: Double(offset), fill: fill)
            for y in 0..<4 {
                for x in 0..<4 {
                    // ALBEF: M = [[1, 0, -offset], [0, 1, 0]] so out(x, y) = in(x + offset, y).
                    XCTAssertEqual(tx.pixel(x: x, y: y), img.pixel(x: x + offset, y: y) ?? fill, "tx \(offset) at \(x),\(y)")
                    XCTAssertEqual(ty.pixel(x: x, y: y), img.pixel(x: x, y: y + offset) ?? fill, "ty \(offset) at \(x),\(y)")
                }
            }
        }
    }

    func testShearXByHalfAveragesNeighboursAndBlendsTheFill() throws {
        // out(x, y) = in(x - 0.5 y, y): row 0 unchanged, row 2 shifted right by one pixel, row 1 the
        // mean of two neighbours (cv2 fixed point: (a + b + 1) >> 1), with the fill outside.
        let img = try image(4, 4) { x, y, c in 20 * x + 3 * y + 7 * c + 1 }
        let s = ImageOps.shearX(img, factor: 0.5, fill: fill)
        for c in 0..<3 {
            let inp = channel(img, c), out = channel(s, c)
            func v(_ x: Int, _ y: Int) -> Int { x < 0 ? 128 : inp[y * 4 + x] }
            for x in 0..<4 {
                XCTAssertEqual(out[0 * 4 + x], v(x, 0))
                XCTAssertEqual(out[1 * 4 + x], (v(x - 1, 1) + v(x, 1) + 1) >> 1, "row 1, x \(x)")
                XCTAssertEqual(out[2 * 4 + x], v(x - 1, 2), "row 2, x \(x)")
            }
        }
    }

    func testRotate90AboutCv2Centre() throws {
        // cv2 rotates about (W/2, H/2) = (2, 2), not the pixel centre (1.5, 1.5): 90 degrees
        // counter-clockwise maps out(x, y) = in(4 - y, x), so row 0 is the fill.
        let img = try image(4, 4) { x, y, c in 16 * y + x + 60 * c + 1 }
        let r = ImageOps.rotate(img, degrees: 90, fill: fill)
        for y in 0..<4 {
            for x in 0..<4 {
                XCTAssertEqual(r.pixel(x: x, y: y), img.pixel(x: 4 - y, y: x) ?? fill, "at \(x),\(y)")
            }
        }
        // A constant image stays constant where the whole 2x2 neighbourhood is inside.
        let flat = try RGBImage(width: 9, height: 9, fill: RGB(40, 50, 60))
        let rf = ImageOps.rotate(flat, degrees: 21, fill: fill)
        XCTAssertEqual(rf.pixel(x: 4, y: 4), RGB(40, 50, 60))
        XCTAssertEqual(rf.pixel(x: 0, y: 0), fill)
    }

    /// Expected bytes from ALBEF's rotate_func / shear_x_func / shear_y_func (numpy + OpenCV 4.10).
    func testWarpsMatchALBEFWithOpenCV410() throws {
        let input: [UInt8] = [0, 3, 11, 40, 3, 11, 80, 3, 11, 120, 3, 11, 160, 3, 11, 200, 3, 11, 7, 53, 11, 47, 53, 20, 87, 53, 29, 127, 53, 38, 167, 53, 47, 207, 53, 56, 14, 103, 11, 54, 103, 29, 94, 103, 47, 134, 103, 65, 174, 103, 83, 214, 103, 101, 21, 153, 11, 61, 153, 38, 101, 153, 65, 141, 153, 92, 181, 153, 119, 221, 153, 146, 28, 203, 11, 68, 203, 47, 108, 203, 83, 148, 203, 119, 188, 203, 155, 228, 203, 191]
        let rot21: [UInt8] = [120, 116, 117, 108, 73, 77, 120, 26, 33, 157, 11, 16, 197, 30, 34, 148, 108, 109, 30, 5, 11, 69, 22, 17, 109, 41, 29, 149, 58, 46, 189, 76, 70, 178, 108, 107, 22, 51, 14, 62, 69, 27, 102, 87, 45, 142, 105, 69, 182, 123, 100, 214, 140, 134, 15, 98, 12, 55, 116, 31, 93, 133, 55, 133, 151, 86, 173, 169, 123, 213, 187, 167, 57, 138, 51, 46, 162, 28, 86, 180, 60, 126, 198, 98, 155, 184, 132, 156, 156, 143]
        let shx: [UInt8] = [0, 3, 11, 40, 3, 11, 80, 3, 11, 120, 3, 11, 160, 3, 11, 200, 3, 11, 33, 69, 37, 38, 53, 18, 78, 53, 27, 118, 53, 36, 158, 53, 45, 198, 53, 54, 60, 113, 59, 38, 103, 22, 78, 103, 40, 118, 103, 58, 158, 103, 76, 198, 103, 94, 88, 137, 84, 36, 153, 21, 76, 153, 48, 116, 153, 75, 156, 153, 102, 196, 153, 129, 112, 140, 110, 34, 203, 17, 74, 203, 53, 114, 203, 89, 154, 203, 125, 194, 203, 161]
        let shy: [UInt8] = [0, 3, 11, 42, 14, 13, 83, 23, 18, 124, 34, 28, 166, 45, 41, 207, 56, 59, 7, 53, 11, 49, 64, 22, 90, 73, 36, 131, 84, 55, 173, 95, 77, 214, 106, 104, 14, 103, 11, 56, 114, 31, 97, 123, 54, 138, 134, 82, 180, 145, 113, 221, 156, 149, 21, 153, 11, 63, 164, 40, 104, 173, 72, 145, 184, 109, 187, 195, 149, 222, 198, 187, 28, 203, 11, 81, 187, 65, 116, 173, 101, 136, 156, 125, 137, 140, 132, 128, 128, 128]
        let img = try RGBImage(width: 6, height: 5, pixels: input)
        XCTAssertEqual(ImageOps.rotate(img, degrees: 21, fill: fill).pixels, rot21)
        XCTAssertEqual(ImageOps.shearX(img, factor: 0.21, fill: fill).pixels, shx)
        XCTAssertEqual(ImageOps.shearY(img, factor: -0.21, fill: fill).pixels, shy)
    }

    // MARK: colour

    func testAutoContrastKnownMinMax() throws {
        // R: 0...100 (stretched by 255 / 100 = 2.5499999999999998 in float64, so 100 -> 254.99999... -> 254
        // as in numpy), G: 50...150 (ALBEF: uint8 -50 wraps, channel -> 255; PIL: (v - 50) * 2.55),
        // B constant (unchanged).
        let img = try image(3, 1) { x, _, c in [[0, 50, 100], [50, 100, 150], [77, 77, 77]][c][x] }
        let a = ImageOps.autoContrast(img, fidelity: .albef)
        XCTAssertEqual(channel(a, 0), [0, 127, 254])       // 50 * 2.55 = 127.49999 -> 127
        XCTAssertEqual(channel(a, 1), [255, 255, 255])
        XCTAssertEqual(channel(a, 2), [77, 77, 77])
        let p = ImageOps.autoContrast(img, fidelity: .pil)
        XCTAssertEqual(channel(p, 0), [0, 127, 254])
        XCTAssertEqual(channel(p, 1), [0, 127, 255])       // 150 * 2.55 - 50 * 2.55 rounds to exactly 255.0
        XCTAssertEqual(channel(p, 2), [77, 77, 77])
    }

    func testEqualizeKnownHistogram() throws {
        // 1024 pixels: 512 x 10, 256 x 20, 256 x 30. step = (1024 - 256) / 255 = 3;
        // lut[v] = (step / 2 + #(< v)) / step: 10 -> 0, 20 -> 513 / 3 = 171, 30 -> 769 / 3 = 256 -> 255.
        let img = try image(32, 32) { x, y, _ in y < 16 ? 10 : (x < 16 ? 20 : 30) }
        let e = ImageOps.equalize(img)
        for (i, v) in channel(img, 1).enumerated() {
            XCTAssertEqual(channel(e, 1)[i], [10: 0, 20: 171, 30: 255][v])
        }
        // Too few pixels for a step of 1: unchanged (PIL and ALBEF).
        let small = try image(4, 4) { x, y, _ in x * 50 + y }
        XCTAssertEqual(ImageOps.equalize(small), small)
    }

    func testBrightnessIsBlendWithBlack() throws {
        // PIL ImageEnhance.Brightness: out = trunc(clamp(float32(v) * float32(1.36))).
        let img = try image(5, 1) { x, _, _ in [0, 1, 50, 100, 200][x] }
        XCTAssertEqual(channel(ImageOps.brightness(img, factor: 1.36), 0), [0, 1, 68, 136, 255])
        XCTAssertEqual(channel(ImageOps.brightness(img, factor: 0.5), 2), [0, 0, 25, 50, 100])
    }

    func testSharpnessIsBlendWithSmoothed() throws {
        // 3x3: only the centre is interior. SMOOTH = round((8 neighbours + 5 centre) / 13).
        func centre(_ around: Int, _ mid: Int, _ fidelity: AugmentFidelity) throws -> (RGBImage, Int) {
            let img = try image(3, 3) { x, y, _ in x == 1 && y == 1 ? mid : around }
            let s = ImageOps.sharpness(img, factor: 1.36, fidelity: fidelity)
            for y in 0..<3 { for x in 0..<3 where !(x == 1 && y == 1) { XCTAssertEqual(s.pixel(x: x, y: y), img.pixel(x: x, y: y)) } }
            return (s, Int(s.pixel(x: 1, y: 1)?.g ?? 0))
        }
        // deg = round(1800 / 13) = 138; 138 + 1.36 * 62 = 222.32 -> 222.
        XCTAssertEqual(try centre(100, 200, .albef).1, 222)
        XCTAssertEqual(try centre(100, 200, .pil).1, 222)
        // Overflow: deg = round(1275 / 13) = 98; 98 + 1.36 * 157 = 311.5: numpy wraps to 55, PIL clamps.
        XCTAssertEqual(try centre(0, 255, .albef).1, 55)
        XCTAssertEqual(try centre(0, 255, .pil).1, 255)
        // Underflow: deg = round(2040 / 13) = 157; 157 - 1.36 * 157 = -56.5 -> -56: wraps to 200, PIL 0.
        XCTAssertEqual(try centre(255, 0, .albef).1, 200)
        XCTAssertEqual(try centre(255, 0, .pil).1, 0)
        // Factor 1 is the identity; images without interior are unchanged.
        let img = try image(5, 4) { x, y, c in 37 * x + 11 * y + c }
        XCTAssertEqual(ImageOps.sharpness(img, factor: 1, fidelity: .albef), img)
        let thin = try image(7, 2) { x, y, c in 37 * x + 11 * y + c }
        XCTAssertEqual(ImageOps.sharpness(thin, factor: 1.36), thin)
    }

    func testOpsAcceptDegenerateSizes() throws {
        let ra = RandAugment()
        for (w, h) in [(1, 1), (1, 5), (5, 1), (2, 2)] {
            let img = try image(w, h) { x, y, c in 90 * x + 40 * y + c }
            for op in RandAugment.Op.allCases {
                for arg in [-30.0, 0.0, 1.36, 7.0, 21.0] {
                    let out = ra.apply(RandAugment.Applied(op: op, argument: arg), to: img)
                    XCTAssertEqual(out.width, w)
                    XCTAssertEqual(out.height, h)
                }
            }
        }
        let empty = try RGBImage(width: 0, height: 0, pixels: [])
        for op in RandAugment.Op.allCases {
            XCTAssertEqual(ra.apply(RandAugment.Applied(op: op, argument: 7), to: empty).pixels.count, 0)
        }
    }

    // MARK: RandAugment draws

    func testRandAugmentMagnitudesAtM7() {
        let ra = RandAugment()
        XCTAssertEqual(ra.enhanceFactor, 1.36, accuracy: 1e-12)
        XCTAssertEqual(ra.shearMagnitude, 0.21, accuracy: 1e-12)
        XCTAssertEqual(ra.translateMagnitude, 7)
        XCTAssertEqual(ra.rotateMagnitude, 21)
        XCTAssertEqual(ra.ops.map(\.rawValue), ["Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness",
                                                 "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
        var counts: [RandAugment.Op: Int] = [:]
        var applied = 0, signs = (pos: 0, neg: 0)
        let trials = 20000
        for i in 0..<trials {
            var g = LoaderRandom(seed: 5, stream: .test, UInt64(i))
            let draw = ra.draw(rng: &g)
            var again = LoaderRandom(seed: 5, stream: .test, UInt64(i))
            XCTAssertEqual(ra.draw(rng: &again), draw)
            applied += draw.count
            for a in draw {
                counts[a.op, default: 0] += 1
                switch a.op {
                case .brightness, .sharpness: XCTAssertEqual(a.argument, 1.36, accuracy: 1e-12)
                case .shearX, .shearY: XCTAssertEqual(abs(a.argument), 0.21, accuracy: 1e-12)
                case .translateX, .translateY: XCTAssertEqual(abs(a.argument), 7)
                case .rotate: XCTAssertEqual(abs(a.argument), 21)
                default: XCTAssertEqual(a.argument, 0)
                }
                if [.shearX, .shearY, .translateX, .translateY, .rotate].contains(a.op) {
                    if a.argument > 0 { signs.pos += 1 } else { signs.neg += 1 }
                }
            }
        }
        // Two ops, each kept with p = 0.5: one applied op per image on average; ops uniform; signs fair.
        XCTAssertEqual(Double(applied) / Double(trials), 1.0, accuracy: 0.03)
        for op in RandAugment.Op.allCases { XCTAssertEqual(Double(counts[op] ?? 0) / Double(applied), 0.1, accuracy: 0.015, "\(op)") }
        XCTAssertEqual(Double(signs.pos) / Double(signs.pos + signs.neg), 0.5, accuracy: 0.03)
    }

    // MARK: RandomResizedCrop

    func testRandomResizedCropBoxes() {
        let crop = RandomResizedCrop(size: 256)
        var scales: [Double] = []
        for i in 0..<4000 {
            var g = LoaderRandom(seed: 11, stream: .test, UInt64(i))
            let (W, H) = i % 2 == 0 ? (400, 300) : (256, 384)
            let b = crop.sampleBox(width: W, height: H, rng: &g)
            XCTAssertTrue(b.x >= 0 && b.y >= 0 && b.width >= 1 && b.height >= 1)
            XCTAssertTrue(b.x + b.width <= W && b.y + b.height <= H)
            let s = Double(b.width * b.height) / Double(W * H)
            let r = Double(b.width) / Double(b.height)
            // Rounding w and h to integers moves the area and ratio slightly off the sampled values.
            XCTAssertTrue(s > 0.2 * 0.97 && s <= 1.0, "scale \(s)")
            XCTAssertTrue(r > 0.75 * 0.98 && r < 4.0 / 3.0 * 1.02, "ratio \(r)")
            scales.append(s)
        }
        // Uniform scale on [0.2, 1] minus the boxes that do not fit: torchvision's get_params simulated
        // (200k draws, same two image shapes) gives a mean area fraction of 0.474.
        let mean = scales.reduce(0, +) / Double(scales.count)
        XCTAssertEqual(mean, 0.474, accuracy: 0.015, "mean scale")
        XCTAssertTrue(scales.min()! < 0.25 && scales.max()! > 0.9)

        // An extreme aspect ratio never fits: the fallback is the centre crop clamped to 4/3.
        var g = LoaderRandom(seed: 1, stream: .test)
        let b = crop.sampleBox(width: 1000, height: 10, rng: &g)
        XCTAssertEqual(b.width, 13)
        XCTAssertEqual(b.height, 10)
        XCTAssertEqual(b.x, 493)
        XCTAssertEqual(b.y, 0)
        let tall = crop.sampleBox(width: 10, height: 1000, rng: &g)
        XCTAssertEqual(tall.width, 10)
        XCTAssertEqual(tall.height, 13)         // round(10 / 0.75) = 13
        XCTAssertEqual(tall.y, 493)
        let one = crop.sampleBox(width: 1, height: 1, rng: &g)
        XCTAssertTrue(one == (0, 0, 1, 1))
    }

    func testPretrainTransformIsDeterministicPerStream() throws {
        let src = try image(96, 72) { x, y, c in (x * 3 + y * 5 + c * 70) % 256 }
        let t = PretrainTransform(imageSize: 32)
        var seen = Set<[UInt8]>()
        for i in 0..<6 {
            var g1 = LoaderRandom(seed: 3, stream: .sample, 0, UInt64(i))
            var g2 = LoaderRandom(seed: 3, stream: .sample, 0, UInt64(i))
            let a = try t.apply(src, rng: &g1), b = try t.apply(src, rng: &g2)
            XCTAssertEqual(a, b)
            XCTAssertEqual(a.width, 32)
            XCTAssertEqual(a.height, 32)
            seen.insert(a.pixels)
        }
        XCTAssertGreaterThan(seen.count, 4)
        // Without flip and RandAugment the result is exactly crop + Pillow bicubic resize.
        var plain = t
        plain.flipProbability = 0
        plain.randAugment = nil
        var g = LoaderRandom(seed: 9, stream: .test)
        var gBox = g
        let out = try plain.apply(src, rng: &g)
        let box = plain.crop.sampleBox(width: 96, height: 72, rng: &gBox)
        let expected = try src.cropped(x: box.x, y: box.y, width: box.width, height: box.height)
            .resized(width: 32, height: 32, filter: .bicubic, order: .horizontalFirst)
        XCTAssertEqual(out, expected)
        // Evaluation: plain (res, res) bicubic resize.
        var ge = LoaderRandom(seed: 0, stream: .test)
        XCTAssertEqual(try ImageTransform.eval(size: 24, order: .horizontalFirst).apply(src, rng: &ge),
                       try src.resized(width: 24, height: 24, filter: .bicubic, order: .horizontalFirst))
    }

    // MARK: normalisation

    func testNormalisationValues() throws {
        XCTAssertEqual(PixelNormalization.value(0, channel: 0), -0.48145466 / 0.26862954, accuracy: 1e-6)
        XCTAssertEqual(PixelNormalization.value(255, channel: 0), (1 - 0.48145466) / 0.26862954, accuracy: 1e-6)
        XCTAssertEqual(PixelNormalization.value(128, channel: 1), (128.0 / 255 - 0.4578275) / 0.26130258, accuracy: 1e-6)
        XCTAssertEqual(PixelNormalization.value(255, channel: 2), (1 - 0.40821073) / 0.27577711, accuracy: 1e-6)
        // Bitwise the float32 formula (v / 255 - mean) / std that torchvision's ToTensor + Normalize use.
        for v in [0, 1, 77, 128, 254, 255] {
            for c in 0..<3 {
                let expected = (Float(v) / 255 - PixelNormalization.mean[c]) / PixelNormalization.std[c]
                XCTAssertEqual(PixelNormalization.value(UInt8(v), channel: c).bitPattern, expected.bitPattern)
            }
        }
        // CHW layout: a 2 x 1 image.
        let img = try RGBImage(width: 2, height: 1, pixels: [0, 10, 20, 255, 245, 235])
        let chw = PixelNormalization.chw(img)
        XCTAssertEqual(chw, [PixelNormalization.value(0, channel: 0), PixelNormalization.value(255, channel: 0),
                             PixelNormalization.value(10, channel: 1), PixelNormalization.value(245, channel: 1),
                             PixelNormalization.value(20, channel: 2), PixelNormalization.value(235, channel: 2)])
    }

    func testLoaderRandomIsStableAndUniform() {
        var g = LoaderRandom(state: 0)
        // SplitMix64 reference outputs for state 0.
        XCTAssertEqual(g.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(g.next(), 0x6E78_9E6A_A1B9_65F4)
        var h = LoaderRandom(seed: 1, stream: .test)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70000 { counts[h.below(7)] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 10000, accuracy: 400) }
        XCTAssertNotEqual(LoaderRandom(seed: 1, stream: .sample, 0, 1), LoaderRandom(seed: 1, stream: .sample, 1, 0))
        XCTAssertNotEqual(LoaderRandom(seed: 1, stream: .sample, 0, 1), LoaderRandom(seed: 1, stream: .shuffle, 0, 1))
    }
}

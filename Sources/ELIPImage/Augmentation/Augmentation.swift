import Foundation

// ALBEF's pre-training image transform (dataset/__init__.py `pretrain_transform`):
//
//   RandomResizedCrop(image_res, scale=(0.2, 1.0), interpolation=BICUBIC)   torchvision
//   RandomHorizontalFlip()                                                   p = 0.5
//   RandomAugment(2, 7, isPIL=True, augs=[Identity, AutoContrast, Equalize, Brightness, Sharpness,
//                                         ShearX, ShearY, TranslateX, TranslateY, Rotate])
//   ToTensor(), Normalize(CLIP mean, CLIP std)
//
// and the evaluation transform Resize((res, res), BICUBIC) + ToTensor + Normalize. Every random
// draw comes from the `LoaderRandom` passed in, so a sample's result is a pure function of its
// stream key.

/// torchvision `RandomResizedCrop.get_params`: up to 10 attempts at a box with area fraction in
/// `scale` and log-uniform aspect ratio in `ratio`, else the centre crop clamped to `ratio`.
public struct RandomResizedCrop: Sendable, Equatable {
    public var size: Int
    public var scale: ClosedRange<Double>
    public var ratio: ClosedRange<Double>

    public init(size: Int, scale: ClosedRange<Double> = 0.2...1.0, ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)) {
        self.size = size
        self.scale = scale
        self.ratio = ratio
    }

    /// The crop box (x = left, y = top) for a width x height image.
    public func sampleBox(width: Int, height: Int, rng: inout LoaderRandom) -> (x: Int, y: Int, width: Int, height: Int) {
        guard width > 0, height > 0 else { return (0, 0, width, height) }
        let area = Double(width * height)
        let logLo = log(ratio.lowerBound), logHi = log(ratio.upperBound)
        for _ in 0..<10 {
            let targetArea = area * rng.uniform(scale.lowerBound, scale.upperBound)
            let aspect = exp(rng.uniform(logLo, logHi))
            let w = RandomResizedCrop.pyRound((targetArea * aspect).squareRoot())
            let h = RandomResizedCrop.pyRound((targetArea / aspect).squareRoot())
            if w > 0, w <= width, h > 0, h <= height {
                let top = rng.below(height - h + 1)
                let left = rng.below(width - w + 1)
                return (left, top, w, h)
            }
        }
        // Fallback to the central crop.
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = min(height, RandomResizedCrop.pyRound(Double(w) / ratio.lowerBound))
        } else if inRatio > ratio.upperBound {
            w = min(width, RandomResizedCrop.pyRound(Double(h) * ratio.upperBound))
        }
        w = max(1, w)
        h = max(1, h)
        return ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// Python's round(): half to even; non-finite or huge values map to 0.
    static func pyRound(_ v: Double) -> Int {
        guard v.isFinite, abs(v) < 1e15 else { return 0 }
        return Int(v.rounded(.toNearestOrEven))
    }
}

/// ALBEF's `RandomAugment(N, M, isPIL=True, augs=...)`: draw N ops uniformly with replacement, then
/// for each: skip with probability 1 - p (ALBEF: `if random() > 0.5: continue`), else draw the
/// magnitude's sign (shear, translate, rotate) and apply it.
public struct RandAugment: Sendable, Equatable {
    public enum Op: String, Sendable, CaseIterable {
        case identity = "Identity", autoContrast = "AutoContrast", equalize = "Equalize"
        case brightness = "Brightness", sharpness = "Sharpness"
        case shearX = "ShearX", shearY = "ShearY", translateX = "TranslateX", translateY = "TranslateY"
        case rotate = "Rotate"
    }

    /// Ops drawn per image.
    public var n: Int = 2
    /// Magnitude on ALBEF's 0...10 scale.
    public var magnitude: Double = 7
    /// Probability of applying each drawn op.
    public var probability: Double = 0.5
    /// The op list (ALBEF's pre-training list and order).
    public var ops: [Op] = Op.allCases
    public var fill = RGB(128, 128, 128)
    public var fidelity: AugmentFidelity = .albef

    public init(n: Int = 2, magnitude: Double = 7, probability: Double = 0.5, ops: [Op] = Op.allCases,
                fill: RGB = RGB(128, 128, 128), fidelity: AugmentFidelity = .albef) {
        self.n = n
        self.magnitude = magnitude
        self.probability = probability
        self.ops = ops
        self.fill = fill
        self.fidelity = fidelity
    }

    /// ALBEF's pre-training RandAugment: RandomAugment(2, 7), its op list and order.
    public static let albef = RandAugment()

    /// BLIP's: RandomAugment(2, 5) with BLIP's op order (the op is drawn by index, so the order
    /// matters): Identity, AutoContrast, Brightness, Sharpness, Equalize, ShearX, ShearY,
    /// TranslateX, TranslateY, Rotate.
    public static let blip = RandAugment(magnitude: 5, ops: [.identity, .autoContrast, .brightness, .sharpness, .equalize,
                                                            .shearX, .shearY, .translateX, .translateY, .rotate])

    static let maxLevel = 10.0
    static let translateConst = 10.0

    /// Brightness / sharpness factor: (M / 10) * 1.8 + 0.1 (1.36 at M = 7; no sign).
    public var enhanceFactor: Double { (magnitude / RandAugment.maxLevel) * 1.8 + 0.1 }
    /// Shear factor magnitude: (M / 10) * 0.3 (0.21 at M = 7).
    public var shearMagnitude: Double { (magnitude / RandAugment.maxLevel) * 0.3 }
    /// Translation in pixels: (M / 10) * 10 (7 at M = 7, whatever the image size).
    public var translateMagnitude: Double { (magnitude / RandAugment.maxLevel) * RandAugment.translateConst }
    /// Rotation in degrees: (M / 10) * 30 (21 at M = 7).
    public var rotateMagnitude: Double { (magnitude / RandAugment.maxLevel) * 30 }

    /// One applied op with its signed argument (for logging and tests).
    public struct Applied: Sendable, Equatable {
        public var op: Op
        public var argument: Double
    }

    /// Draws the ops to apply (in order) without touching an image.
    public func draw(rng: inout LoaderRandom) -> [Applied] {
        guard !ops.isEmpty, n > 0 else { return [] }
        let chosen = (0..<n).map { _ in ops[rng.below(ops.count)] }
        var out: [Applied] = []
        for op in chosen {
            if rng.uniform() > probability { continue }
            switch op {
            case .identity, .autoContrast, .equalize:
                out.append(Applied(op: op, argument: 0))
            case .brightness, .sharpness:
                out.append(Applied(op: op, argument: enhanceFactor))
            case .shearX, .shearY:
                let v = shearMagnitude
                out.append(Applied(op: op, argument: rng.uniform() > 0.5 ? -v : v))
            case .translateX, .translateY:
                let v = translateMagnitude
                out.append(Applied(op: op, argument: rng.uniform() > 0.5 ? -v : v))
            case .rotate:
                let v = rotateMagnitude
                out.append(Applied(op: op, argument: rng.uniform() < 0.5 ? -v : v))
            }
        }
        return out
    }

    /// Applies one op.
    public func apply(_ a: Applied, to image: RGBImage) -> RGBImage {
        switch a.op {
        case .identity: return image
        case .autoContrast: return ImageOps.autoContrast(image, fidelity: fidelity)
        case .equalize: return ImageOps.equalize(image)
        case .brightness: return ImageOps.brightness(image, factor: a.argument)
        case .sharpness: return ImageOps.sharpness(image, factor: a.argument, fidelity: fidelity)
        case .shearX: return ImageOps.shearX(image, factor: a.argument, fill: fill)
        case .shearY: return ImageOps.shearY(image, factor: a.argument, fill: fill)
        case .translateX: return ImageOps.translateX(image, offset: a.argument, fill: fill)
        case .translateY: return ImageOps.translateY(image, offset: a.argument, fill: fill)
        case .rotate: return ImageOps.rotate(image, degrees: a.argument, fill: fill)
        }
    }

    public func apply(_ image: RGBImage, rng: inout LoaderRandom) -> RGBImage {
        var img = image
        for a in draw(rng: &rng) { img = apply(a, to: img) }
        return img
    }
}

/// CLIP normalisation (ALBEF's Normalize): float32 (v / 255 - mean[c]) / std[c], written CHW.
public enum PixelNormalization {
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// The normalised value of byte `v` in channel `c` (same float32 operations as torchvision).
    @inline(__always)
    public static func value(_ v: UInt8, channel c: Int) -> Float {
        (Float(v) / 255 - mean[c]) / std[c]
    }

    /// 3 x 256 lookup table of `value`.
    public static let table: [Float] = (0..<3).flatMap { c in (0..<256).map { value(UInt8($0), channel: c) } }

    /// Writes `image` as CHW floats (3 * width * height values) at `out`.
    public static func write(_ image: RGBImage, to out: UnsafeMutablePointer<Float>) {
        let plane = image.pixelCount
        table.withUnsafeBufferPointer { t in
            image.pixels.withUnsafeBufferPointer { p in
                guard let tb = t.baseAddress else { return }
                let t0 = tb, t1 = tb + 256, t2 = tb + 512
                let o0 = out, o1 = out + plane, o2 = out + 2 * plane
                var i = 0
                for k in 0..<plane {
                    o0[k] = t0[Int(p[i])]
                    o1[k] = t1[Int(p[i + 1])]
                    o2[k] = t2[Int(p[i + 2])]
                    i += 3
                }
            }
        }
    }

    /// CHW floats of `image` as an array.
    public static func chw(_ image: RGBImage) -> [Float] {
        [Float](unsafeUninitializedCapacity: 3 * image.pixelCount) { buf, n in
            if let base = buf.baseAddress { write(image, to: base) }
            n = 3 * image.pixelCount
        }
    }
}

/// How the loader turns a decoded image into a fixed-size training (or evaluation) image.
public enum ImageTransform: Sendable, Equatable {
    /// ALBEF pre-training: RandomResizedCrop + flip + RandAugment.
    case pretrain(PretrainTransform)
    /// Evaluation: resize to (size, size) bicubic, no randomness.
    case eval(size: Int, order: ResamplePassOrder)

    public var imageSize: Int {
        switch self {
        case let .pretrain(t): return t.crop.size
        case let .eval(size, _): return size
        }
    }

    public func apply(_ image: RGBImage, rng: inout LoaderRandom) throws -> RGBImage {
        switch self {
        case let .pretrain(t): return try t.apply(image, rng: &rng)
        case let .eval(size, order):
            return try image.resized(width: size, height: size, filter: .bicubic, order: order)
        }
    }
}

/// ALBEF's `pretrain_transform` up to (not including) ToTensor/Normalize.
public struct PretrainTransform: Sendable, Equatable {
    public var crop: RandomResizedCrop
    public var flipProbability: Double = 0.5
    /// nil: no RandAugment.
    public var randAugment: RandAugment? = RandAugment()
    /// Pillow's resampling pass order; ALBEF ran Pillow <= 12 (horizontal pass first).
    public var resampleOrder: ResamplePassOrder = .horizontalFirst

    public init(imageSize: Int, scale: ClosedRange<Double> = 0.2...1.0, flipProbability: Double = 0.5,
                randAugment: RandAugment? = RandAugment(), resampleOrder: ResamplePassOrder = .horizontalFirst) {
        crop = RandomResizedCrop(size: imageSize, scale: scale)
        self.flipProbability = flipProbability
        self.randAugment = randAugment
        self.resampleOrder = resampleOrder
    }

    public func apply(_ image: RGBImage, rng: inout LoaderRandom) throws -> RGBImage {
        guard crop.size > 0 else { throw ImageError.invalidImage("crop size must be positive, got \(crop.size)") }
        guard !image.isEmpty else { throw ImageError.invalidImage("empty image") }
        let box = crop.sampleBox(width: image.width, height: image.height, rng: &rng)
        var img = try image.resized(crop: CropBox(x: box.x, y: box.y, width: box.width, height: box.height),
                                    width: crop.size, height: crop.size, filter: .bicubic,
                                    edges: .clampToCrop, order: resampleOrder)
        if rng.uniform() < flipProbability { img = ImageOps.flipHorizontal(img) }
        if let ra = randAugment { img = ra.apply(img, rng: &rng) }
        return img
    }
}

import Foundation

/// A learnable synthetic image-caption corpus: 1-3 coloured shapes on a textured background,
/// with captions that name the shapes, their colours, sizes and positions, several paraphrases
/// per image, and a per-pixel object mask (0 = background, k = object k) so an analysis can
/// check whether pruning keeps the tokens the caption talks about.
public enum SyntheticScenes {
    public enum Shape: String, CaseIterable, Sendable {
        case circle, square, triangle, star, diamond, cross
        /// "circles", "crosses": how the task sentences count it.
        public var plural: String { self == .cross ? "crosses" : rawValue + "s" }
    }

    public struct Colour: Sendable {
        public let name: String
        public let rgb: (UInt8, UInt8, UInt8)
    }

    public static let colours: [Colour] = [
        Colour(name: "red", rgb: (220, 30, 30)), Colour(name: "green", rgb: (30, 170, 50)),
        Colour(name: "blue", rgb: (40, 60, 220)), Colour(name: "yellow", rgb: (240, 220, 40)),
        Colour(name: "purple", rgb: (140, 40, 170)), Colour(name: "orange", rgb: (245, 140, 20)),
        Colour(name: "white", rgb: (250, 250, 250)), Colour(name: "black", rgb: (15, 15, 15)),
    ]

    /// One object in a scene: shape, colour, centre and radius in pixels.
    public struct Object: Sendable {
        public let shape: Shape
        public let colour: Colour
        public let centerX: Double, centerY: Double, radius: Double
        public var isLarge: Bool { large }
        /// "red circle": colour and shape, the unit every caption and task sentence names.
        public var kind: String { "\(colour.name) \(shape.rawValue)" }
        let large: Bool
    }

    public struct Scene: Sendable {
        public let size: Int
        public let objects: [Object]
        /// RGB bytes, row-major HWC.
        public let pixels: [UInt8]
        /// Object index per pixel (0 = background).
        public let mask: [UInt8]
        public let captions: [String]
    }

    /// Draws scene `index` of the stream `seed` (deterministic).
    public static func scene(index: Int, seed: UInt64, size: Int) -> Scene {
        var g = SplitMix(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let count = 1 + Int(g.next() % 3)
        var objects: [Object] = []
        var usedKinds = Set<String>()
        var attempts = 0
        while objects.count < count && attempts < 200 {
            attempts += 1
            let shape = Shape.allCases[Int(g.next() % UInt64(Shape.allCases.count))]
            let colour = colours[Int(g.next() % UInt64(colours.count))]
            let kind = "\(colour.name) \(shape.rawValue)"
            if usedKinds.contains(kind) { continue }
            let large = g.next() % 2 == 0
            let r = Double(size) * (large ? 0.17 + 0.05 * g.unit() : 0.08 + 0.03 * g.unit())
            let cx = r + (Double(size) - 2 * r) * g.unit(), cy = r + (Double(size) - 2 * r) * g.unit()
            // Keep objects apart so each stays visible.
            if objects.contains(where: { hypot($0.centerX - cx, $0.centerY - cy) < ($0.radius + r) * 1.05 }) { continue }
            objects.append(Object(shape: shape, colour: colour, centerX: cx, centerY: cy, radius: r, large: large))
            usedKinds.insert(kind)
        }
        var pixels = [UInt8](repeating: 0, count: size * size * 3)
        var mask = [UInt8](repeating: 0, count: size * size)
        drawBackground(&pixels, size: size, generator: &g)
        for (k, o) in objects.enumerated() {
            let x0 = max(0, Int(o.centerX - o.radius) - 1), x1 = min(size - 1, Int(o.centerX + o.radius) + 1)
            let y0 = max(0, Int(o.centerY - o.radius) - 1), y1 = min(size - 1, Int(o.centerY + o.radius) + 1)
            for y in y0...y1 {
                for x in x0...x1 where inside(o, Double(x) + 0.5, Double(y) + 0.5) {
                    let i = y * size + x
                    mask[i] = UInt8(k + 1)
                    pixels[3 * i] = o.colour.rgb.0; pixels[3 * i + 1] = o.colour.rgb.1; pixels[3 * i + 2] = o.colour.rgb.2
                }
            }
        }
        return Scene(size: size, objects: objects, pixels: pixels, mask: mask, captions: captions(objects, size: size, generator: &g))
    }

    /// Textured background: a muted base colour with stripes and noise, never one of the object
    /// colours at full saturation.
    static func drawBackground(_ p: inout [UInt8], size: Int, generator g: inout SplitMix) {
        let base = (90 + Int(g.next() % 80), 90 + Int(g.next() % 80), 90 + Int(g.next() % 80))
        let period = 6 + Int(g.next() % 14), vertical = g.next() % 2 == 0
        for y in 0..<size {
            for x in 0..<size {
                let stripe = ((vertical ? x : y) / period) % 2 == 0 ? 12 : -12
                let noise = Int(g.next() % 21) - 10
                let i = 3 * (y * size + x)
                p[i] = UInt8(clamping: base.0 + stripe + noise)
                p[i + 1] = UInt8(clamping: base.1 + stripe + noise)
                p[i + 2] = UInt8(clamping: base.2 + stripe + noise)
            }
        }
    }

    static func inside(_ o: Object, _ x: Double, _ y: Double) -> Bool {
        let dx = (x - o.centerX) / o.radius, dy = (y - o.centerY) / o.radius
        switch o.shape {
        case .circle: return dx * dx + dy * dy <= 1
        case .square: return abs(dx) <= 0.8 && abs(dy) <= 0.8
        case .diamond: return abs(dx) + abs(dy) <= 1
        case .cross: return (abs(dx) <= 0.3 && abs(dy) <= 1) || (abs(dy) <= 0.3 && abs(dx) <= 1)
        case .triangle: return dy <= 0.8 && dy >= -1 && abs(dx) <= (dy + 1) / 1.8 * 0.95
        case .star:
            let angle = atan2(dy, dx), r = hypot(dx, dy)
            let spike = 0.5 + 0.5 * pow(abs(cos(2.5 * angle + .pi / 2)), 3)
            return r <= spike
        }
    }

    static func phrase(_ o: Object, withSize: Bool) -> String {
        (withSize ? (o.isLarge ? "large " : "small ") : "") + o.kind
    }

    static func region(_ o: Object, size: Int) -> String {
        let third = Double(size) / 3
        let v = o.centerY < third ? "top" : (o.centerY > 2 * third ? "bottom" : "middle")
        let h = o.centerX < third ? "left" : (o.centerX > 2 * third ? "right" : "center")
        if v == "middle" && h == "center" { return "in the center" }
        if v == "middle" { return "on the \(h)" }
        if h == "center" { return "at the \(v)" }
        return "in the \(v) \(h)"
    }

    static func relation(_ a: Object, _ b: Object) -> (String, String) {
        let dx = b.centerX - a.centerX, dy = b.centerY - a.centerY
        if abs(dx) > abs(dy) { return dx > 0 ? ("to the left of", "to the right of") : ("to the right of", "to the left of") }
        return dy > 0 ? ("above", "below") : ("below", "above")
    }

    /// Several paraphrases naming every object; the first is the most complete.
    static func captions(_ objects: [Object], size: Int, generator g: inout SplitMix) -> [String] {
        func article(_ s: String) -> String { "a \(s)" }
        switch objects.count {
        case 1:
            let o = objects[0]
            return [
                "\(article(phrase(o, withSize: true))) \(region(o, size: size))",
                "there is \(article(phrase(o, withSize: false))) \(region(o, size: size))",
                "\(article(phrase(o, withSize: true))) on a striped background",
                "a picture of \(article(phrase(o, withSize: false)))",
            ]
        case 2:
            let a = objects[0], b = objects[1]
            let (ab, ba) = relation(a, b)
            return [
                "\(article(phrase(a, withSize: true))) \(ab) \(article(phrase(b, withSize: true)))",
                "\(article(phrase(b, withSize: true))) \(ba) \(article(phrase(a, withSize: true)))",
                "there is \(article(phrase(a, withSize: false))) and \(article(phrase(b, withSize: false)))",
                "\(article(phrase(a, withSize: false))) is \(ab) \(article(phrase(b, withSize: false)))",
            ]
        default:
            let names = objects.map { article(phrase($0, withSize: false)) }
            let sized = objects.map { article(phrase($0, withSize: true)) }
            let (ab, _) = relation(objects[0], objects[1])
            return [
                "\(sized[0]), \(sized[1]) and \(sized[2])",
                "three shapes: \(names[2]), \(names[0]) and \(names[1])",
                "\(names[0]) \(ab) \(names[1]) next to \(names[2])",
                "there are \(names[1]), \(names[2]) and \(names[0])",
            ]
        }
    }
}

/// SplitMix64 (kept local so ELIPShards has no engine dependency).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
}

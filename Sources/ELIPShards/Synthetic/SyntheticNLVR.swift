import Foundation

/// NLVR2-style pairs of synthetic scenes: two scenes (left, right) and a statement about both that
/// is true or false (labels as nlvr_dataset.py: "True" 1, "False" 0). Labels alternate pair by
/// pair, so every split is balanced (the majority baseline is 50%, or 50% + 1/pairs for an odd
/// count). The templates need both images, and each occurs with both labels:
/// - "the left image has more circles than the right image" (a shape, either direction);
/// - "the right image has more shapes than the left image" (all objects);
/// - "the left image contains a red circle" (one side);
/// - "both images contain a star".
/// Statements never talk about positions inside an image, so the official training transform's
/// horizontal flip does not change any label.
public enum SyntheticNLVR {
    public static let labelNames = ["False", "True"]

    public struct Pair: Equatable, Sendable {
        /// Scene indices of the left and right image.
        public let left: Int, right: Int
        public let sentence: String
        /// 1 True, 0 False.
        public let label: Int
    }

    /// `perImage` pairs with each scene of `indices` on the left and another scene of `indices`
    /// (drawn) on the right; `objects(i)` gives scene i's objects. Deterministic for the seed.
    public static func pairs(indices: [Int], perImage: Int, seed: UInt64, objects: (Int) -> [SyntheticScenes.Object]) -> [Pair] {
        guard indices.count >= 2, perImage >= 1 else { return [] }
        var g = SplitMix(seed: seed ^ 0x4E4C_5652_5F70_6169)
        var out: [Pair] = []
        for round in 0..<perImage {
            for (j, left) in indices.enumerated() {
                var r = Int(g.next() % UInt64(indices.count - 1))
                if r >= j { r += 1 }
                let right = indices[r]
                let label = (round * indices.count + j) % 2 == 0 ? 1 : 0
                let sentence = statement(left: objects(left), right: objects(right), isTrue: label == 1, generator: &g)
                out.append(Pair(left: left, right: right, sentence: sentence, label: label))
            }
        }
        return out
    }

    static func plural(_ shape: SyntheticScenes.Shape) -> String { shape == .cross ? "crosses" : "\(shape.rawValue)s" }

    /// A statement about (left, right) whose truth is `isTrue`: the templates in a drawn order,
    /// the first that can say it; "contains" always can (a scene has an object and lacks a kind).
    static func statement(left: [SyntheticScenes.Object], right: [SyntheticScenes.Object], isTrue: Bool,
                          generator g: inout SplitMix) -> String {
        func pick<T>(_ a: [T]) -> T { a[Int(g.next() % UInt64(a.count))] }
        func count(_ objects: [SyntheticScenes.Object], _ shape: SyntheticScenes.Shape) -> Int { objects.filter { $0.shape == shape }.count }
        let sides = [("left", left, "right", right), ("right", right, "left", left)]
        var templates = [0, 1, 2, 3]
        for i in stride(from: templates.count - 1, to: 0, by: -1) { templates.swapAt(i, Int(g.next() % UInt64(i + 1))) }
        for t in templates {
            var candidates: [String] = []
            switch t {
            case 0:
                // Only shapes at least one image shows: "more stars" about two star-less images is
                // false whatever the images look like.
                for (a, ao, b, bo) in sides {
                    for shape in SyntheticScenes.Shape.allCases where count(left, shape) + count(right, shape) > 0
                        && (count(ao, shape) > count(bo, shape)) == isTrue {
                        candidates.append("the \(a) image has more \(plural(shape)) than the \(b) image")
                    }
                }
            case 1:
                for (a, ao, b, bo) in sides where (ao.count > bo.count) == isTrue {
                    candidates.append("the \(a) image has more shapes than the \(b) image")
                }
            case 2:
                let shapes = Set(left.map(\.shape)).union(right.map(\.shape))
                for shape in SyntheticScenes.Shape.allCases where shapes.contains(shape)
                    && (count(left, shape) > 0 && count(right, shape) > 0) == isTrue {
                    candidates.append("both images contain a \(shape.rawValue)")
                }
            default:
                for (a, ao, _, _) in sides where !ao.isEmpty {
                    let present = Set(ao.map { "\($0.colour.name) \($0.shape.rawValue)" })
                    if isTrue {
                        candidates += present.sorted().map { "the \(a) image contains a \($0)" }
                    } else {
                        // Absent kinds sharing a colour or shape with a present object (as in
                        // SyntheticEntailment): the words alone do not give the label away.
                        let anchor = pick(ao)
                        let near = SyntheticScenes.colours.map { "\($0.name) \(anchor.shape.rawValue)" }
                            + SyntheticScenes.Shape.allCases.map { "\(anchor.colour.name) \($0.rawValue)" }
                        candidates += Set(near).subtracting(present).sorted().map { "the \(a) image contains a \($0)" }
                    }
                }
            }
            if !candidates.isEmpty { return pick(candidates) }
        }
        // Unreachable: the "contains" template has candidates for either label whenever both
        // scenes hold an object (SyntheticScenes draws at least one).
        return isTrue ? "the left image contains a \(left.first.map { "\($0.colour.name) \($0.shape.rawValue)" } ?? "shape")"
            : "both images contain a \(SyntheticScenes.Shape.allCases.first { count(left, $0) == 0 }?.rawValue ?? "shape")"
    }
}

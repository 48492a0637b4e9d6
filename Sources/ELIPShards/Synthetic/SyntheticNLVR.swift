import Foundation

/// NLVR2-style pairs of synthetic scenes: two scenes (left, right) and a statement about both that
/// is true or false (labels as nlvr_dataset.py: "True" 1, "False" 0). Labels alternate pair by
/// pair, so every split is balanced (the majority baseline is 50%, or 50% + 1/pairs for an odd
/// count). A template is drawn per pair, then the right scene is searched among the others for one
/// with which the template can say the pair's label, so every template occurs with both labels
/// about equally and the sentence alone does not give the label away:
/// - "one of the images contains a red circle" (3 in 10; false: a kind neither shows, sharing a
///   colour or shape with a present object);
/// - "the left image contains a red circle" (3 in 10; false: a kind that side lacks, as above);
/// - "both images contain a red circle" (2 in 10; false: only one image shows it, or neither);
/// - "the left image has more circles than the right image" or "... more shapes than ..." (2 in
///   10: counting, the hardest for a small model at 64 px).
/// Kinds (colour and shape) rather than shapes alone: a tiny ViT at 64 px tells colours apart long
/// before shapes. Statements never talk about positions inside an image, so the official training
/// transform's horizontal flip does not change any label.
public enum SyntheticNLVR {
    public static let labelNames = ["False", "True"]

    public struct Pair: Equatable, Sendable {
        /// Scene indices of the left and right image.
        public let left: Int, right: Int
        public let sentence: String
        /// 1 True, 0 False.
        public let label: Int
    }

    enum Template: CaseIterable {
        case eitherContains, sideContains, bothContain, moreOfAShape, moreShapes
        /// How many pairs in 10 draw it.
        var weight: Int {
            switch self {
            case .eitherContains, .sideContains: return 3
            case .bothContain: return 2
            case .moreOfAShape, .moreShapes: return 1
            }
        }
    }

    /// Right scenes tried per pair before falling back to "the left/right image contains", which
    /// any two scenes can say with either label (each holds an object, and some kind near it is
    /// absent from it). 10 of the demo's 4320 training pairs fall back.
    static let rightCandidates = 64

    /// `perImage` pairs with each scene of `indices` on the left and another scene of `indices`
    /// (searched) on the right; `objects(i)` gives scene i's objects. Deterministic for the seed.
    public static func pairs(indices: [Int], perImage: Int, seed: UInt64, objects: (Int) -> [SyntheticScenes.Object]) -> [Pair] {
        guard indices.count >= 2, perImage >= 1 else { return [] }
        var g = SplitMix(seed: seed ^ 0x4E4C_5652_5F70_6169)
        var out: [Pair] = []
        for round in 0..<perImage {
            for (j, left) in indices.enumerated() {
                let label = (round * indices.count + j) % 2 == 0 ? 1 : 0
                var roll = Int(g.next() % 10), template = Template.eitherContains
                for t in Template.allCases {
                    if roll < t.weight { template = t; break }
                    roll -= t.weight
                }
                var right = left, candidates: [String] = [], attempts = 0
                repeat {
                    var r = Int(g.next() % UInt64(indices.count - 1))
                    if r >= j { r += 1 }
                    right = indices[r]
                    candidates = statements(attempts < rightCandidates ? template : .sideContains, left: objects(left),
                                            right: objects(right), isTrue: label == 1)
                    attempts += 1
                } while candidates.isEmpty && attempts <= rightCandidates
                precondition(!candidates.isEmpty, "scenes \(left) and \(right): a scene without objects")
                out.append(Pair(left: left, right: right, sentence: candidates[Int(g.next() % UInt64(candidates.count))], label: label))
            }
        }
        return out
    }

    /// Kinds absent from `absentFrom` that share a colour or a shape with an object of `near`:
    /// false statements then use the same words as true ones.
    static func nearKinds(_ near: [SyntheticScenes.Object], absentFrom: Set<String>) -> [String] {
        var kinds = Set<String>()
        for o in near {
            for c in SyntheticScenes.colours { kinds.insert("\(c.name) \(o.shape.rawValue)") }
            for s in SyntheticScenes.Shape.allCases { kinds.insert("\(o.colour.name) \(s.rawValue)") }
        }
        return kinds.subtracting(absentFrom).sorted()
    }

    /// Every statement of `template` about (left, right) whose truth is `isTrue` (sorted, so the
    /// draw is deterministic).
    static func statements(_ template: Template, left: [SyntheticScenes.Object], right: [SyntheticScenes.Object], isTrue: Bool) -> [String] {
        func count(_ objects: [SyntheticScenes.Object], _ shape: SyntheticScenes.Shape) -> Int { objects.filter { $0.shape == shape }.count }
        let sides = [("left", left, "right", right), ("right", right, "left", left)]
        let leftKinds = Set(left.map(\.kind)), rightKinds = Set(right.map(\.kind))
        var out: [String] = []
        switch template {
        case .eitherContains:
            let kinds = isTrue ? leftKinds.union(rightKinds).sorted() : nearKinds(left + right, absentFrom: leftKinds.union(rightKinds))
            out = kinds.map { "one of the images contains a \($0)" }
        case .sideContains:
            for (a, ao, _, _) in sides {
                let present = Set(ao.map(\.kind))
                let kinds = isTrue ? present.sorted() : nearKinds(ao, absentFrom: present)
                out += kinds.map { "the \(a) image contains a \($0)" }
            }
        case .bothContain:
            let kinds = isTrue ? leftKinds.intersection(rightKinds) : leftKinds.symmetricDifference(rightKinds)
                .union(nearKinds(left + right, absentFrom: leftKinds.union(rightKinds)))
            out = kinds.sorted().map { "both images contain a \($0)" }
        case .moreOfAShape:
            // Only shapes at least one image shows: "more stars" about two star-less images is
            // false whatever the images look like.
            for (a, ao, b, bo) in sides {
                for shape in SyntheticScenes.Shape.allCases where count(left, shape) + count(right, shape) > 0
                    && (count(ao, shape) > count(bo, shape)) == isTrue {
                    out.append("the \(a) image has more \(shape.plural) than the \(b) image")
                }
            }
        case .moreShapes:
            for (a, ao, b, bo) in sides where (ao.count > bo.count) == isTrue {
                out.append("the \(a) image has more shapes than the \(b) image")
            }
        }
        return out
    }
}

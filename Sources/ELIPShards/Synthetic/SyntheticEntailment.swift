import Foundation

/// SNLI-VE-style triples for the synthetic scenes: per scene one entailed, one neutral and one
/// contradicted statement (labels as ve_dataset.py: entailment 2, neutral 1, contradiction 0), so
/// the majority-class baseline is exactly 1/3. Every template occurs with more than one label, so
/// the sentence alone does not give the label away:
/// - "there is a red circle": entailed when the scene has one, contradicted when it has not;
/// - "there are two shapes": entailed or contradicted by the count;
/// - "the red circle is made of wood": neutral when the scene has a red circle (nothing in the
///   picture tells the material), contradicted when it has none;
/// - "the red circle is on the left": entailed (its true region).
public enum SyntheticEntailment {
    public static let labelNames = ["contradiction", "neutral", "entailment"]

    public struct Statement: Equatable, Sendable {
        public let sentence: String
        /// 2 entailment, 1 neutral, 0 contradiction.
        public let label: Int
    }

    static let materials = ["wood", "paper", "glass", "metal", "plastic", "stone"]
    static let numbers = ["one shape", "two shapes", "three shapes", "four shapes"]

    /// The three statements (contradiction, neutral, entailment, in label order) about `scene`;
    /// the templates are drawn from `(seed, index)`.
    public static func statements(for scene: SyntheticScenes.Scene, index: Int, seed: UInt64) -> [Statement] {
        var g = SplitMix(seed: (seed ^ 0x5645_5F74_7269_706C) &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03)
        let objects = scene.objects
        func pick<T>(_ a: [T]) -> T { a[Int(g.next() % UInt64(a.count))] }
        func countSentence(_ n: Int) -> String { n == 1 ? "there is one shape" : "there are \(numbers[n - 1])" }
        let present = Set(objects.map(\.kind))
        // An absent kind sharing the shape or the colour of a present object when possible, so
        // contradictions are not told apart by an unusual word.
        let anchor = pick(objects)
        var absentKinds = SyntheticScenes.colours.map { "\($0.name) \(anchor.shape.rawValue)" }
            + SyntheticScenes.Shape.allCases.map { "\(anchor.colour.name) \($0.rawValue)" }
        absentKinds = absentKinds.filter { !present.contains($0) }
        let absent = pick(absentKinds)

        let contradiction: String
        switch g.next() % 4 {
        case 0, 1: contradiction = "there is a \(absent)"
        case 2:
            let wrong = pick((1...4).filter { $0 != objects.count })
            contradiction = countSentence(wrong)
        default: contradiction = "the \(absent) is made of \(pick(materials))"
        }
        let neutral = "the \(pick(objects).kind) is made of \(pick(materials))"
        let entailment: String
        switch g.next() % 4 {
        case 0, 1: entailment = "there is a \(pick(objects).kind)"
        case 2: entailment = countSentence(objects.count)
        default:
            let o = pick(objects)
            entailment = "the \(o.kind) is \(SyntheticScenes.region(o, size: scene.size))"
        }
        return [Statement(sentence: contradiction, label: 0), Statement(sentence: neutral, label: 1),
                Statement(sentence: entailment, label: 2)]
    }
}

import Foundation

/// VQA-style questions about the synthetic scenes, three per scene, each with one true answer
/// (the scenes are unambiguous, so all ten "human" answers of the official format agree):
/// - "what colour is the star?" about a shape the scene has exactly once -> its colour;
/// - "how many shapes are there?" (1-3) or "how many circles are there?" (0-3; the shape present
///   two times in three) -> a digit;
/// - "what shape is the red object?" about a colour the scene has exactly once -> the shape, or
///   "is there a red star?" (present or not, half each) -> yes / no.
/// Every question type has several answers, so the question alone does not give the answer away.
public enum SyntheticQuestions {
    public struct Question: Equatable, Sendable {
        public let question: String
        public let answer: String
    }

    /// Every answer a question can have (the answer list `rank_answer` ranks).
    public static let answerList: [String] = SyntheticScenes.colours.map(\.name)
        + SyntheticScenes.Shape.allCases.map(\.rawValue) + ["0", "1", "2", "3", "yes", "no"]

    /// Human answers per question in the official format.
    public static let humanAnswers = 10


    /// The three questions about `scene` (scene `index` of the stream `seed`).
    public static func questions(for scene: SyntheticScenes.Scene, index: Int, seed: UInt64) -> [Question] {
        var g = SplitMix(seed: (seed ^ 0x5651_415F_7175_6573) &+ UInt64(index) &* 0xA24B_AED4_963E_E407)
        let objects = scene.objects
        func pick<T>(_ a: [T]) -> T { a[Int(g.next() % UInt64(a.count))] }
        func count(_ shape: SyntheticScenes.Shape) -> Int { objects.filter { $0.shape == shape }.count }
        var out: [Question] = []

        // Colour of a shape the scene holds once (scenes never repeat a colour-shape pair, but may
        // hold two stars of different colours).
        let singleShapes = objects.filter { o in count(o.shape) == 1 }
        if let o = singleShapes.isEmpty ? nil : pick(singleShapes) {
            out.append(Question(question: "what colour is the \(o.shape.rawValue)?", answer: o.colour.name))
        } else {
            let o = pick(objects)
            out.append(Question(question: "how many \(o.shape.plural) are there?", answer: "\(count(o.shape))"))
        }

        if g.next() % 2 == 0 {
            out.append(Question(question: "how many shapes are there?", answer: "\(objects.count)"))
        } else {
            let shape = g.next() % 3 < 2 ? pick(objects).shape : pick(SyntheticScenes.Shape.allCases)
            out.append(Question(question: "how many \(shape.plural) are there?", answer: "\(count(shape))"))
        }

        let singleColours = objects.filter { o in objects.filter { $0.colour.name == o.colour.name }.count == 1 }
        if g.next() % 2 == 0, !singleColours.isEmpty {
            let o = pick(singleColours)
            out.append(Question(question: "what shape is the \(o.colour.name) object?", answer: o.shape.rawValue))
        } else {
            let present = Set(objects.map(\.kind))
            let kind: String
            if g.next() % 2 == 0 {
                let o = pick(objects)
                kind = o.kind
            } else {
                // An absent kind sharing the colour or the shape of a present object, so "no" is
                // not told apart by an unusual word.
                let anchor = pick(objects)
                let absent = (SyntheticScenes.colours.map { "\($0.name) \(anchor.shape.rawValue)" }
                    + SyntheticScenes.Shape.allCases.map { "\(anchor.colour.name) \($0.rawValue)" }).filter { !present.contains($0) }
                kind = pick(absent)
            }
            out.append(Question(question: "is there a \(kind)?", answer: present.contains(kind) ? "yes" : "no"))
        }
        return out
    }
}

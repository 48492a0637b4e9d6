import ELIPObjectives
import ELIPTensor
import XCTest

/// The token-sum, weighted, distilled sequence loss against its formula and finite differences.
final class AnswerSequenceLossTests: XCTestCase {
    private func setup() throws -> (logits: Tensor, teacher: Tensor, labels: [Int], sequenceOf: [Int]) {
        var g = SeededGenerator(seed: 7)
        let logits = try Tensor((0..<(5 * 6)).map { _ in 3 * (g.nextUniform() - 0.5) }, shape: [5, 6])
        let teacher = try Tensor((0..<(5 * 6)).map { _ in 2 * g.nextUniform() }, shape: [5, 6]).softmax()
        return (logits, teacher, [1, 0, 5, 2, 3], [0, 0, 1, 2, 2])
    }

    func testMatchesTheFormula() throws {
        let (logits, teacher, labels, sequenceOf) = try setup()
        let weights: [Float] = [0.5, 2, 1], alpha: Float = 0.3, scale: Float = 0.25
        let (total, per) = try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3,
                                                       teacherProbabilities: teacher, alpha: alpha, weights: weights, scale: scale)
        let x = logits.toArray(), q = teacher.toArray()
        var expected = [Double](repeating: 0, count: 3)
        for r in 0..<5 {
            let row = x[(r * 6)..<(r * 6 + 6)].map(Double.init)
            let m = row.max()!, lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            let logp = row.map { $0 - lse }
            let soft = -(0..<6).reduce(0.0) { $0 + logp[$1] * Double(q[r * 6 + $1]) }
            expected[sequenceOf[r]] += Double(1 - alpha) * -logp[labels[r]] + Double(alpha) * soft
        }
        for s in 0..<3 { XCTAssertEqual(Double(per[s]), expected[s], accuracy: 1e-5) }
        let weighted = zip(expected, weights).reduce(0.0) { $0 + $1.0 * Double($1.1) } * Double(scale)
        XCTAssertEqual(Double(total.scalar), weighted, accuracy: 1e-5)
        // Without a teacher: plain token sums.
        let plain = try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3, teacherProbabilities: nil, alpha: alpha)
        XCTAssertEqual(plain.perSequence[1], -logits.logSoftmax().toArray()[2 * 6 + 5], accuracy: 1e-5)
    }

    func testGradientMatchesFiniteDifferences() throws {
        let (logits0, teacher, labels, sequenceOf) = try setup()
        let logits = try Tensor(logits0.toArray(), shape: logits0.shape).requiringGrad()
        let r = try GradientCheck.check(inputs: [logits]) {
            try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3,
                                        teacherProbabilities: teacher, alpha: 0.4, weights: [1, 0.5, 2], scale: 0.5).total
        }
        XCTAssertGreaterThan(r.checked, 0)
        // The hard-target path (no teacher) picks rows instead of building dense targets.
        let plain = try GradientCheck.check(inputs: [logits]) {
            try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3,
                                        teacherProbabilities: nil, alpha: 0.4, weights: [1, 0.5, 2], scale: 0.5).total
        }
        XCTAssertGreaterThan(plain.checked, 0)
        let t = try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3,
                                            teacherProbabilities: nil, alpha: 0.4, weights: [1, 0.5, 2], scale: 0.5)
        let expected = zip(t.perSequence, [Float(1), 0.5, 2]).reduce(Float(0)) { $0 + $1.0 * $1.1 } * 0.5
        XCTAssertEqual(t.total.scalar, expected, accuracy: 1e-5)
    }

    func testBadInputs() throws {
        let (logits, teacher, labels, sequenceOf) = try setup()
        XCTAssertThrowsError(try AnswerSequenceLoss.loss(logits: logits, labels: [1, 0, 9, 2, 3], sequenceOf: sequenceOf, sequences: 3, teacherProbabilities: nil, alpha: 0)) {
            XCTAssertTrue("\($0)".contains("label 9"), "\($0)")
        }
        XCTAssertThrowsError(try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: [0, 0, 1, 2, 3], sequences: 3, teacherProbabilities: nil, alpha: 0)) {
            XCTAssertTrue("\($0)".contains("sequence 3"), "\($0)")
        }
        XCTAssertThrowsError(try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3, teacherProbabilities: teacher, alpha: 0, weights: [1])) {
            XCTAssertTrue("\($0)".contains("weights"), "\($0)")
        }
        XCTAssertThrowsError(try AnswerSequenceLoss.loss(logits: logits, labels: labels, sequenceOf: sequenceOf, sequences: 3, teacherProbabilities: teacher.gatherRows([0]), alpha: 0)) {
            XCTAssertTrue("\($0)".contains("teacher"), "\($0)")
        }
    }
}

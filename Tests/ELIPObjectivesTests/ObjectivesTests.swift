import ELIPNN
import ELIPObjectives
import ELIPTensor
import Foundation
import XCTest

private func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try! Tensor((0..<shape.reduce(1, *)).map { _ in g.nextNormal() * scale }, shape: shape).requiringGrad()
}

final class MomentumTwinTests: XCTestCase {
    /// Every `X_m.*` parameter moves towards `X.*` by p_m = m p_m + (1 - m) p, and only those.
    func testEMAOverPairedParameters() throws {
        let online = ParameterArena(capacity: 1 << 12), momentum = ParameterArena(capacity: 1 << 12, withGradients: false)
        let a = try online.add("enc.w", shape: [5, 3]), head = try online.add("head.w", shape: [2]), b = try online.add("enc.b", shape: [7])
        let am = try momentum.add("enc_m.w", shape: [5, 3]), bm = try momentum.add("enc_m.b", shape: [7])
        try a.assign((0..<15).map { Float($0) }); try b.assign((0..<7).map { Float(-$0) }); try head.assign([9, 9])
        let twin = try MomentumTwin(online: online, momentum: momentum, coefficient: 0.9)
        twin.copyOnlineToMomentum()
        XCTAssertEqual(am.toArray(), a.toArray())
        try a.assign((0..<15).map { Float($0) + 10 })
        twin.update()
        for (x, y) in zip(am.toArray(), (0..<15).map { 0.9 * Float($0) + 0.1 * (Float($0) + 10) }) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        XCTAssertEqual(bm.toArray(), b.toArray())
        let orphan = ParameterArena(capacity: 1 << 10, withGradients: false)
        _ = try orphan.add("other_m.w", shape: [2])
        XCTAssertThrowsError(try MomentumTwin(online: online, momentum: orphan, coefficient: 0.9)) {
            XCTAssertTrue("\($0)".contains("other_m.w"), "\($0)")
        }
    }
}

final class ContrastiveQueueTests: XCTestCase {
    /// Targets are alpha softmax(momentum sims) + (1 - alpha) one-hot over [batch | queue]; the
    /// loss equals the formula in double precision; gradients reach features and temperature.
    func testDistilledContrastiveLossMatchesTheFormula() throws {
        let queue = try ContrastiveQueue(dim: 4, size: 6)
        queue.initialiseRandomly(seed: 1)
        let imgM = try random([3, 4], seed: 2).detached().l2Normalized(), txtM = try random([3, 4], seed: 3).detached().l2Normalized()
        let teacher = try queue.teacher(imageFeatM: imgM, textFeatM: txtM, batchImages: imgM, batchTexts: txtM,
                                        temperature: 0.1, alpha: 0.4, positiveOffset: 0)
        XCTAssertEqual(teacher.imageToText.shape, [3, 9])
        let t = teacher.imageToText.toArray()
        for r in 0..<3 { XCTAssertEqual(t[(r * 9)..<(r * 9 + 9)].reduce(0, +), 1, accuracy: 1e-5) }
        let img = random([3, 4], seed: 4), txt = random([3, 4], seed: 5)
        let temp = try Tensor([0.1], shape: []).requiringGrad()
        let student = try queue.loss(imageFeat: img, textFeat: txt, temperature: temp, teacher: teacher)
        // Direct: image i vs text candidate j = [txtM rows; queue columns].
        let tc = teacher.textCandidates.toArray(), ic = teacher.imageCandidates.toArray(), iv = img.toArray(), tv = txt.toArray()
        func directLoss(_ q: [Float], _ cand: [Float], _ targets: [Float]) -> Double {
            var total = 0.0
            for r in 0..<3 {
                var sims = [Double](repeating: 0, count: 9)
                for j in 0..<9 {
                    var dot = 0.0
                    for d in 0..<4 { dot += Double(q[r * 4 + d]) * Double(cand[d * 9 + j]) }
                    sims[j] = dot / 0.1
                }
                let m = sims.max()!
                var sum = 0.0
                for x in sims { sum += exp(x - m) }
                let lse = m + log(sum)
                for j in 0..<9 { total -= (sims[j] - lse) * Double(targets[r * 9 + j]) }
            }
            return total / 3
        }
        let expected = (directLoss(iv, tc, t) + directLoss(tv, ic, teacher.textToImage.toArray())) / 2
        XCTAssertEqual(Double(student.loss.scalar), expected, accuracy: 1e-4)
        Autograd.reset()
        let r = try GradientCheck.check(inputs: [img, txt, temp], eps: 1e-3, atol: 2e-3, rtol: 3e-2) {
            try queue.loss(imageFeat: img, textFeat: txt, temperature: temp, teacher: teacher).loss
        }
        XCTAssertGreaterThan(r.checked, 0)
    }

    /// Enqueue writes columns at the pointer and wraps around; wrong widths are errors.
    func testEnqueueWrapsAround() throws {
        let queue = try ContrastiveQueue(dim: 2, size: 5)
        queue.pointer = 3
        let img = try Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2]), txt = try Tensor([7, 8, 9, 10, 11, 12], shape: [3, 2])
        try queue.enqueue(imageFeatures: img, textFeatures: txt)
        XCTAssertEqual(queue.pointer, 1)
        XCTAssertEqual(queue.imageQueue.toArray(), [5, 0, 0, 1, 3, 6, 0, 0, 2, 4])
        XCTAssertThrowsError(try queue.enqueue(imageFeatures: Tensor.zeros([2, 3]), textFeatures: Tensor.zeros([2, 3])))
        XCTAssertThrowsError(try ContrastiveQueue(dim: 0, size: 5))
    }

    func testDistillationWeightRamps() {
        XCTAssertEqual(distillationWeight(0.4, rampEpochs: 1, epoch: 0, iteration: 50, iterationsPerEpoch: 200), 0.1, accuracy: 1e-7)
        XCTAssertEqual(distillationWeight(0.4, rampEpochs: 1, epoch: 0, iteration: 500, iterationsPerEpoch: 200), 0.4, accuracy: 1e-7)
        XCTAssertEqual(distillationWeight(0.4, rampEpochs: 1, epoch: 2, iteration: 0, iterationsPerEpoch: 200), 0.4)
        // BLIP ramps over two epochs: halfway through epoch 1 it is at 3/4.
        XCTAssertEqual(distillationWeight(0.4, rampEpochs: 2, epoch: 1, iteration: 100, iterationsPerEpoch: 200), 0.3, accuracy: 1e-7)
        XCTAssertEqual(distillationWeight(0.4, rampEpochs: 1, epoch: 0, iteration: 3, iterationsPerEpoch: 0), 0.4, "no division by zero")
    }
}

final class HardNegativeTests: XCTestCase {
    /// Never the row's own positive; a dominant similarity is (almost) always drawn; a row's draw
    /// depends on its global index only, so a split batch draws what the whole one does.
    func testSamplingExcludesThePositiveAndSplitsLikeTheWholeBatch() throws {
        var g = SeededGenerator(seed: 1)
        let rows = 6, cols = 6
        var values = (0..<(rows * cols)).map { _ in g.nextNormal() }
        values[0 * cols + 4] = 50  // row 0 strongly prefers candidate 4
        let sim = try Tensor(values, shape: [rows, cols])
        let whole = HardNegatives.sample(sim, candidates: cols, rowOffset: 0, seed: 9, stream: 1)
        XCTAssertEqual(whole[0], 4)
        for (b, j) in whole.enumerated() { XCTAssertNotEqual(b, j) }
        let top = HardNegatives.sample(try sim.slice(axis: 0, start: 0, length: 3), candidates: cols, rowOffset: 0, seed: 9, stream: 1)
        let bottom = HardNegatives.sample(try sim.slice(axis: 0, start: 3, length: 3), candidates: cols, rowOffset: 3, seed: 9, stream: 1)
        XCTAssertEqual(top + bottom, whole)
        XCTAssertNotEqual(HardNegatives.sample(sim, candidates: cols, rowOffset: 0, seed: 9, stream: 2) + [0], whole + [1])
        XCTAssertThrowsError(try HardNegatives.checkGiven(imageForText: [1, 5], textForImage: [0, 1], count: 2, candidates: 4))
        XCTAssertThrowsError(try HardNegatives.checkGiven(imageForText: [1], textForImage: [0, 1], count: 2, candidates: 4))
    }

    /// Locally the negatives are the batch's own rows; their masks follow the drawn texts.
    func testLocalNegativeInputs() throws {
        let images = random([3, 4, 2], seed: 2)
        let (pool, rows) = try HardNegatives.negativeImages(images, drawn: [2, 0, 1], global: nil)
        XCTAssertTrue(pool === images)
        XCTAssertEqual(rows, [2, 0, 1])
        let text = try TextBatch(ids: [1, 2, 0, 3, 4, 5, 6, 0, 0], mask: [1, 1, 0, 1, 1, 1, 1, 0, 0], batch: 3, length: 3)
        let states = random([3, 3, 2], seed: 3)
        let neg = try HardNegatives.negativeTexts(states, text: text, drawn: [2, 2, 0], global: nil)
        XCTAssertEqual(neg.mask.mask, [1, 0, 0, 1, 0, 0, 1, 1, 0])
        XCTAssertEqual(Array(neg.states.toArray()[0..<6]), Array(states.toArray()[12..<18]))
        Autograd.reset()
    }
}

final class LanguageModelingTests: XCTestCase {
    /// ALBEF's masking statistics: ~15% of maskable tokens, never padding or [CLS], 80/10/10.
    func testMaskingStatisticsAndSpecialTokens() {
        let specials = SpecialTokens(pad: 7, unknown: 8, cls: 9, sep: 10, mask: 11)
        let ids = (0..<200_000).map { $0 % 10 == 0 ? 9 : ($0 % 10 == 9 ? 7 : 2000 + $0 % 7) }
        let mlm = MaskedLanguageModeling(probability: 0.15, vocabularySize: 30522, specials: specials)
        let (input, labels) = mlm.mask(ids, seed: 5)
        let masked = labels.indices.filter { labels[$0] != -100 }
        XCTAssertFalse(masked.contains { ids[$0] == 9 || ids[$0] == 7 }, "the tokenizer's [CLS] and [PAD] are never masked")
        XCTAssertEqual(Double(masked.count) / Double(ids.count * 8 / 10), 0.15, accuracy: 0.005)
        XCTAssertEqual(Double(masked.filter { input[$0] == 11 }.count) / Double(masked.count), 0.8, accuracy: 0.01)
        XCTAssertEqual(Double(masked.filter { input[$0] == ids[$0] }.count) / Double(masked.count), 0.1, accuracy: 0.01)
        let (a, la) = mlm.mask(Array(ids[..<1000]), seed: 5)
        let (b, lb) = mlm.mask(Array(ids[1000..<2000]), seed: 5, firstToken: 1000)
        XCTAssertTrue(a + b == Array(input[..<2000]) && la + lb == Array(labels[..<2000]))
    }

    /// Masked flat rows become each caption's positions (a caption without any reads none).
    func testMaskedRowsAsPositionsPerCaption() {
        XCTAssertEqual(MaskedLanguageModeling.positionsPerEntry(rows: [1, 3, 9, 10, 11], entries: 3, length: 4),
                       [[1, 3], [], [1, 2, 3]])
        XCTAssertEqual(MaskedLanguageModeling.positionsPerEntry(rows: [], entries: 2, length: 5), [[], []])
    }

    func testDistilledMLMLossFormula() throws {
        let logits = random([4, 6], seed: 6)
        let teacher = try random([4, 6], seed: 7).detached().softmax()
        let labels = [1, 5, 0, 2]
        let loss = try MaskedLanguageModeling.distilledLoss(logits: logits, labels: labels, teacherProbabilities: teacher, alpha: 0.4, scale: 0.5)
        let hard = try logits.crossEntropy(labels: labels).scalar, soft = try logits.softCrossEntropy(targets: teacher).scalar
        XCTAssertEqual(loss.scalar, (0.6 * hard + 0.4 * soft) * 0.5, accuracy: 1e-6)
        Autograd.reset()
        let r = try GradientCheck.check(inputs: [logits]) {
            try MaskedLanguageModeling.distilledLoss(logits: logits, labels: labels, teacherProbabilities: teacher, alpha: 0.4, scale: 0.5)
        }
        XCTAssertGreaterThan(r.checked, 0)
    }

    /// Position t predicts token t + 1; ignored targets (-100) and the first position never count;
    /// label smoothing as PyTorch; mean over the valid targets of the whole batch.
    func testCausalLMLossShiftsAndSmooths() throws {
        let b = 2, l = 4, v = 5
        let logits = random([b, l, v], seed: 8)
        let targets = [30, 1, 4, -100, 31, 2, 2, 0]  // [b, l]; position 0 is the [DEC] token
        let eps: Float = 0.1
        let got = try CausalLanguageModeling.loss(logits: logits, targets: targets, labelSmoothing: eps).scalar
        let x = logits.toArray()
        var total = 0.0, n = 0.0
        for i in 0..<b { for t in 0..<(l - 1) where targets[i * l + t + 1] != -100 {
            let row = (0..<v).map { Double(x[(i * l + t) * v + $0]) }
            let m = row.max()!, lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
            total += (1 - Double(eps)) * (lse - row[targets[i * l + t + 1]]) + Double(eps) * row.map { lse - $0 }.reduce(0, +) / Double(v)
            n += 1
        } }
        XCTAssertEqual(Double(got), total / n, accuracy: 1e-5)
        Autograd.reset()
        let r = try GradientCheck.check(inputs: [logits]) { try CausalLanguageModeling.loss(logits: logits, targets: targets, labelSmoothing: eps) }
        XCTAssertGreaterThan(r.checked, 0)
        XCTAssertThrowsError(try CausalLanguageModeling.loss(logits: logits, targets: [1, 2], labelSmoothing: eps))
        XCTAssertEqual(try CausalLanguageModeling.loss(logits: logits, targets: [Int](repeating: -100, count: 8), labelSmoothing: eps).scalar, 0)
    }

    /// The head applied to the predicting rows only gives the loss and the gradients (of the
    /// states and of the head's weights) of the head applied to every row.
    func testCausalLMHeadOnPredictingRowsEqualsEveryRow() throws {
        let b = 3, l = 5, h = 4, v = 7
        let hidden = random([b, l, h], seed: 21)
        let weight = random([v, h], seed: 22)
        let targets = [40, 3, 6, -100, -100, 41, 1, 1, 2, 5, 42, -100, -100, -100, -100]
        let head: (Tensor) throws -> Tensor = { try $0.linear(weight, nil) }
        let rows = CausalLanguageModeling.predictingRows(targets: targets, batch: b, length: l)
        XCTAssertEqual(rows.rows, [0, 1, 5, 6, 7, 8])
        XCTAssertEqual(rows.labels, [3, 6, 1, 1, 2, 5])

        func run(_ loss: () throws -> Tensor) throws -> (Float, [Float], [Float]) {
            Autograd.reset(); hidden.zeroGradient(); weight.zeroGradient()
            let value = try loss()
            try Autograd.backward(from: value)
            return (value.scalar, hidden.grad!.toArray(), weight.grad!.toArray())
        }
        let every = try run { try CausalLanguageModeling.loss(logits: head(hidden.reshaped([b * l, h])).reshaped([b, l, v]), targets: targets, labelSmoothing: 0.1) }
        let some = try run { try CausalLanguageModeling.loss(hidden: hidden, targets: targets, labelSmoothing: 0.1, head: head) }
        XCTAssertEqual(some.0, every.0, accuracy: 1e-6)
        for (x, y) in zip(some.1, every.1) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        for (x, y) in zip(some.2, every.2) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        XCTAssertTrue(some.1[(3 * h)..<(5 * h)].allSatisfy { $0 == 0 }, "rows without a target get no gradient")
        Autograd.reset()
        let r = try GradientCheck.check(inputs: [hidden, weight]) { try CausalLanguageModeling.loss(hidden: hidden, targets: targets, labelSmoothing: 0.1, head: head) }
        XCTAssertGreaterThan(r.checked, 0)
        XCTAssertThrowsError(try CausalLanguageModeling.loss(hidden: hidden, targets: [1, 2], labelSmoothing: 0.1, head: head))
    }
}

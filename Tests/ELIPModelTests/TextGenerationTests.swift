import ELIPModel
import ELIPNN
import ELIPTensor
import Foundation
import XCTest

/// Beam search and sampling over synthetic next-token tables, then BLIP's captioner end to end.
final class TextGenerationTests: XCTestCase {
    /// A toy language model: log-probabilities depending on the last token and the length, so
    /// greedy and beam search disagree.
    private func table(vocab: Int, seed: UInt64) -> TextGeneration.NextTokenLogProbs {
        { prefixes, items in
            prefixes.enumerated().map { r, p in
                let key = p.last! * 31 + p.count * 7 + items[r] * 131
                let raw = (0..<vocab).map { 4 * CounterRandom.uniform(seed: seed &+ UInt64(key), index: $0) }
                let m = raw.max()!, lse = m + log(raw.map { exp($0 - m) }.reduce(0, +))
                return raw.map { $0 - lse }
            }
        }
    }

    private func logProb(_ next: TextGeneration.NextTokenLogProbs, item: Int, tokens: [Int], promptCount: Int, eos: Int, end: Bool) throws -> Float {
        var s: Float = 0
        for t in promptCount..<tokens.count { s += try next([Array(tokens[..<t])], [item])[0][tokens[t]] }
        if end { s += try next([tokens], [item])[0][eos] }
        return s
    }

    func testOneBeamIsGreedyWithEOSMaskedUntilMinLength() throws {
        let next = table(vocab: 6, seed: 3), eos = 5, prompt = [1, 2]
        var o = CaptionDecoding(); o.beams = 1; o.maxLength = 9; o.minLength = 5
        let out = try TextGeneration.beamSearch(items: 4, prompt: prompt, eos: eos, options: o, next: next)
        for item in 0..<4 {
            var seq = prompt
            while seq.count < o.maxLength {
                var lp = try next([seq], [item])[0]
                if seq.count < o.minLength { lp[eos] = -.infinity }
                let best = lp.indices.max { lp[$0] < lp[$1] }!
                if best == eos { break }
                seq.append(best)
            }
            XCTAssertEqual(out[item], seq, "item \(item)")
            XCTAssertGreaterThanOrEqual(out[item].count, o.minLength)
            XCTAssertFalse(out[item].dropFirst(prompt.count).contains(eos))
        }
    }

    /// With more beams the best hypothesis scores (length-normalised log-probability) at least as
    /// well as greedy's on these tables, respects the limits, and batches items independently.
    func testBeamsImproveOnGreedyAndItemsAreIndependent() throws {
        let next = table(vocab: 7, seed: 11), eos = 6, prompt = [0]
        var o = CaptionDecoding(); o.maxLength = 8; o.minLength = 3
        var greedy = o; greedy.beams = 1
        o.beams = 4
        let items = 6
        let beams = try TextGeneration.beamSearch(items: items, prompt: prompt, eos: eos, options: o, next: next)
        let greedyOut = try TextGeneration.beamSearch(items: items, prompt: prompt, eos: eos, options: greedy, next: next)
        var better = 0
        for item in 0..<items {
            let b = beams[item], g = greedyOut[item]
            XCTAssertTrue((o.minLength...o.maxLength).contains(b.count), "\(b)")
            XCTAssertEqual(Array(b.prefix(1)), prompt)
            let sb = try logProb(next, item: item, tokens: b, promptCount: 1, eos: eos, end: b.count < o.maxLength) / Float(b.count)
            let sg = try logProb(next, item: item, tokens: g, promptCount: 1, eos: eos, end: g.count < o.maxLength) / Float(g.count)
            XCTAssertGreaterThanOrEqual(sb, sg - 1e-5, "item \(item): beam \(b) vs greedy \(g)")
            if sb > sg + 1e-5 { better += 1 }
            // Alone, an item decodes the same as in the batch.
            let single = try TextGeneration.beamSearch(items: 1, prompt: prompt, eos: eos, options: o) { p, rows in try next(p, rows.map { _ in item }) }
            XCTAssertEqual(single[0], b)
        }
        XCTAssertGreaterThan(better, 0, "the tables are built so that beam search finds better captions than greedy")
    }

    func testSamplingIsSeededAndStaysInTheNucleus() throws {
        let vocab = 40, eos = 39
        let next: TextGeneration.NextTokenLogProbs = { prefixes, _ in prefixes.map { _ in (0..<vocab).map { Float(vocab - $0) * 0.5 } } }
        var o = CaptionDecoding(); o.sample = true; o.maxLength = 12; o.minLength = 4; o.topK = 5; o.topP = 0.95; o.repetitionPenalty = 1
        let a = try TextGeneration.sample(items: 8, prompt: [0], eos: eos, options: o, logits: next)
        XCTAssertEqual(a, try TextGeneration.sample(items: 8, prompt: [0], eos: eos, options: o, logits: next), "same seed, same captions")
        for s in a {
            XCTAssertTrue(s.dropFirst().allSatisfy { $0 < 5 }, "top-k 5: \(s)")
            XCTAssertEqual(s.count, o.maxLength, "EOS is never in the nucleus here")
        }
        XCTAssertGreaterThan(Set(a).count, 1, "different items draw differently")
        o.seed = 1
        XCTAssertNotEqual(a, try TextGeneration.sample(items: 8, prompt: [0], eos: eos, options: o, logits: next))
        o.topK = 0; o.topP = 0.01   // the nucleus is the single most likely token
        XCTAssertEqual(try TextGeneration.sample(items: 2, prompt: [0], eos: eos, options: o, logits: next), [[Int]](repeating: [0] + [Int](repeating: 0, count: 11), count: 2))
    }

    /// BLIP's captioner: each greedy token is the arg-max of the decoder run once over the whole
    /// caption (the causal mask must make the step-by-step and the one-pass logits agree).
    func testBLIPGreedyCaptionIsConsistentWithOnePassDecoding() throws {
        let config = try tinyBLIPConfig()
        let m = try BLIPModel(config: config)
        try m.initialiseRandomly(seed: 5)
        var g = SeededGenerator(seed: 9)
        let images = try Tensor((0..<(2 * 3 * 64 * 64)).map { _ in g.nextNormal() }, shape: [2, 3, 64, 64])
        var o = CaptionDecoding(); o.beams = 1; o.maxLength = 7; o.minLength = 3
        let eos = 3, prompt = [10, 11]
        let captions = try m.generateCaptions(images, promptIds: prompt, eos: eos, options: o)
        XCTAssertEqual(captions.count, 2)
        let h = config.bert.hiddenSize
        try Autograd.noGrad {
            let context = try m.textLayers.crossAttentionContext(try m.visualEncoder(images).tokens)
            for (item, caption) in captions.enumerated() {
                XCTAssertEqual(Array(caption.prefix(2)), prompt)
                XCTAssertTrue((o.minLength - 1...o.maxLength - 1).contains(caption.count), "\(caption)")
                let seq = [config.decoderStartId] + caption, l = seq.count
                let text = try TextBatch(ids: seq, mask: [Int](repeating: 1, count: l), batch: 1, length: l)
                let hidden = try m.decoderLayers(m.textEmbeddings(text, dropout: nil), mask: text, images: context, imageRows: [item], dropout: nil)
                let logits = try m.lmHead(hidden.reshaped([l, h])).toArray()
                let v = logits.count / l
                for t in (prompt.count + 1)..<l {
                    var row = Array(logits[((t - 1) * v)..<(t * v)])
                    if t < o.minLength { row[eos] = -.infinity }
                    XCTAssertEqual(row.indices.max { row[$0] < row[$1] }, seq[t], "item \(item) position \(t)")
                }
            }
        }
    }
}

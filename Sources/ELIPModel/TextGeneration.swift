import ELIPTensor
import Foundation

/// How a caption is decoded (BLIP's `generate`, HuggingFace 4.x semantics).
public struct CaptionDecoding: Equatable, Sendable {
    /// Beam search with this many beams; ignored when sampling.
    public var beams = 3
    /// Sequence limits in tokens, prompt included (HuggingFace's max_length / min_length).
    public var maxLength = 20
    public var minLength = 5
    /// Nucleus sampling instead of beam search: top-k 50, then top-p, repetition penalty.
    public var sample = false
    public var topP: Float = 0.9
    public var topK = 50
    public var repetitionPenalty: Float = 1.1
    public var seed: UInt64 = 0
    public init() {}
}

/// Decoding loops over a model's next-token log-probabilities, generic over the model.
public enum TextGeneration {
    /// One step: for each row (a prefix), the log-softmax of the next token [rows][vocab].
    public typealias NextTokenLogProbs = (_ prefixes: [[Int]], _ itemOfRow: [Int]) throws -> [[Float]]

    /// HuggingFace's beam search (BeamSearchScorer, length penalty 1, no early stopping) for
    /// `items` inputs that all start from `prompt`: EOS masked until `minLength`, finished
    /// hypotheses scored by sum of log-probs / length, the best per item returned (prompt
    /// included, EOS excluded).
    public static func beamSearch(items: Int, prompt: [Int], eos: Int, options o: CaptionDecoding,
                                  next: NextTokenLogProbs) throws -> [[Int]] {
        let k = max(1, o.beams)
        var sequences = [[Int]](repeating: prompt, count: items * k)
        var scores = (0..<(items * k)).map { $0 % k == 0 ? Float(0) : -1e9 }  // step 1 picks from beam 0 only
        var hypotheses = [[(score: Float, tokens: [Int])]](repeating: [], count: items)
        var done = [Bool](repeating: false, count: items)
        func add(_ item: Int, _ tokens: [Int], _ sumLogProbs: Float) {
            let score = sumLogProbs / Float(tokens.count)
            var h = hypotheses[item]
            let worst = h.map(\.score).min() ?? .infinity
            guard h.count < k || score > worst else { return }
            h.append((score, tokens))
            if h.count > k, let w = h.indices.min(by: { h[$0].score < h[$1].score }) { h.remove(at: w) }
            hypotheses[item] = h
        }
        var curLen = prompt.count
        while curLen < o.maxLength && done.contains(false) {
            let active = (0..<items).filter { !done[$0] }
            let rows = active.flatMap { item in (0..<k).map { item * k + $0 } }
            let logProbs = try next(rows.map { sequences[$0] }, rows.map { $0 / k })
            for (a, item) in active.enumerated() {
                // The 2k best (beam, token) continuations, ties in HuggingFace's flattened order.
                var top: [(score: Float, beam: Int, token: Int)] = []
                for beam in 0..<k {
                    let row = item * k + beam
                    var lp = logProbs[a * k + beam]
                    if curLen < o.minLength && eos < lp.count { lp[eos] = -.infinity }
                    for (token, v) in lp.enumerated() where v > -.infinity {
                        let s = scores[row] + v
                        if top.count == 2 * k, let last = top.last, s <= last.score { continue }
                        let at = top.firstIndex { s > $0.score } ?? top.count
                        top.insert((s, beam, token), at: at)
                        if top.count > 2 * k { top.removeLast() }
                    }
                }
                var filled = 0
                var nextRows: [(tokens: [Int], score: Float)] = []
                for (rank, c) in top.enumerated() {
                    let row = item * k + c.beam
                    if c.token == eos {
                        if rank < k { add(item, sequences[row], c.score) }
                    } else {
                        nextRows.append((sequences[row] + [c.token], c.score))
                        filled += 1
                        if filled == k { break }
                    }
                }
                for (beam, r) in nextRows.enumerated() {
                    sequences[item * k + beam] = r.tokens
                    scores[item * k + beam] = r.score
                }
                let best = top.first?.score ?? -.infinity
                if hypotheses[item].count >= k, let worst = hypotheses[item].map(\.score).min(), worst >= best / Float(curLen) {
                    done[item] = true
                }
            }
            curLen += 1
        }
        for item in 0..<items where !done[item] {
            for beam in 0..<k { add(item, sequences[item * k + beam], scores[item * k + beam]) }
        }
        return hypotheses.map { h in h.max(by: { $0.score < $1.score })?.tokens ?? prompt }
    }

    /// HuggingFace's sampling: repetition penalty on the logits of tokens already present, EOS
    /// masked until `minLength`, top-k then top-p (nucleus), one draw per step from a seeded stream.
    /// `next` must return raw logits here. Returns each item's tokens (prompt included, EOS excluded).
    public static func sample(items: Int, prompt: [Int], eos: Int, options o: CaptionDecoding, logits next: NextTokenLogProbs) throws -> [[Int]] {
        var sequences = [[Int]](repeating: prompt, count: items)
        var finished = [Bool](repeating: false, count: items)
        var step = 0
        while sequences.map(\.count).max()! < o.maxLength && finished.contains(false) {
            let rows = (0..<items).filter { !finished[$0] }
            let logits = try next(rows.map { sequences[$0] }, rows)
            for (r, item) in rows.enumerated() {
                var l = logits[r]
                for t in Set(sequences[item]) where t < l.count { l[t] = l[t] < 0 ? l[t] * o.repetitionPenalty : l[t] / o.repetitionPenalty }
                if sequences[item].count < o.minLength { l[eos] = -.infinity }
                var order = l.indices.sorted { l[$0] > l[$1] }
                if o.topK > 0 { order = Array(order.prefix(o.topK)) }
                let m = l[order[0]]
                let p = order.map { Double(exp(l[$0] - m)) }
                let total = p.reduce(0, +)
                var kept = 0, cumulative = 0.0
                for x in p { cumulative += x / total; kept += 1; if cumulative > Double(o.topP) { break } }
                let keptTotal = p.prefix(kept).reduce(0, +)
                var u = Double(CounterRandom.uniform(seed: o.seed &+ UInt64(step), index: item)) * keptTotal
                var token = order[kept - 1]
                for (j, x) in p.prefix(kept).enumerated() { u -= x; if u < 0 { token = order[j]; break } }
                if token == eos { finished[item] = true } else { sequences[item].append(token) }
            }
            step += 1
        }
        return sequences
    }
}

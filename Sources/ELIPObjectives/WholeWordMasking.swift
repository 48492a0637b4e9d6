import ELIPTensor

/// METER's MLM masking (SPEC-METER §6): HuggingFace's `DataCollatorForWholeWordMask` with a
/// RoBERTa tokenizer, row by row:
/// 1. candidates are the row's positions grouped into words — a token whose string starts with
///    "##" joins the previous word (BPE vocabularies almost never have such tokens, so nearly
///    every position, pads included, is its own word);
/// 2. the words are shuffled; words are taken in that order while the total stays within
///    n = max(1, round-half-even(L · p)) tokens (a word that would overflow is skipped);
/// 3. taken positions holding a special id (`<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`) are dropped,
///    so a row gets n or fewer masked tokens (possibly none);
/// 4. each masked token becomes the mask id with probability 0.8, else a uniform random id in
///    [0, V) with probability 0.5 (it may be a special id, as in the official code), else stays.
/// Labels are the original ids at masked positions and −100 elsewhere. The draws for row r come
/// from (seed, firstRow + r), so a row's masking depends only on its place in the global batch.
public struct WholeWordMasking: Sendable {
    /// mlm_prob (0.15 in METER), as a Double so L · p rounds as Python's does.
    public let probability: Double
    public let vocabularySize: Int
    public let maskId: Int
    public let specialIds: Set<Int>
    /// Ids whose token continues the previous word (their strings start with "##").
    public let continuationIds: Set<Int>

    public init(probability: Double, vocabularySize: Int, maskId: Int, specialIds: Set<Int>, continuationIds: Set<Int> = []) throws {
        guard probability > 0, probability <= 1 else {
            throw TensorError.invalidArgument(op: "whole-word masking", reason: "probability \(probability) outside (0, 1]")
        }
        guard vocabularySize > 0, maskId >= 0, maskId < vocabularySize else {
            throw TensorError.invalidArgument(op: "whole-word masking", reason: "mask id \(maskId) outside a vocabulary of \(vocabularySize)")
        }
        self.probability = probability
        self.vocabularySize = vocabularySize
        self.maskId = maskId
        self.specialIds = specialIds
        self.continuationIds = continuationIds
    }

    /// Tokens drawn per row of length L: min(512, max(1, round(L · p))) with Python's
    /// round-half-to-even (round(7.5) = 8, round(2.5) = 2).
    public func drawCount(length: Int) -> Int {
        min(512, max(1, Int((Double(length) * probability).rounded(.toNearestOrEven))))
    }

    /// Masks `ids` ([rows × length], row-major). Returns the inputs and the labels.
    public func mask(_ ids: [Int], length: Int, seed: UInt64, firstRow: Int = 0) throws -> (inputs: [Int], labels: [Int]) {
        guard length > 0, ids.count % length == 0 else {
            throw TensorError.invalidArgument(op: "whole-word masking", reason: "\(ids.count) ids do not form rows of \(length)")
        }
        var inputs = ids
        var labels = [Int](repeating: -100, count: ids.count)
        let n = drawCount(length: length)
        for r in 0..<(ids.count / length) {
            let base = r * length
            var generator = SeededGenerator(seed: CounterRandom.mix(seed ^ CounterRandom.mix(UInt64(firstRow + r))))
            // 1. words as position lists.
            var words: [[Int]] = []
            for k in 0..<length {
                if !words.isEmpty && continuationIds.contains(ids[base + k]) { words[words.count - 1].append(k) } else { words.append([k]) }
            }
            // 2. shuffle, take words while they fit.
            words.shuffle(using: &generator)
            var taken: [Int] = []
            for word in words {
                if taken.count >= n { break }
                if taken.count + word.count > n { continue }
                taken += word
            }
            // 3-4. drop specials, then mask / random / keep.
            for k in taken where !specialIds.contains(ids[base + k]) {
                labels[base + k] = ids[base + k]
                let u = generator.nextUniform()
                if u < 0.8 {
                    inputs[base + k] = maskId
                } else if generator.nextUniform() < 0.5 {
                    inputs[base + k] = Int(generator.next() % UInt64(vocabularySize))
                }
            }
        }
        return (inputs, labels)
    }
}

/// The search behind `elip bench train-step --max-batch-for-memory`: the largest batch whose
/// training step fits a memory budget, found by running steps.
///
/// Memory of a step at batch b = the fixed part (weights, gradients, optimizer moments, momentum
/// model, queues, the process itself) + the peak of the tensors the step allocates on top, which
/// grows with b, but in steps: the caching allocator rounds buffers to size classes, so two
/// neighbouring batches can read the same bytes. Two small probe batches give a line; its
/// prediction is run and measured, and refitted until the largest batch that fits and the next
/// one up are both settled (or `limit` is reached). Every batch reported as fitting was run.
public enum MaxBatchSearch {
    public struct Probe: Sendable {
        public let batch: Int
        public let liveBytes: Int
        public let seconds: Double
        /// Buffers the caching allocator held when the step began (0 for a new batch size).
        public var cachedBytesBefore: Int
        public init(batch: Int, liveBytes: Int, seconds: Double, cachedBytesBefore: Int = 0) {
            self.batch = batch
            self.liveBytes = liveBytes
            self.seconds = seconds
            self.cachedBytesBefore = cachedBytesBefore
        }
        public func total(fixed: Int) -> Int { fixed + liveBytes }
    }

    public struct Result: Sendable {
        public let variant: String
        public let fixedBytes: Int
        public var probes: [Probe]
        /// Largest batch measured to fit; nil when even batch 1 does not.
        public let maxBatch: Int?
        /// Smallest batch measured or predicted not to fit (nil: the search stopped at the limit).
        public let firstBatchOver: Int?
        public let overIsMeasured: Bool
        public let limitedBy: String?
    }

    /// Searches one pruning variant; `step(b)` runs one training step at batch b.
    public static func run(variant: String, budget: Int, fixedBytes: Int, limit: Int, limitReason: String,
                           step: (Int) throws -> Probe) throws -> Result {
        var probes: [Int: Probe] = [:]
        func measure(_ b: Int) throws -> Probe {
            if let p = probes[b] { return p }
            let p = try step(b)
            probes[b] = p
            return p
        }
        func fits(_ p: Probe) -> Bool { p.total(fixed: fixedBytes) <= budget }
        let sorted = { probes.values.sorted { $0.batch < $1.batch } }
        func result(_ best: Int?, _ over: Int?, measuredOver: Bool, limited: String?) -> Result {
            Result(variant: variant, fixedBytes: fixedBytes, probes: sorted(), maxBatch: best,
                   firstBatchOver: over, overIsMeasured: measuredOver, limitedBy: limited)
        }

        guard fits(try measure(1)) else { return result(nil, 1, measuredOver: true, limited: nil) }
        if limit >= 2 { _ = try measure(2) }
        for _ in 0..<16 {
            let all = sorted()
            let fitting = all.filter(fits)
            let loProbe = fitting.last!
            let lo = loProbe.batch                                  // largest batch measured to fit
            let hi = all.first { !fits($0) }?.batch                 // smallest measured not to fit
            if let hi, hi == lo + 1 { return result(lo, hi, measuredOver: true, limited: nil) }
            if hi == nil, lo >= limit { return result(lo, nil, measuredOver: false, limited: limitReason) }
            var guess = lo + 1
            if let hi, let hiProbe = probes[hi] {
                // Interpolate between the bracketing measurements, kept a quarter of the range
                // inside so that every measurement removes at least a quarter of it.
                let slope = Double(hiProbe.liveBytes - loProbe.liveBytes) / Double(hi - lo)
                let predicted = slope > 0 ? Double(lo) + Double(budget - loProbe.total(fixed: fixedBytes)) / slope : Double(lo + 1)
                let margin = (hi - lo) / 4
                let p = predicted.isFinite ? Int(max(Double(lo + 1), min(Double(hi - 1), predicted.rounded(.down)))) : (lo + hi) / 2
                guess = max(lo + 1 + margin, min(hi - 1 - margin, p))
            } else if fitting.count >= 2 {
                // A line through the largest fitting measurement predicts where the budget ends;
                // its slope is the steeper of the one from the smallest fitting measurement and
                // the one from the next largest. Neighbours in one size class read the same bytes
                // (BLIP unpruned, batches 33 and 34: a slope of 0, after which the search used to
                // double the batch, ran 68 and was killed for want of memory), and small batches
                // in one class make a long line too flat: the steeper one errs on the safe side.
                let slopes = [fitting.first!, fitting[fitting.count - 2]].map {
                    Double(loProbe.liveBytes - $0.liveBytes) / Double(lo - $0.batch)
                }
                let slope = slopes.max()!
                if slope > 0 {
                    let predicted = Double(lo) + Double(budget - loProbe.total(fixed: fixedBytes)) / slope
                    let p = predicted.isFinite ? Int(max(0, min(Double(limit), predicted.rounded(.down)))) : limit
                    if p <= lo { return result(lo, lo + 1, measuredOver: false, limited: nil) }
                    // At most 4x the largest batch known to fit: a line from small batches can be
                    // far off, and a step far past the budget does not return an error, it is killed.
                    guess = min(p, 4 * lo)
                }
            }
            guess = max(lo + 1, min(min(limit, (hi ?? Int.max) - 1), guess))
            _ = try measure(guess)
        }
        let fitting = sorted().filter(fits)
        let hi = sorted().first { !fits($0) }?.batch
        return result(fitting.last!.batch, hi, measuredOver: hi != nil, limited: hi == nil ? "the search's 16 measurements" : nil)
    }
}

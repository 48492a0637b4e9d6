import ArgumentParser
import ELIPModel
import ELIPTensor
import ELIPTrain
import Foundation

/// `elip bench train-step --max-batch-for-memory 16GiB`: the paper's scale-up claim, measured.
/// Pruning shrinks the activations of every pruned layer, so more images fit in the same memory.
///
/// Memory of a step at batch b = the fixed part (weights, gradients, optimizer moments, momentum
/// model, queues, the process itself: resident memory after a warm-up step with the allocator's
/// cache returned) + the peak of the tensors the step allocates on top (activations, workspaces),
/// which grows linearly with b. Two small probe batches give the line; its prediction is then
/// run and measured, and refitted through the measurements until the largest batch that fits and
/// the next one up are both settled (or `--max-batch-limit` is reached). Every batch reported as
/// fitting was run, so its images/s is measured, not extrapolated.
extension BenchTrainStepCommand {
    struct MemoryProbe {
        let batch: Int
        let liveBytes: Int
        let seconds: Double
        /// Buffers the caching allocator held when the step began (0 for a new batch size).
        var cachedBytesBefore = 0
        func total(fixed: Int) -> Int { fixed + liveBytes }
    }

    struct MaxBatchResult {
        let variant: String
        let fixedBytes: Int
        var probes: [MemoryProbe]
        /// Largest batch measured to fit; nil when even batch 1 does not.
        let maxBatch: Int?
        /// Smallest batch measured or predicted not to fit (nil: the search stopped at the limit).
        let firstBatchOver: Int?
        let overIsMeasured: Bool
        let limitedBy: String?
    }

    /// "16GiB", "16G", "512MiB", "1.5TiB", "2000000000" (bytes): binary units, as `free -h`.
    static func parseMemorySize(_ text: String) throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("TiB", 0x1p40), ("GiB", 0x1p30), ("MiB", 0x1p20), ("KiB", 0x1p10),
                                         ("T", 0x1p40), ("G", 0x1p30), ("M", 0x1p20), ("K", 0x1p10), ("B", 1)]
        var number = Substring(t), scale = 1.0
        for (suffix, s) in units where t.hasSuffix(suffix) {
            number = t.dropLast(suffix.count)
            scale = s
            break
        }
        guard let v = Double(number.trimmingCharacters(in: .whitespaces)), v.isFinite, v > 0 else {
            throw ValidationError("--max-batch-for-memory '\(text)': expected a positive size such as 16GiB, 512MiB or 2000000000 (bytes)")
        }
        let bytes = v * scale
        guard bytes >= 1, bytes < 0x1p62 else {
            throw ValidationError("--max-batch-for-memory '\(text)': \(bytes) bytes is outside 1 byte ... 4 EiB")
        }
        return Int(bytes)
    }

    /// The search for one pruning variant; `step(b)` runs one training step at batch b.
    static func searchMaxBatch(variant: String, budget: Int, fixedBytes: Int, limit: Int,
                               limitReason: String, step: (Int) throws -> MemoryProbe) throws -> MaxBatchResult {
        var probes: [Int: MemoryProbe] = [:]
        func measure(_ b: Int) throws -> MemoryProbe {
            if let p = probes[b] { return p }
            let p = try step(b)
            probes[b] = p
            return p
        }
        func fits(_ p: MemoryProbe) -> Bool { p.total(fixed: fixedBytes) <= budget }
        let sorted = { probes.values.sorted { $0.batch < $1.batch } }
        func result(_ best: Int?, _ over: Int?, measuredOver: Bool, limited: String?) -> MaxBatchResult {
            MaxBatchResult(variant: variant, fixedBytes: fixedBytes, probes: sorted(), maxBatch: best,
                           firstBatchOver: over, overIsMeasured: measuredOver, limitedBy: limited)
        }

        guard fits(try measure(1)) else { return result(nil, 1, measuredOver: true, limited: nil) }
        if limit >= 2 { _ = try measure(2) }
        for _ in 0..<12 {
            let all = sorted()
            let fitting = all.filter(fits)
            let lo = fitting.last!.batch                           // largest batch measured to fit
            let hi = all.first { !fits($0) }?.batch                 // smallest measured not to fit
            if let hi, hi == lo + 1 { return result(lo, hi, measuredOver: true, limited: nil) }
            if hi == nil, lo >= limit { return result(lo, nil, measuredOver: false, limited: limitReason) }
            var guess = min(limit, 2 * lo)
            let loProbe = fitting.last!
            if let hi, let hiProbe = probes[hi] {
                // Interpolate between the bracketing measurements, kept a quarter of the range
                // inside so that every measurement removes at least a quarter of it.
                let slope = Double(hiProbe.liveBytes - loProbe.liveBytes) / Double(hi - lo)
                let predicted = slope > 0 ? Double(lo) + Double(budget - loProbe.total(fixed: fixedBytes)) / slope : Double(lo + 1)
                let margin = (hi - lo) / 4
                let p = predicted.isFinite ? Int(max(Double(lo + 1), min(Double(hi - 1), predicted.rounded(.down)))) : (lo + hi) / 2
                guess = max(lo + 1 + margin, min(hi - 1 - margin, p))
            } else if fitting.count >= 2 {
                // The line through the two largest fitting measurements predicts where the budget ends.
                let a = fitting[fitting.count - 2]
                let slope = Double(loProbe.liveBytes - a.liveBytes) / Double(lo - a.batch)
                if slope > 0 {
                    let predicted = Double(lo) + Double(budget - loProbe.total(fixed: fixedBytes)) / slope
                    let p = predicted.isFinite ? Int(max(0, min(Double(limit), predicted.rounded(.down)))) : limit
                    if p <= lo { return result(lo, lo + 1, measuredOver: false, limited: nil) }
                    guess = p
                }
            }
            guess = max(lo + 1, min(min(limit, (hi ?? Int.max) - 1), guess))
            _ = try measure(guess)
        }
        let fitting = sorted().filter(fits)
        let hi = sorted().first { !fits($0) }?.batch
        return result(fitting.last!.batch, hi, measuredOver: hi != nil, limited: hi == nil ? "the search's 12 measurements" : nil)
    }

    func runMaxBatch(budgetText: String, model: any ModelConfig, net: any TrainableModel, optimizer: AdamW,
                     variantList: [Variant], isa: String) throws {
        let budget = try Self.parseMemorySize(budgetText)
        var limit = maxBatchLimit, reason = "--max-batch-limit \(maxBatchLimit)"
        if let queue = model.featureQueueSize, queue < limit {
            limit = queue
            reason = "queue_size \(queue) (a step enqueues one feature per image)"
        }
        var results: [MaxBatchResult] = []
        var fixed: Int?
        var lastBatch: (variant: String, batch: Int)?
        for variant in variantList {
            net.pruning = variant.prune
            func run(_ b: Int) throws -> MemoryProbe {
                // A new batch size (or variant) allocates new shapes: the buffers cached for the
                // previous one would stay resident beside them (the measured step tensors do not
                // include them, the process's memory does: METER B/16 unpruned after ELIP at batch
                // 35 was killed for want of memory). Freed once per new batch, so that the repeat
                // at the found batch runs on its cached buffers.
                if lastBatch.map({ $0.variant != variant.name || $0.batch != b }) ?? true {
                    CachingAllocator.shared.releaseToSystem()
                }
                lastBatch = (variant.name, b)
                let cached = CachingAllocator.shared.statistics.bytesCached
                let input = try Self.syntheticBatch(config: model, batch: b, length: textLength, seed: 7)
                let s = try Self.trainingStep(net, optimizer, input, seed: 100, dropout: !noDropout)
                guard s.loss.isFinite else { throw ValidationError("batch \(b) (\(variant.name)): non-finite loss \(s.loss)") }
                if !json {
                    FileHandle.standardError.write(String(format: "  %@ batch %d: %.2f s, step tensors %.0f MiB\n", variant.name, b, s.seconds,
                                                          Double(s.liveBytes) / 1_048_576).data(using: .utf8)!)
                }
                return MemoryProbe(batch: b, liveBytes: s.liveBytes, seconds: s.seconds, cachedBytesBefore: cached)
            }
            _ = try run(1)  // warm-up: optimizer moments, BLAS buffers
            if fixed == nil {
                // Measured once, before any large batch, with the allocator's cached buffers
                // returned: the C heap keeps what a large step freed, so a later reading would
                // charge one variant's activations to the next one's fixed part.
                CachingAllocator.shared.trim()
                fixed = ProcessStats.residentBytes()
            }
            var found = try Self.searchMaxBatch(variant: variant.name, budget: budget, fixedBytes: fixed!, limit: limit,
                                                limitReason: reason, step: run)
            // Its images/s from a step on buffers cached by one at the same batch (a first step
            // maps new memory).
            if let best = found.maxBatch, let i = found.probes.firstIndex(where: { $0.batch == best }) {
                if lastBatch?.batch != best { _ = try run(best) }
                let again = try run(best), first = found.probes[i]
                found.probes[i] = MemoryProbe(batch: best, liveBytes: max(again.liveBytes, first.liveBytes), seconds: min(again.seconds, first.seconds),
                                              cachedBytesBefore: first.cachedBytesBefore)
            }
            results.append(found)
        }
        try report(results, budget: budget, model: model, isa: isa)
    }

    private func report(_ results: [MaxBatchResult], budget: Int, model: any ModelConfig, isa: String) throws {
        func mib(_ b: Int) -> Double { Double(b) / 1_048_576 }
        if json {
            let rows: [[String: Any]] = results.map { r in
                let best = r.probes.first { $0.batch == r.maxBatch }
                var row: [String: Any] = [
                    "variant": r.variant, "fixed_mib": mib(r.fixedBytes),
                    "probes": r.probes.map { ["batch": $0.batch, "step_tensor_mib": mib($0.liveBytes), "total_mib": mib($0.total(fixed: r.fixedBytes)),
                                              "step_seconds": $0.seconds, "images_per_second": Double($0.batch) / $0.seconds,
                                              "cached_mib_before": mib($0.cachedBytesBefore)] },
                ]
                row["max_batch"] = r.maxBatch ?? 0
                if let best {
                    row["total_mib_at_max_batch"] = mib(best.total(fixed: r.fixedBytes))
                    row["images_per_second_at_max_batch"] = Double(best.batch) / best.seconds
                }
                if let over = r.firstBatchOver { row["first_batch_over_budget"] = over; row["first_batch_over_measured"] = r.overIsMeasured }
                if let l = r.limitedBy { row["limited_by"] = l }
                return row
            }
            let all: [String: Any] = ["model": model.kind, "budget_mib": mib(budget), "text_length": textLength, "threads": Threads.count,
                                      "isa": isa, "variants": rows]
            print(String(decoding: try JSONSerialization.data(withJSONObject: all, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print(String(format: "\nlargest batch within %.0f MiB (%@, %d threads, %@):", mib(budget), model.kind, Threads.count, isa))
        print("variant       max batch   memory at it (MiB)   images/s at it   fixed (MiB)   per image (MiB)   next batch")
        for r in results {
            let best = r.probes.first { $0.batch == r.maxBatch }
            let fitting = r.probes.filter { $0.total(fixed: r.fixedBytes) <= budget }
            var perImage = Double.nan
            if let a = fitting.first, let b = fitting.last, b.batch > a.batch { perImage = mib(b.liveBytes - a.liveBytes) / Double(b.batch - a.batch) }
            let next: String
            if let over = r.firstBatchOver { next = "\(over) over budget (\(r.overIsMeasured ? "measured" : "predicted"))" }
            else { next = "not searched: \(r.limitedBy ?? "limit")" }
            func col(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
            print(r.variant.padding(toLength: 14, withPad: " ", startingAt: 0)
                  + col(r.maxBatch.map(String.init) ?? "none", 9)
                  + col(best.map { String(format: "%.0f", mib($0.total(fixed: r.fixedBytes))) } ?? "-", 21)
                  + col(best.map { String(format: "%.2f", Double($0.batch) / $0.seconds) } ?? "-", 17)
                  + col(String(format: "%.0f", mib(r.fixedBytes)), 14)
                  + col(String(format: "%.2f", perImage), 18) + "   " + next)
        }
        if results.count >= 2, let a = results[0].maxBatch, let b = results[1].maxBatch, b > 0 {
            print(String(format: "%@ fits %.2fx the batch of %@ in the same memory", results[0].variant, Double(a) / Double(b), results[1].variant))
        }
    }
}

import ArgumentParser
import ELIPModel
import ELIPTensor
import ELIPTrain
import Foundation

/// `elip bench train-step --max-batch-for-memory 16GiB`: the paper's scale-up claim, measured.
/// Pruning shrinks the activations of every pruned layer, so more images fit in the same memory.
/// The search itself is `MaxBatchSearch` (ELIPTrain); this runs its steps and reports.
extension BenchTrainStepCommand {
    typealias MemoryProbe = MaxBatchSearch.Probe
    typealias MaxBatchResult = MaxBatchSearch.Result

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
            var found = try MaxBatchSearch.run(variant: variant.name, budget: budget, fixedBytes: fixed!, limit: limit,
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

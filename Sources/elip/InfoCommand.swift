import ArgumentParser
import CKernels
import ELIPModel
import ELIPPruning
import ELIPTensor
import ELIPTrain
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "What this build and machine offer: models (for `model:` in a config), presets, CPU, BLAS kernels, threads.",
        discussion: """
        OpenBLAS picks its kernels when it loads; on a CPU it does not recognise it falls back to \
        slow generic ones, which elip corrects by restarting once with OPENBLAS_CORETYPE set from the \
        CPU's features (a value you set yourself is kept). This shows what is in use.

        With --token-budget CONFIG (repeatable) it reports instead, for each config, how many \
        vision tokens enter each ViT layer under its img_prune schedule and the share removed, \
        averaged over the layers: 1 - Σ tokens / (depth x (N0 + 1)), [CLS] and the merged token \
        counted as tokens (the paper quotes ~30% for its settings).
        """
    )

    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Report the vision-token budget of this training config's pruning schedule instead (repeatable).")
    var tokenBudget: [String] = []

    func run() throws {
        if !tokenBudget.isEmpty { return try reportTokenBudgets() }
        let models = ModelRegistry.kinds.map { ["name": $0.name, "about": $0.about, "presets": $0.presets.keys.sorted()] as [String: Any] }
        let info: [String: Any] = [
            "models": models, "cpu_isa": String(cString: elip_fma_probe_isa()),
            "blas_kernels": BLASKernels.current, "blas_kernels_wanted": BLASKernels.wanted ?? "default",
            "blas_kernels_openblas_chose": BLASKernels.replaced ?? BLASKernels.current, "threads": Threads.count,
            "blas_kernels_note": BLASKernels.narrowedByEnvironment ?? "",
        ]
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("models:")
        for k in ModelRegistry.kinds {
            let presets = k.presets.keys.sorted().joined(separator: ", ")
            print("  \(k.name): \(k.about)" + (presets.isEmpty ? "" : " (presets: \(presets))"))
        }
        let replaced = BLASKernels.replaced.map { " (OpenBLAS chose \($0); elip restarted with the kernels this CPU runs)" } ?? ""
        print("CPU: \(info["cpu_isa"]!); OpenBLAS kernels: \(BLASKernels.current)\(replaced); threads: \(Threads.count)")
        if let note = BLASKernels.narrowedByEnvironment { print("note: \(note)") }
    }

    /// "257 257 232 232 168x6 104 104": runs of equal counts shortened.
    static func runs(_ counts: [Int]) -> String {
        var parts: [String] = [], i = 0
        while i < counts.count {
            var j = i
            while j + 1 < counts.count, counts[j + 1] == counts[i] { j += 1 }
            let n = j - i + 1
            parts.append(n > 2 ? "\(counts[i])x\(n)" : Array(repeating: "\(counts[i])", count: n).joined(separator: " "))
            i = j + 1
        }
        return parts.joined(separator: " ")
    }

    private func reportTokenBudgets() throws {
        var rows: [[String: Any]] = []
        for path in tokenBudget {
            let config = try TrainingConfig.load(path)
            guard let model = config.model as? any PrunedViTConfig else {
                throw ValidationError("\(path): model \(config.model.kind) does not report a token budget (its config is not a PrunedViTConfig)")
            }
            let budget: TokenBudget
            do { budget = try model.tokenBudget() } catch { throw ValidationError("\(path): \(error)") }
            rows.append(["config": path, "model": model.kind, "depth": budget.tokensPerLayer.count,
                         "patches": budget.unprunedTokens - 1, "keep_counts": budget.keepCounts,
                         "merge": model.prune?.merge ?? false,
                         "tokens_per_layer": budget.tokensPerLayer, "removed_share": budget.removedShare])
        }
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: ["token_budget": rows], options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("vision tokens per ViT layer ([CLS] and the merged token included) and the share pruning removes, averaged over the layers")
        let width = max(6, tokenBudget.map(\.count).max() ?? 0)
        print("config".padding(toLength: width, withPad: " ", startingAt: 0) + "  model  keeps                     tokens per layer                          removed")
        for r in rows {
            let keeps = (r["keep_counts"] as! [Int]).isEmpty ? "no pruning" : (r["keep_counts"] as! [Int]).map(String.init).joined(separator: "/") + " of \(r["patches"]!)"
            print((r["config"] as! String).padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                  + (r["model"] as! String).padding(toLength: 5, withPad: " ", startingAt: 0) + "  "
                  + keeps.padding(toLength: 24, withPad: " ", startingAt: 0) + "  "
                  + Self.runs(r["tokens_per_layer"] as! [Int]).padding(toLength: 40, withPad: " ", startingAt: 0) + "  "
                  + String(format: "%5.1f%%", 100 * (r["removed_share"] as! Double)))
        }
    }
}

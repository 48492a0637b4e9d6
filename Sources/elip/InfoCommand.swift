import ArgumentParser
import CKernels
import ELIPModel
import ELIPTensor
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "What this build and machine offer: models (for `model:` in a config), presets, CPU, BLAS kernels, threads.",
        discussion: """
        OpenBLAS picks its kernels when it loads; on a CPU it does not recognise it falls back to
        slow generic ones, which elip corrects by restarting once with OPENBLAS_CORETYPE set from the
        CPU's features (a value you set yourself is kept). This shows what is in use.
        """
    )

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let models = ModelRegistry.kinds.map { ["name": $0.name, "about": $0.about, "presets": $0.presets.keys.sorted()] as [String: Any] }
        let info: [String: Any] = [
            "models": models, "cpu_isa": String(cString: elip_fma_probe_isa()),
            "blas_kernels": BLASKernels.current, "blas_kernels_wanted": elip_blas_coretype().map { String(cString: $0) } ?? "default",
            "threads": Threads.count,
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
        print("CPU: \(info["cpu_isa"]!); OpenBLAS kernels: \(BLASKernels.current); threads: \(Threads.count)")
    }
}

import ArgumentParser
import ELIPTensor

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (release builds only give meaningful numbers).",
        subcommands: [BenchOpsCommand.self]
    )
}

struct BenchOpsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "FMA peak, cblas_sgemm GFLOP/s on ViT-B/16 shapes, and one ViT-B/16 layer forward+backward."
    )
    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?

    func run() throws {
        if let t = threads { Threads.configure(t) }
        print("threads: \(Threads.count)")
    }
}

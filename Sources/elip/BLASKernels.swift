import CBLAS
import CKernels
import Foundation

/// OpenBLAS chooses its kernels once, when the library loads, from a table of CPU models it knows.
/// A CPU it does not know gets weaker kernels than the CPU runs:
/// - Sapphire Rapids under a hypervisor that reports a generic model: the generic "Prescott" SSE3
///   kernels, about 6x slower than the AVX-512 ones (34 vs 200-260 GFLOP/s on the ViT-B qkv
///   product, 2 threads);
/// - AMD Zen 5 (EPYC, family 26) with Debian's OpenBLAS 0.3.21: the AVX2 "Haswell" kernels,
///   235 GFLOP/s against 460 for the AVX-512 "SkylakeX" ones on the same product (later OpenBLAS
///   releases map AMD's AVX-512 CPUs to those kernels too).
/// The choice cannot be changed in a running process, so when OpenBLAS's kernels use a narrower
/// instruction set than the CPU's own features allow, `elip` re-executes itself once with
/// OPENBLAS_CORETYPE set from those features. A user's OPENBLAS_CORETYPE is always respected.
enum BLASKernels {
    /// The kernel family OpenBLAS uses in this process.
    static var current: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// The kernel family this CPU's features allow (SKYLAKEX, HASWELL), nil for older CPUs.
    static var wanted: String? { elip_blas_coretype().map { String(cString: $0) } }

    /// The widest vector instruction set a kernel family's GEMMs use: 3 AVX-512, 2 AVX2 + FMA,
    /// 1 anything older (or unknown, which the families below cover for every x86-64 CPU with
    /// AVX2 that OpenBLAS 0.3.x knows).
    static func tier(_ coreName: String) -> Int {
        switch coreName.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen", "excavator": return 2
        default: return 1
        }
    }

    /// Re-executes the process with the kernels this CPU's features allow when OpenBLAS chose
    /// narrower ones.
    static func ensureFullKernels() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["ELIP_BLAS_REEXEC"] == nil, let wanted else { return }
        let chosen = current
        guard tier(chosen) < tier(wanted) else { return }
        setenv("OPENBLAS_CORETYPE", wanted, 1)
        setenv("ELIP_BLAS_REEXEC", chosen, 1)  // never loop; `elip info` reports what OpenBLAS chose
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let why = String(cString: strerror(errno))
        fputs("warning: OpenBLAS chose its \(chosen) kernels on this CPU, and restarting with OPENBLAS_CORETYPE=\(wanted) failed (\(why)); set OPENBLAS_CORETYPE=\(wanted) for faster matrix products\n", stderr)
    }

    /// What OpenBLAS chose by itself before `ensureFullKernels` restarted the process, if it did.
    static var replaced: String? { ProcessInfo.processInfo.environment["ELIP_BLAS_REEXEC"] }
}

extension BLASKernels {
    /// The environment's OPENBLAS_CORETYPE when it selects kernels narrower than this CPU runs
    /// (seen: OPENBLAS_CORETYPE=Haswell set machine-wide on an AVX-512 Zen 5, where the AVX-512
    /// kernels ran the ViT-B GEMMs at 450-500 GFLOP/s against 225-260). Kept, as the user's choice,
    /// but said: it halves the speed of nearly everything `elip` does.
    static var narrowedByEnvironment: String? {
        guard let set = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], let wanted, tier(current) < tier(wanted) else { return nil }
        return "OPENBLAS_CORETYPE=\(set) in the environment selects OpenBLAS's \(current) kernels, narrower than this CPU runs; unset it (or set OPENBLAS_CORETYPE=\(wanted)) for faster matrix products"
    }

    /// Prints `narrowedByEnvironment` as a note on stderr (under MPI: call it on the root rank).
    static func noteIfNarrowedByEnvironment() {
        if let note = narrowedByEnvironment { fputs("note: \(note)\n", stderr) }
    }
}

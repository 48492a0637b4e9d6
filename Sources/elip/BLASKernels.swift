import CBLAS
import CKernels
import Foundation

/// OpenBLAS chooses its kernels once, when the library loads. On CPUs its detection does not know
/// (seen: Sapphire Rapids under a hypervisor that reports a generic model) it falls back to the
/// generic "Prescott" SSE3 kernels, about 6x slower than the AVX-512 ones the CPU runs (34 vs
/// 200-260 GFLOP/s on the ViT-B qkv product, 2 threads). The choice cannot be changed in a running
/// process, so when that happens `elip` re-executes itself once with OPENBLAS_CORETYPE set from
/// the CPU's own features. A user's OPENBLAS_CORETYPE is always respected.
enum BLASKernels {
    /// The kernel family OpenBLAS uses in this process.
    static var current: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// Re-executes the process with full kernels when OpenBLAS fell back to Prescott's.
    static func ensureFullKernels() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["ELIP_BLAS_REEXEC"] == nil,
              let wanted = elip_blas_coretype().map({ String(cString: $0) }), current.lowercased() == "prescott" else { return }
        setenv("OPENBLAS_CORETYPE", wanted, 1)
        setenv("ELIP_BLAS_REEXEC", "1", 1)  // never loop
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let why = String(cString: strerror(errno))
        fputs("warning: OpenBLAS uses its generic Prescott kernels on this CPU, and restarting with OPENBLAS_CORETYPE=\(wanted) failed (\(why)); set OPENBLAS_CORETYPE=\(wanted) for about 6x faster matrix products\n", stderr)
    }
}

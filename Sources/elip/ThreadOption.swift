import ArgumentParser
import ELIPTensor

/// `--threads N` of every command: N must lie in `Threads.validCounts` (a negative or huge count
/// is an error, never clamped or ignored); nil leaves ELIP_THREADS or the core count. Under an
/// address-space limit, OpenBLAS's buffers are taken now (see `AddressSpace.prepareBLAS`).
func configureThreads(_ threads: Int?) throws {
    try checkThreads(threads)
    if let threads { Threads.configure(threads) }
    try AddressSpace.prepareBLAS()
}

/// The check alone, for commands that validate their options before doing anything else.
func checkThreads(_ threads: Int?) throws {
    guard let threads, !Threads.validCounts.contains(threads) else { return }
    throw ValidationError("--threads must be in [\(Threads.validCounts.lowerBound), \(Threads.validCounts.upperBound)], got \(threads)")
}

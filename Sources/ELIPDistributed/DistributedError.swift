/// Every failure in this module is a thrown `DistributedError`; nothing traps on a failed MPI call.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (MPI_ERRORS_RETURN is set on every communicator we use).
    case mpi(call: String, code: Int32, message: String)
    /// The launcher announced a different number of processes than MPI reports.
    case worldSizeMismatch(expected: Int, actual: Int, variable: String)
    /// The ranks disagree on a fingerprint (config, data manifest, ...). `ranks` differ from rank 0.
    case fingerprintMismatch(ranks: [Int], what: String)
    /// A collective was called with arguments that differ across ranks (counts, layouts).
    case inconsistentArguments(String)
    /// Bad arguments detected locally (out-of-range root, misuse of the reducer, ...).
    case invalidArgument(String)
    /// The communicator was finalized; no more MPI calls are possible in this process.
    case finalized
    /// The MPI library's thread level forbids this call while a gradient reduction is in flight.
    case busy(String)
    /// A broadcast value could not be encoded or decoded.
    case codec(String)

    public var description: String {
        switch self {
        case let .mpi(call, code, message):
            return "\(call) failed (MPI error \(code)): \(message)"
        case let .worldSizeMismatch(expected, actual, variable):
            return "MPI world size \(actual) does not match the launcher (\(variable)=\(expected)); "
                + "is this binary linked against the same MPI as the launcher (mpirun/srun)?"
        case let .fingerprintMismatch(ranks, what):
            let list = ranks.map(String.init).joined(separator: ", ")
            return "\(what) differs from rank 0 on rank\(ranks.count == 1 ? "" : "s") \(list)"
        case let .inconsistentArguments(s): return "ranks disagree: \(s)"
        case let .invalidArgument(s): return "invalid argument: \(s)"
        case .finalized: return "MPI was already finalized in this process"
        case let .busy(s): return s
        case let .codec(s): return "broadcast value: \(s)"
        }
    }
}

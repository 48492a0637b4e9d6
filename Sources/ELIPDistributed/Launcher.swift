import Foundation

/// What the process launcher (mpirun, srun, hydra) told this process through its environment.
public struct LauncherEnvironment: Equatable, Sendable {
    /// True when some MPI launcher started this process; false means single-process mode.
    public var isLaunched: Bool
    /// World size the launcher announced, and the variable it came from (nil when unknown).
    public var expectedSize: Int?
    public var sizeVariable: String?
    /// Launcher name for messages ("OpenMPI", "PMI", "PMIx", "Slurm srun").
    public var launcher: String?

    public static let notLaunched = LauncherEnvironment(isLaunched: false, expectedSize: nil,
                                                        sizeVariable: nil, launcher: nil)

    /// Detection from an environment dictionary (pure, so it is unit-testable).
    ///
    /// Precedence matters: mpirun inside a Slurm allocation inherits the allocation's
    /// SLURM_NTASKS, so the launcher's own variable wins. A Slurm batch script itself runs with
    /// SLURM_PROCID=0 and SLURM_NTASKS=N but is not a task of a step; only srun-launched tasks
    /// carry SLURM_STEP_ID, so that is required before Slurm variables count as "launched".
    public static func detect(_ env: [String: String]) -> LauncherEnvironment {
        func int(_ k: String) -> Int? { env[k].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        if let n = int("OMPI_COMM_WORLD_SIZE") {
            return .init(isLaunched: true, expectedSize: n, sizeVariable: "OMPI_COMM_WORLD_SIZE", launcher: "OpenMPI")
        }
        if env["PMI_SIZE"] != nil || env["PMI_RANK"] != nil {
            return .init(isLaunched: true, expectedSize: int("PMI_SIZE"), sizeVariable: int("PMI_SIZE") == nil ? nil : "PMI_SIZE",
                         launcher: "PMI")
        }
        let srunStep = env["SLURM_PROCID"] != nil && (env["SLURM_STEP_ID"] != nil || env["SLURM_STEPID"] != nil)
        if srunStep {
            for k in ["SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"] {
                if let n = int(k) { return .init(isLaunched: true, expectedSize: n, sizeVariable: k, launcher: "Slurm srun") }
            }
            return .init(isLaunched: true, expectedSize: nil, sizeVariable: nil, launcher: "Slurm srun")
        }
        if env["PMIX_RANK"] != nil {
            // PMIx exports no size variable; MPI's own size is trusted.
            return .init(isLaunched: true, expectedSize: int("PMIX_SIZE"), sizeVariable: int("PMIX_SIZE") == nil ? nil : "PMIX_SIZE",
                         launcher: "PMIx")
        }
        return .notLaunched
    }

    /// Throws `worldSizeMismatch` when the launcher announced a size MPI does not confirm.
    public func validate(worldSize: Int) throws {
        if let expectedSize, let sizeVariable, expectedSize != worldSize {
            throw DistributedError.worldSizeMismatch(expected: expectedSize, actual: worldSize, variable: sizeVariable)
        }
    }
}

extension LauncherEnvironment {
    /// The current process's launcher environment.
    public static var current: LauncherEnvironment { detect(ProcessInfo.processInfo.environment) }
}

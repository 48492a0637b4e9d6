// ELIPDistributed: MPI communicator (single-process fallback), collectives, gradient buckets.
import CMPIShim

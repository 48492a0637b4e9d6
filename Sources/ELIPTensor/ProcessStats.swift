import Foundation

/// Resident memory and page-fault counters of this process (Linux), for benchmarks and metrics.
public enum ProcessStats {
    /// Current resident set size in bytes (from /proc/self/statm).
    public static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = s.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Peak resident set size in bytes.
    public static func peakResidentBytes() -> Int {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int(u.ru_maxrss) * 1024
    }

    /// Minor + major page faults so far.
    public static func pageFaults() -> Int {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int(u.ru_minflt + u.ru_majflt)
    }

    /// Monotonic clock in seconds.
    public static func now() -> Double { monotonicSeconds() }
}

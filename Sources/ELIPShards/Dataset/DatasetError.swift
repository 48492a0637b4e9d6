import Foundation
import Safetensors

/// Errors of the dataset tools (build, inspect, synth). Bad *records* are never errors: the builder
/// turns them into counted rejects; these are for problems that stop an operation.
public enum DatasetError: Error, Equatable, CustomStringConvertible {
    /// A file-system operation failed: path and reason.
    case io(String, String)
    /// A caller-side argument is invalid.
    case invalidArgument(String)
    /// A JSON file is not valid JSON (file, byte offset, 1-based line and column, what was wrong).
    case malformedJSON(file: String, offset: Int, line: Int, column: Int, message: String)
    /// A manifest or shard summary is missing or inconsistent.
    case manifest(String, String)
    /// The build could not complete (e.g. a shard summary is missing after every rank finished).
    case incomplete(String)

    public var description: String {
        switch self {
        case let .io(path, m): return "\(path): \(m)"
        case let .invalidArgument(m): return m
        case let .malformedJSON(file, offset, line, column, m):
            return "\(file): malformed JSON at byte \(offset) (line \(line), column \(column)): \(m)"
        case let .manifest(path, m): return "\(path): \(m)"
        case let .incomplete(m): return m
        }
    }
}

/// Small POSIX helpers shared by the dataset code.
enum FileOps {
    /// fsync a file or directory by path (best effort for directories on file systems that refuse).
    static func fsync(path: String, isDirectory: Bool = false) throws {
        let fd = open(path, (isDirectory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DatasetError.io(path, "cannot open for fsync: \(errnoString())") }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 && !isDirectory {
            throw DatasetError.io(path, "fsync failed: \(errnoString())")
        }
    }

    /// How `preadExactly` ended: the bytes, or where it stopped and why.
    enum ReadOutcome {
        case bytes([UInt8])
        /// pread failed at this byte offset (errno kept for the message).
        case failed(at: Int, errno: Int32)
        /// The file ended at this byte offset before `count` bytes were read.
        case ended(at: Int)
    }

    /// Reads exactly `count` bytes at `offset` from `fd`, retrying short reads and EINTR. Callers
    /// check the range against the file size first and turn the outcome into their own error.
    static func preadExactly(_ fd: Int32, offset: Int, count: Int) -> ReadOutcome {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, count - got, off_t(offset + got)) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failed(at: offset + got, errno: errno)
            }
            if n == 0 { return .ended(at: offset + got) }
            got += n
        }
        return .bytes(out)
    }

    /// Writes `data` to `path` (truncating) and fsyncs it (unless `sync` is false). Never follows a
    /// symlink at `path`; with `exclusive` the file must not exist yet (O_EXCL).
    static func writeSynced(_ data: [UInt8], to path: String, sync: Bool = true, exclusive: Bool = false) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC), 0o644)
        guard fd >= 0 else { throw DatasetError.io(path, "cannot create: \(errnoString())") }
        defer { close(fd) }
        try data.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, fail: { DatasetError.io(path, $0) }) }
        guard !sync || Glibc.fsync(fd) == 0 else { throw DatasetError.io(path, "fsync failed: \(errnoString())") }
    }

    /// Atomically replaces `path` with `data` (`AtomicFile`: an unpredictable O_EXCL | O_NOFOLLOW
    /// temporary sibling, fsync, rename, fsync of the directory).
    static func writeAtomically(_ data: [UInt8], to path: String) throws {
        try AtomicFile.write(to: path, fail: { DatasetError.io(path, $0) }) { fd in
            try data.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, fail: { DatasetError.io(path, $0) }) }
        }
    }

    static func errnoString() -> String { String(cString: strerror(errno)) }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Reads a whole regular file with bounds on its size.
    static func readFile(_ path: String, maxBytes: Int = Int.max) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)     // a FIFO must not block the open (refused below)
        guard fd >= 0 else { throw DatasetError.io(path, "cannot open: \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DatasetError.io(path, "cannot stat: \(errnoString())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DatasetError.io(path, "not a regular file (a FIFO, device or directory)") }
        let size = Int(st.st_size)
        guard size <= maxBytes else { throw DatasetError.io(path, "file is \(size) bytes, more than the limit \(maxBytes)") }
        var out = [UInt8](repeating: 0, count: size)
        var got = 0
        try out.withUnsafeMutableBytes { raw in
            while got < size {
                let n = read(fd, raw.baseAddress! + got, size - got)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DatasetError.io(path, "read failed: \(errnoString())")
                }
                if n == 0 { break }
                got += n
            }
        }
        if got < size { out.removeLast(size - got) }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one routine that replaces a file atomically, for safetensors files, checkpoints, shard
/// manifests and everything else that must never be seen half-written.
///
/// A temporary sibling with an unpredictable name (`.NAME.tmp-PID-RANDOM`) is created with
/// O_EXCL | O_NOFOLLOW, so a planted file or symlink can neither redirect the write nor be
/// overwritten; it is written, fsynced, renamed over the target, and the directory is fsynced.
/// On any error the temporary file is removed and the target is untouched.
public enum AtomicFile {
    /// Writes `path` through `body`, which gets the open descriptor and a label for errors.
    /// `fail` turns a message into the caller's error type.
    public static func write(to path: String, fail: (String) -> Error,
                             _ body: (_ fd: Int32) throws -> Void) throws {
        guard !path.isEmpty, !path.hasSuffix("/") else { throw fail("not a file path") }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temp = (slash.map { String(path[...$0]) } ?? "")
            + ".\(base).tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"

        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if fd < 0 { throw fail("cannot create temporary file \(temp): \(errnoString())") }
        do {
            try body(fd)
            if fsync(fd) != 0 { throw fail("fsync failed: \(errnoString())") }
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        if close(fd) != 0 {
            let message = errnoString()
            unlink(temp)
            throw fail("close failed: \(message)")
        }
        if rename(temp, path) != 0 {
            let message = errnoString()
            unlink(temp)
            throw fail("cannot rename \(temp) over the target: \(message)")
        }
        // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL); the
        // file is complete and in place by now, so that alone is not worth failing for.
        let dirFD = open(directory, O_RDONLY | O_CLOEXEC)
        if dirFD >= 0 {
            let ok = fsync(dirFD) == 0 || errno == EINVAL || errno == ENOTSUP
            let message = errnoString()
            close(dirFD)
            if !ok { throw fail("fsync of directory \(directory) failed: \(message)") }
        }
    }

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, fail: (String) -> Error) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = systemWrite(fd, base + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write failed: \(errnoString())")
            }
            if n == 0 { throw fail("write made no progress") }
            done += n
        }
    }
}

/// `write` is shadowed inside types that have a `write` method; this names the C function.
@inline(__always)
private func systemWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buf, count)
    #else
    return Darwin.write(fd, buf, count)
    #endif
}

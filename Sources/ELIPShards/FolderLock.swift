import Foundation

/// An advisory, exclusive lock on an output folder (a dataset being built, a training run), so that
/// two processes never write the same folder: the second fails at once with "in use by pid N"
/// instead of dying later with a misleading fsync/rename error or interleaving its output.
///
/// flock(2) on `FOLDER/.elip.lock`: released by the kernel when the holder exits (even by SIGKILL),
/// so a crashed run never leaves a stale lock. The file holds the holder's pid and host for the
/// message; it is left in place (removing it would race with a new holder). Works per open file
/// description: a process that needs the lock twice should keep one `FolderLock`.
public final class FolderLock {
    public static let fileName = ".elip.lock"

    public struct Busy: Error, CustomStringConvertible, Equatable {
        public let folder: String
        /// The holder's "pid N on host H" as it wrote it (empty if unreadable).
        public let holder: String
        public let purpose: String
        public var description: String {
            "\(folder) is in use by \(holder.isEmpty ? "another process" : holder) (\(FolderLock.fileName) is locked); "
                + "wait for it to finish or choose another folder for this \(purpose)"
        }
    }

    public let folder: String
    public let path: String
    private var fd: Int32

    /// Creates `folder` if needed and takes its lock, or throws `Busy` (held elsewhere) or a
    /// description of the file-system error. `purpose` names the operation in the message.
    public init(folder: String, purpose: String) throws {
        self.folder = folder
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        path = (folder as NSString).appendingPathComponent(Self.fileName)
        // O_NOFOLLOW: a planted symlink must not make us create or truncate a file elsewhere.
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw DatasetError.io(path, "cannot open the folder lock: \(String(cString: strerror(errno)))")
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let e = errno
            var holder = ""
            if e == EWOULDBLOCK {
                var buf = [UInt8](repeating: 0, count: 256)
                let n = pread(fd, &buf, buf.count, 0)
                if n > 0 { holder = String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
            }
            close(fd)
            fd = -1
            if e == EWOULDBLOCK { throw Busy(folder: folder, holder: holder, purpose: purpose) }
            throw DatasetError.io(path, "cannot lock: \(String(cString: strerror(e)))")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let line = Array("pid \(getpid()) on \(String(cString: host))\n".utf8)
        _ = ftruncate(fd, 0)
        _ = line.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Releases the lock (idempotent; also on deinit).
    public func release() {
        guard fd >= 0 else { return }
        close(fd)          // closing the only descriptor drops the flock
        fd = -1
    }

    deinit { release() }
}

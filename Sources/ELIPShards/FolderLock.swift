import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An advisory lock on an output folder (a run folder, a dataset folder), so two processes never
/// write the same folder at once: `flock(LOCK_EX | LOCK_NB)` on `FOLDER/.elip.lock`, which holds
/// the owner's pid and host for the error message. The kernel drops the lock when the process ends, however
/// it ends, so a crashed run never leaves a stale lock behind (the file itself stays, harmlessly).
/// Within one process the lock is shared (objects in one program, such as tests, may hold it
/// together); it excludes other processes.
public final class FolderLock {
    public static let fileName = ".elip.lock"

    public let folder: String
    private let key: String
    private var held = true

    /// Lock file descriptors this process holds, by folder, with how many objects share each.
    nonisolated(unsafe) private static var holders: [String: (fd: Int32, count: Int)] = [:]
    private static let holdersLock = NSLock()

    /// Takes the lock, creating the folder if needed. Throws `FolderLockError.inUse` (naming the
    /// holder's pid and host) when another process holds it.
    public init(folder: String, purpose: String) throws {
        self.folder = folder
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw FolderLockError.cannotLock(folder: folder, reason: "cannot create the folder: \(error.localizedDescription)")
        }
        key = URL(fileURLWithPath: folder).standardizedFileURL.resolvingSymlinksInPath().path
        Self.holdersLock.lock()
        defer { Self.holdersLock.unlock() }
        if let h = Self.holders[key] {
            Self.holders[key] = (h.fd, h.count + 1)
            return
        }
        Self.holders[key] = (try Self.acquire(folder: folder, purpose: purpose), 1)
    }

    private static func acquire(folder: String, purpose: String) throws -> Int32 {
        let path = (folder as NSString).appendingPathComponent(Self.fileName)
        // O_NOFOLLOW: a planted symlink must not redirect the pid write to another file.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw FolderLockError.cannotLock(folder: folder, reason: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            if err == EINTR { continue }
            let holder = Self.readHolder(fd)
            close(fd)
            if err == EWOULDBLOCK {
                throw FolderLockError.inUse(folder: folder, holder: holder, purpose: purpose)
            }
            throw FolderLockError.cannotLock(folder: folder, reason: "flock on \(path): \(String(cString: strerror(err)))")
        }
        // Ours now: record pid and host (best effort; the lock, not the text, is what excludes).
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let text = Array("pid \(getpid()) on \(String(cString: host))\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return fd
    }

    /// Releases this object's share of the lock (also done on deinit; the kernel drops it at exit).
    public func release() {
        Self.holdersLock.lock()
        defer { Self.holdersLock.unlock() }
        guard held, let h = Self.holders[key] else { return }
        held = false
        if h.count > 1 {
            Self.holders[key] = (h.fd, h.count - 1)
        } else {
            _ = ftruncate(h.fd, 0)  // no stale "pid N" for whoever locks next without writing one
            close(h.fd)
            Self.holders[key] = nil
        }
    }

    deinit { release() }

    /// The holder's "pid N on HOST" line (nil if unreadable or not of that form: the file is
    /// another process's, so its text is untrusted and only echoed when it looks right).
    private static func readHolder(_ fd: Int32) -> String? {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let line = String(decoding: buf.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let fields = line.split(separator: " ")
        guard fields.count >= 2, fields[0] == "pid", Int(fields[1]) != nil,
              line.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) else { return nil }
        return line
    }
}

public enum FolderLockError: Error, CustomStringConvertible, Equatable {
    /// `holder`: "pid N on HOST" as the holder wrote it, nil if unreadable.
    case inUse(folder: String, holder: String?, purpose: String)
    case cannotLock(folder: String, reason: String)

    public var description: String {
        switch self {
        case let .inUse(folder, holder, purpose):
            let who = holder ?? "another process"
            return "\(folder) is in use by \(who) (another \(purpose) holds its lock \(FolderLock.fileName)); wait for it to finish or choose another folder"
        case let .cannotLock(folder, reason):
            return "cannot lock \(folder): \(reason)"
        }
    }
}

import ELIPModel
import Foundation

/// The folder an annotation file's image paths are relative to, and the only place they may be
/// read from: an entry such as `../../etc/passwd`, an absolute path elsewhere or a symlink that
/// leads out of the folder is refused with the entry named (the dataset builder's rule for
/// relative paths). A file that does not exist yet is left to the reader, which names it.
public struct ImageRoot {
    /// The root as given, and absolute with symlinks resolved.
    public let path: String
    public let resolved: String

    public init(_ path: String) throws {
        self.path = path
        guard let real = Self.realPath(path) else {
            throw RetrievalError("--image-root \(path): \(String(cString: strerror(errno)))")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: real, isDirectory: &isDir), isDir.boolValue else {
            throw RetrievalError("--image-root \(path): not a folder")
        }
        resolved = real
    }

    /// The file to read for `name` (from `what`, e.g. "x.json: entry 3"): the root joined with a
    /// relative name (an absolute name must lie in the root), with symlinks resolved when the
    /// file exists. Throws when the result is outside the root.
    public func file(_ name: String, what: String) throws -> String {
        let absoluteRoot = Self.absolute(path)
        let joined = Self.normalized(name.hasPrefix("/") ? name : absoluteRoot + "/" + name)
        // Lexically first: `..` may not climb out, whether or not the file exists.
        guard Self.isInside(joined, absoluteRoot) || Self.isInside(joined, resolved) else {
            throw RetrievalError("\(what): image \(name) is outside the image root \(path); paths must stay inside --image-root")
        }
        guard let real = Self.realPath(joined) else { return joined }
        guard Self.isInside(real, resolved) else {
            throw RetrievalError("\(what): image \(name) resolves to \(real) (through a symlink), outside the image root \(resolved)")
        }
        return real
    }

    static func isInside(_ p: String, _ root: String) -> Bool {
        root == "/" || p == root || p.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    static func absolute(_ p: String) -> String {
        normalized(p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p)
    }

    /// `.` and `..` removed lexically from an absolute path (`..` at the top stays at `/`).
    static func normalized(_ p: String) -> String {
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// realpath(3), or nil (errno set).
    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}

/// Reads an evaluation input (annotation file, image) only when it is a regular file: a FIFO or
/// device named `x.jpg` or `test.json` would block the read forever.
public enum EvalFile {
    /// The file's bytes, or nil (errno set; EINVAL for a file that is not a regular file).
    public static func contents(_ path: String) -> Data? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        guard info.st_mode & S_IFMT == S_IFREG else { errno = EINVAL; return nil }
        // O_NONBLOCK: a path swapped for a FIFO after the check does not block the open.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else { errno = EINVAL; return nil }
        return try? handle.readToEnd() ?? Data()
    }

    /// Why `contents` returned nil, for messages.
    public static func reason(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return String(cString: strerror(errno)) }
        return info.st_mode & S_IFMT != S_IFREG ? "not a regular file" : "unreadable"
    }
}

import Foundation

/// Path normalisation and file identity for the plan (absolute, relative to the image root, realpath).
extension DatasetPlan {

    static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(p)
    }

    /// Lexically normalised relative path ("." and empty components dropped, ".." applied), or
    /// nil if ".." climbs above the start.
    static func normalizeRelative(_ p: String) -> String? {
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                if parts.isEmpty { return nil }
                parts.removeLast()
            } else {
                parts.append(c)
            }
        }
        return parts.joined(separator: "/")
    }

    /// Lexically normalised absolute path ("/.." stays at "/").
    static func normalizeAbsolute(_ p: String) -> String {
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() } } else { parts.append(c) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// "device:inode" of the file `path` leads to (links followed), or nil when it cannot be
    /// stat'ed (missing files are rejected when the builder reads them).
    static func fileIdentity(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return "\(st.st_dev):\(st.st_ino)"
    }

    /// realpath(3), or nil (errno set) when the path cannot be resolved.
    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}

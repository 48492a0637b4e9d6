import Foundation

/// Errors of the tar reader. Offsets are byte offsets in the archive.
public enum TarError: Error, Equatable, CustomStringConvertible {
    case io(String, String)
    /// The archive ends inside a header or a member's data.
    case truncated(path: String, offset: Int, what: String)
    /// A header block fails its checksum or has invalid fields.
    case badHeader(path: String, offset: Int, what: String)
    /// A member is larger than the caller's limit.
    case memberTooLarge(path: String, name: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case let .io(path, m): return "\(path): \(m)"
        case let .truncated(path, offset, what): return "\(path): truncated at byte \(offset): \(what)"
        case let .badHeader(path, offset, what): return "\(path): bad header at byte \(offset): \(what)"
        case let .memberTooLarge(path, name, size, limit): return "\(path): member \(name) is \(size) bytes (limit \(limit))"
        }
    }
}

/// One archive member as listed by `TarReader.next()`.
public struct TarMember: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case file, directory, other(UInt8) }
    /// Member path (ustar prefix + name, or the pax `path` / GNU long name when present).
    public var name: String
    public var kind: Kind
    /// Offset of the member's header block.
    public var headerOffset: Int
    /// Offset and size of the member's data in the archive.
    public var dataOffset: Int
    public var size: Int
}

/// A small, safe reader for POSIX ustar / pax / GNU tar archives, as written by Python's tarfile
/// (img2dataset, WebDataset). It lists members and reads their bytes with `pread`; nothing is ever
/// extracted to disk, so member names (absolute, `..`, links) are just strings.
///
/// Safety: every header is bounds-checked against the file size and checksum-verified; numeric
/// fields accept octal and GNU base-256; pax extended headers (`x`: path, size) and GNU long names
/// (`L`) apply to the next member and are size-limited; global pax headers (`g`) are skipped. A
/// data region that runs past the end of the file is `truncated`. Two zero blocks end the archive;
/// a file that ends exactly at a block boundary without them is accepted (as Python does).
///
/// Thread safety: `next()` mutates the listing position (one thread); `read(_:)` uses `pread` and
/// may be called from several threads at once.
public final class TarReader: @unchecked Sendable {
    public let path: String
    public let fileSize: Int
    private let fd: Int32
    private var position = 0
    private var finished = false

    /// Metadata records (pax / long names) larger than this are rejected as bad headers.
    public static let maxMetadataBytes = 1 << 20

    public init(path: String) throws {
        self.path = path
        let f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)     // a FIFO named *.tar must not block the open
        guard f >= 0 else { throw TarError.io(path, "cannot open: \(FileOps.errnoString())") }
        var st = stat()
        guard fstat(f, &st) == 0 else {
            let e = FileOps.errnoString()
            close(f)
            throw TarError.io(path, "cannot stat: \(e)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(f)
            throw TarError.io(path, "not a regular file (a FIFO, device or directory)")
        }
        fd = f
        fileSize = Int(st.st_size)
    }

    deinit { close(fd) }

    /// Reads exactly `count` bytes at `offset` (bounds-checked against the file size).
    public func read(offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= fileSize, count <= fileSize - offset else {
            throw TarError.truncated(path: path, offset: offset, what: "read of \(count) bytes past the end of the archive (\(fileSize) bytes)")
        }
        switch FileOps.preadExactly(fd, offset: offset, count: count) {
        case let .bytes(out): return out
        case let .failed(at, code):
            throw TarError.io(path, "read failed at byte \(at): \(String(cString: strerror(code)))")
        case let .ended(at): throw TarError.truncated(path: path, offset: at, what: "file shrank while reading")
        }
    }

    /// The bytes of a member, refusing members above `limit` bytes.
    public func read(_ member: TarMember, limit: Int = Int.max) throws -> [UInt8] {
        guard member.size <= limit else {
            throw TarError.memberTooLarge(path: path, name: member.name, size: member.size, limit: limit)
        }
        return try read(offset: member.dataOffset, count: member.size)
    }

    /// The next member (regular files, directories and other entries; metadata entries are
    /// consumed), or nil at the end of the archive.
    public func next() throws -> TarMember? {
        guard !finished else { return nil }
        var paxPath: String? = nil
        var paxSize: Int? = nil
        var longName: String? = nil
        while true {
            let headerOffset = position
            if headerOffset == fileSize {
                finished = true          // no end-of-archive blocks: accepted
                return nil
            }
            guard fileSize - headerOffset >= 512 else {
                finished = true
                throw TarError.truncated(path: path, offset: headerOffset, what: "partial header block (\(fileSize - headerOffset) bytes)")
            }
            let h = try read(offset: headerOffset, count: 512)
            if h.allSatisfy({ $0 == 0 }) {
                finished = true          // end of archive (a second zero block may or may not follow)
                return nil
            }
            try verifyChecksum(h, at: headerOffset)
            let type = h[156]
            guard let declared = Self.number(h[124..<136]) else {
                finished = true
                throw TarError.badHeader(path: path, offset: headerOffset, what: "invalid size field")
            }
            let size = (type == UInt8(ascii: "x") || type == UInt8(ascii: "g") || type == UInt8(ascii: "L")) ? declared : (paxSize ?? declared)
            let dataOffset = headerOffset + 512
            guard size >= 0, size <= fileSize - dataOffset else {
                finished = true
                throw TarError.truncated(path: path, offset: dataOffset,
                                         what: "member data of \(size) bytes runs past the end of the archive (\(fileSize) bytes)")
            }
            let padded = (size + 511) / 512 * 512
            position = min(fileSize, dataOffset + padded)
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"):
                guard size <= Self.maxMetadataBytes else {
                    finished = true
                    throw TarError.badHeader(path: path, offset: headerOffset, what: "metadata record of \(size) bytes")
                }
                let data = try read(offset: dataOffset, count: size)
                if type == UInt8(ascii: "L") {
                    longName = Self.cString(data[...])
                } else if type == UInt8(ascii: "x") {
                    let records = try parsePax(data, at: headerOffset)
                    if let p = records["path"] { paxPath = p }
                    if let s = records["size"] {
                        guard let v = Int(s), v >= 0 else {
                            finished = true
                            throw TarError.badHeader(path: path, offset: headerOffset, what: "invalid pax size '\(s)'")
                        }
                        paxSize = v
                    }
                }
                continue
            default:
                break
            }
            var name: String
            if let p = paxPath { name = p } else if let l = longName { name = l } else {
                name = Self.cString(h[0..<100])
                let magic = h[257..<263]
                if magic.elementsEqual(Array("ustar\0".utf8)) || magic.elementsEqual(Array("ustar ".utf8)) {
                    let prefix = Self.cString(h[345..<500])
                    if !prefix.isEmpty && magic.elementsEqual(Array("ustar\0".utf8)) { name = prefix + "/" + name }
                }
            }
            let kind: TarMember.Kind
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = .file
            case UInt8(ascii: "5"): kind = .directory
            default: kind = .other(type)
            }
            if kind == .file, name.hasSuffix("/") { return TarMember(name: name, kind: .directory, headerOffset: headerOffset, dataOffset: dataOffset, size: size) }
            return TarMember(name: name, kind: kind, headerOffset: headerOffset, dataOffset: dataOffset, size: size)
        }
    }

    /// All members (convenience for tests and small archives).
    public func allMembers() throws -> [TarMember] {
        var out: [TarMember] = []
        while let m = try next() { out.append(m) }
        return out
    }

    private func verifyChecksum(_ h: [UInt8], at offset: Int) throws {
        guard let stored = Self.number(h[148..<156]) else {
            throw TarError.badHeader(path: path, offset: offset, what: "invalid checksum field")
        }
        var unsigned = 0, signed = 0
        for (i, b) in h.enumerated() {
            let v = (148..<156).contains(i) ? 0x20 : b
            unsigned += Int(v)
            signed += Int(Int8(bitPattern: v))
        }
        guard stored == unsigned || stored == signed else {
            finished = true
            throw TarError.badHeader(path: path, offset: offset, what: "header checksum mismatch (stored \(stored), computed \(unsigned))")
        }
    }

    /// pax records: "<len> <key>=<value>\n", len counting the whole record.
    private func parsePax(_ data: [UInt8], at offset: Int) throws -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < data.count {
            var j = i
            var len = 0
            while j < data.count, data[j] >= 0x30, data[j] <= 0x39, len < 1 << 24 { len = len * 10 + Int(data[j] - 0x30); j += 1 }
            guard j < data.count, data[j] == 0x20, len > j - i, i + len <= data.count, data[i + len - 1] == 0x0A else {
                if data[i...].allSatisfy({ $0 == 0 }) { break }
                finished = true
                throw TarError.badHeader(path: path, offset: offset, what: "malformed pax record at +\(i)")
            }
            let record = data[(j + 1)..<(i + len - 1)]
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[record.startIndex..<eq], as: UTF8.self)
                let value = String(decoding: record[(eq + 1)...], as: UTF8.self)
                out[key] = value
            }
            i += len
        }
        return out
    }

    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    /// Octal (NUL/space padded) or GNU base-256 (high bit of the first byte set) numeric field.
    static func number(_ field: ArraySlice<UInt8>) -> Int? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            guard first & 0x40 == 0 else { return nil }       // negative base-256: invalid here
            var v = Int(first & 0x3F)
            for b in field.dropFirst() {
                guard v <= (Int.max >> 8) else { return nil }
                v = v << 8 | Int(b)
            }
            return v
        }
        var v = 0
        var seenDigit = false
        var ended = false
        for b in field {
            switch b {
            case 0x30...0x37:
                guard !ended else { return nil }
                guard v <= (Int.max >> 3) else { return nil }
                v = v << 3 | Int(b - 0x30)
                seenDigit = true
            case 0x20, 0x00:
                if seenDigit { ended = true }
            default:
                return nil
            }
        }
        return v
    }
}

/// Writes simple ustar archives (used by tests and the synthetic tools; names up to 100 bytes).
public enum TarWriter {
    /// Archive bytes for `(name, data)` members, with two end-of-archive blocks.
    public static func archive(_ members: [(name: String, data: [UInt8])]) throws -> [UInt8] {
        var out: [UInt8] = []
        for (name, data) in members {
            let nameBytes = Array(name.utf8)
            guard !nameBytes.isEmpty, nameBytes.count <= 100 else {
                throw DatasetError.invalidArgument("tar member name must be 1...100 bytes: \(name)")
            }
            var h = [UInt8](repeating: 0, count: 512)
            h.replaceSubrange(0..<nameBytes.count, with: nameBytes)
            func octal(_ v: Int, _ range: Range<Int>) {
                let s = Array(String(v, radix: 8).utf8)
                let width = range.count - 1
                let padded = [UInt8](repeating: 0x30, count: max(0, width - s.count)) + s
                h.replaceSubrange(range.lowerBound..<(range.lowerBound + width), with: padded.suffix(width))
                h[range.upperBound - 1] = 0
            }
            octal(0o644, 100..<108)
            octal(0, 108..<116)
            octal(0, 116..<124)
            octal(data.count, 124..<136)
            octal(0, 136..<148)
            h[156] = UInt8(ascii: "0")
            h.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
            h[263] = UInt8(ascii: "0"); h[264] = UInt8(ascii: "0")
            for i in 148..<156 { h[i] = 0x20 }
            let sum = h.reduce(0) { $0 + Int($1) }
            let cs = Array(String(sum, radix: 8).utf8)
            let field = [UInt8](repeating: 0x30, count: max(0, 6 - cs.count)) + cs
            h.replaceSubrange(148..<154, with: field.suffix(6))
            h[154] = 0; h[155] = 0x20
            out += h
            out += data
            let pad = (512 - data.count % 512) % 512
            out += [UInt8](repeating: 0, count: pad)
        }
        out += [UInt8](repeating: 0, count: 1024)
        return out
    }
}

// Structural check of an LMDB data file with plain reads (pread), before LMDB maps it.
//
// Why: liblmdb trusts the file. A data.mdb shorter than its meta page says makes the first read of
// a missing page a SIGBUS; a flipped node size or overflow page number makes `mdb_get` hand out a
// pointer/length outside the map (SIGSEGV when copied). Neither can be caught once it happens, so
// the shard readers walk the tree here first: every page LMDB can reach from the current meta page
// is inside the file, every node inside its page, every value inside its page or the used file
// (from its first overflow page). Values that fail are listed as damaged (their keys are refused by `LMDBEnvironment`
// afterwards, a counted bad record for the loader); damage to the tree itself fails the whole file.
//
// Cost: reads the branch and leaf pages once (for image records, whose values live on overflow
// pages, a few pages per hundred records); overflow pages are bounds-checked, not read.
//
// Layout facts (liblmdb 0.9, 64-bit, MDB_DATA_VERSION 1; mdb.c): a page starts with a 16-byte
// header {pgno u64, pad u16, flags u16, lower u16, upper u16 | overflow page count u32}; node
// offsets (u16) follow the header; a node is {lo u16, hi u16, flags u16, ksize u16, key, data};
// a branch node's child page is lo | hi << 16 | flags << 32; a leaf's data size is lo | hi << 16.
// Pages 0 and 1 are meta pages: MDB_meta at byte 16 {magic u32, version u32, address u64,
// mapsize u64, dbs[2] of 48 bytes, last page u64, txnid u64}; the page size is dbs[0].pad.

import CLMDB
import Foundation

/// What `LMDBStructure.verify` found in a structurally usable data file.
public struct LMDBStructureReport: Sendable, Equatable {
    public var pageSize: Int
    /// Last page in use (from the current meta page); the file holds at least lastPage + 1 pages.
    public var lastPage: Int
    public var transactionID: Int
    public var entries: Int
    public var fileBytes: Int
    /// Keys whose value cannot be read safely, with the reason.
    public var damagedValues: [[UInt8]: String]
}

public enum LMDBStructure {
    static let headerSize = 16
    static let metaMagic: UInt32 = 0xBEEF_C0DE
    static let pBranch: UInt16 = 0x01, pLeaf: UInt16 = 0x02, pMeta: UInt16 = 0x08
    /// Bits LMDB may leave in a page's flags that say nothing about its kind (dirty, loose, keep).
    static let bookkeepingFlags: UInt16 = 0x10 | 0x4000 | 0x8000
    static let bigData: UInt16 = 0x01
    static let invalidPage = UInt64.max

    /// Checks `path` (a data.mdb). Throws `LMDBError` (code MDB_CORRUPTED) naming what is wrong
    /// when the file cannot be traversed safely.
    public static func verify(dataFile path: String) throws -> LMDBStructureReport {
        var reader = try PageReader(path: path)
        defer { reader.close() }
        return try reader.verify()
    }

    static func corrupted(_ path: String, _ message: String) -> LMDBError {
        LMDBError(custom: message, operation: "structure check", path: path, code: MDB_CORRUPTED)
    }

    struct Meta {
        var pageSize: Int
        var root: UInt64
        var depth: Int
        var entries: UInt64
        var lastPage: UInt64
        var txnid: UInt64
    }

    struct PageReader {
        let path: String
        var fd: Int32
        let fileBytes: Int
        var pageSize = 0
        var lastPage = 0

        init(path: String) throws {
            self.path = path
            // O_NONBLOCK: a FIFO planted as data.mdb must not block the open.
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else { throw LMDBError(errno, "open", path: path) }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let e = errno
                Glibc.close(fd)
                throw LMDBError(e, "fstat", path: path)
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                Glibc.close(fd)
                throw LMDBStructure.corrupted(path, "not a regular file")
            }
            fileBytes = Int(st.st_size)
        }

        mutating func close() {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }

        func read(_ offset: Int, _ count: Int) throws -> [UInt8] {
            guard offset >= 0, count >= 0, offset <= fileBytes, count <= fileBytes - offset else {
                throw LMDBStructure.corrupted(path, "read of \(count) bytes at \(offset) is beyond the end of the file (\(fileBytes) bytes)")
            }
            switch FileOps.preadExactly(fd, offset: offset, count: count) {
            case let .bytes(out): return out
            case let .failed(_, code): throw LMDBError(code, "pread", path: path)
            case .ended: throw LMDBStructure.corrupted(path, "file ended while reading \(count) bytes at \(offset)")
            }
        }

        func meta(_ index: Int, pageSize: Int) throws -> Meta? {
            let b = try read(index * pageSize, 152)
            guard b.u16(10) & LMDBStructure.pMeta != 0, b.u32(16) == LMDBStructure.metaMagic, b.u32(20) == 1 else { return nil }
            return Meta(pageSize: Int(b.u32(40)), root: b.u64(128), depth: Int(b.u16(94)), entries: b.u64(120),
                        lastPage: b.u64(136), txnid: b.u64(144))
        }

        mutating func verify() throws -> LMDBStructureReport {
            guard fileBytes >= 2 * 512 else {
                throw LMDBStructure.corrupted(path, "file is \(fileBytes) bytes, too short for LMDB's two meta pages")
            }
            guard let m0 = try meta(0, pageSize: 0) else { throw LMDBStructure.corrupted(path, "meta page 0 is invalid") }
            let ps = m0.pageSize
            guard ps >= 512, ps <= 65536, ps & (ps - 1) == 0 else {
                throw LMDBStructure.corrupted(path, "page size \(ps) in meta page 0 is invalid")
            }
            guard fileBytes >= 2 * ps else {
                throw LMDBStructure.corrupted(path, "file is \(fileBytes) bytes, shorter than two \(ps)-byte meta pages")
            }
            // LMDB uses the meta page with the larger transaction id: check that one.
            let m1 = try meta(1, pageSize: ps)
            let m = (m1.map { $0.txnid > m0.txnid } ?? false) ? m1! : m0
            pageSize = ps
            guard m.lastPage >= 1, m.lastPage < UInt64(Int.max / ps) else {
                throw LMDBStructure.corrupted(path, "meta page says the last page is \(m.lastPage)")
            }
            lastPage = Int(m.lastPage)
            let needed = (lastPage + 1) * ps
            guard fileBytes >= needed else {
                throw LMDBStructure.corrupted(path, "file is \(fileBytes) bytes but its meta page uses \(lastPage + 1) pages "
                                              + "of \(ps) bytes (\(needed) bytes): truncated")
            }
            var report = LMDBStructureReport(pageSize: ps, lastPage: lastPage, transactionID: Int(clamping: m.txnid),
                                             entries: 0, fileBytes: fileBytes, damagedValues: [:])
            if m.root == LMDBStructure.invalidPage {
                guard m.entries == 0 else { throw LMDBStructure.corrupted(path, "empty tree but \(m.entries) entries") }
                return report
            }
            guard m.depth >= 1, m.depth <= 32 else { throw LMDBStructure.corrupted(path, "tree depth \(m.depth) is invalid") }
            var visited = Set<Int>()
            try walk(page: m.root, level: 1, depth: m.depth, visited: &visited, report: &report)
            guard UInt64(report.entries) == m.entries else {
                throw LMDBStructure.corrupted(path, "tree holds \(report.entries) entries, the meta page says \(m.entries)")
            }
            return report
        }

        func pageNumber(_ p: UInt64, _ what: String) throws -> Int {
            guard p >= 2, p <= UInt64(lastPage) else {
                throw LMDBStructure.corrupted(path, "\(what) refers to page \(p), outside 2...\(lastPage)")
            }
            return Int(p)
        }

        mutating func walk(page p: UInt64, level: Int, depth: Int, visited: inout Set<Int>,
                           report: inout LMDBStructureReport) throws {
            let pgno = try pageNumber(p, level == 1 ? "the root" : "a branch node")
            guard visited.insert(pgno).inserted else { throw LMDBStructure.corrupted(path, "page \(pgno) is reachable twice") }
            let ps = pageSize
            let b = try read(pgno * ps, ps)
            guard b.u64(0) == UInt64(pgno) else {
                throw LMDBStructure.corrupted(path, "page \(pgno) carries the page number \(b.u64(0))")
            }
            let flags = b.u16(10) & ~LMDBStructure.bookkeepingFlags
            let isLeaf = level == depth
            guard flags == (isLeaf ? LMDBStructure.pLeaf : LMDBStructure.pBranch) else {
                throw LMDBStructure.corrupted(path, String(format: "page %d has flags 0x%x, expected a %@ page at level %d of %d",
                                                           pgno, Int(b.u16(10)), isLeaf ? "leaf" : "branch", level, depth))
            }
            let lower = Int(b.u16(12)), upper = Int(b.u16(14))
            guard lower >= LMDBStructure.headerSize, lower <= upper, upper <= ps, (lower - LMDBStructure.headerSize) % 2 == 0 else {
                throw LMDBStructure.corrupted(path, "page \(pgno) has free-space bounds \(lower)...\(upper)")
            }
            let keys = (lower - LMDBStructure.headerSize) / 2
            guard keys >= 1 else { throw LMDBStructure.corrupted(path, "page \(pgno) holds no nodes") }
            for i in 0..<keys {
                let off = Int(b.u16(LMDBStructure.headerSize + 2 * i))
                guard off >= upper, off & 1 == 0, off + 8 <= ps else {
                    throw LMDBStructure.corrupted(path, "page \(pgno) node \(i) is at offset \(off), outside \(upper)..<\(ps)")
                }
                let lo = UInt64(b.u16(off)), hi = UInt64(b.u16(off + 2)), nodeFlags = b.u16(off + 4)
                let ksize = Int(b.u16(off + 6))
                guard off + 8 + ksize <= ps else {
                    throw LMDBStructure.corrupted(path, "page \(pgno) node \(i) has a \(ksize)-byte key past the page end")
                }
                if !isLeaf {
                    let child = lo | hi << 16 | UInt64(nodeFlags) << 32
                    try walk(page: child, level: level + 1, depth: depth, visited: &visited, report: &report)
                    continue
                }
                // LMDB acts on a leaf's flags (sub-database, duplicates) inside mdb_get and cursor
                // moves, before a caller could refuse the value: a bad flag fails the whole tree.
                guard nodeFlags & ~LMDBStructure.bigData == 0 else {
                    throw LMDBStructure.corrupted(path, String(format: "page %d node %d has flags 0x%x (sub-databases and duplicates are not used)",
                                                               pgno, i, Int(nodeFlags)))
                }
                report.entries += 1
                let key = Array(b[(off + 8)..<(off + 8 + ksize)])
                let size = Int(lo | hi << 16)
                let dataStart = off + 8 + ksize
                if let why = valueProblem(flags: nodeFlags, size: size, page: b, dataStart: dataStart) {
                    report.damagedValues[key] = "page \(pgno) node \(i): \(why)"
                }
            }
        }

        /// Nil when the value of a leaf node lies inside its page or (overflow values) the used file.
        func valueProblem(flags: UInt16, size: Int, page b: [UInt8], dataStart: Int) -> String? {
            if flags & LMDBStructure.bigData == 0 {
                return dataStart + size <= pageSize ? nil : "value of \(size) bytes runs past its page"
            }
            guard dataStart + 8 <= pageSize else { return "overflow page number runs past its page" }
            let first = b.u64(dataStart)
            guard first >= 2, first <= UInt64(lastPage) else { return "value on page \(first), outside 2...\(lastPage)" }
            // LMDB returns overflow page + header and the node's size without reading the overflow
            // header, so the bound that matters is the used file (not read here: one pread per
            // record would make opening a large shard on a network file system slow).
            let end = Int(first) * pageSize + LMDBStructure.headerSize
            guard size <= (lastPage + 1) * pageSize - end else {
                return "value of \(size) bytes from page \(first) runs past the last page \(lastPage)"
            }
            return nil
        }
    }
}

fileprivate extension Array where Element == UInt8 {
    func u16(_ o: Int) -> UInt16 { UInt16(self[o]) | UInt16(self[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
    func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
}

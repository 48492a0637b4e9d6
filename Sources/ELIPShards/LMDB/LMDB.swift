// A small, safe wrapper around LMDB (liblmdb, the default unnamed database of an environment).
//
// Thread rules
// ------------
// * `LMDBEnvironment` is thread-safe and meant to be shared. It is opened with MDB_NOTLS, so reader
//   slots belong to transaction objects, not to threads.
// * `LMDBReadTransaction`: create it on any thread; use it from ONE thread at a time (it may be
//   handed between threads, e.g. kept per loader worker and `reset()`/`renew()`ed between batches).
//   A thread may hold several read transactions. Each live one occupies a reader slot (`maxReaders`).
// * `LMDBWriteTransaction`: at most one per environment at a time (a second `beginWrite` blocks in
//   LMDB until the first ends); it must be used and ended on the thread that created it.
// * Values returned by `get` / cursors are copies. `withValue(forKey:)` gives zero-copy access to
//   the memory map, valid only inside the closure.
// * Map growth (`writeWithGrowth`, `setMapSize`) re-maps the file; LMDB requires that no
//   transaction of this environment is active in the process at that moment. The wrapper counts
//   live transactions and refuses (throws) instead of invalidating a reader's memory. Other
//   processes that have the file open pick up the new size on their next read transaction
//   (handled here: MDB_MAP_RESIZED at begin -> adopt the new size, retry).
//
// Keys are byte strings compared lexicographically (memcmp); `LMDBKey.uint64` encodes integers
// big-endian so numeric and byte order agree, which is what MDB_APPEND needs.

import CLMDB
import Foundation

/// An LMDB failure: the LMDB / errno code, `mdb_strerror` text, the operation and the env path.
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let operation: String
    public let path: String

    init(_ code: Int32, _ operation: String, path: String) {
        self.code = code
        self.message = String(cString: mdb_strerror(code))
        self.operation = operation
        self.path = path
    }

    init(custom message: String, operation: String, path: String, code: Int32 = Int32(EINVAL)) {
        self.code = code
        self.message = message
        self.operation = operation
        self.path = path
    }

    public var isMapFull: Bool { code == MDB_MAP_FULL }
    public var isNotFound: Bool { code == MDB_NOTFOUND }
    public var isKeyExists: Bool { code == MDB_KEYEXIST }
    /// The file is damaged (structure check, or LMDB's own corruption / version / page errors).
    public var isDamage: Bool { [MDB_CORRUPTED, MDB_INVALID, MDB_VERSION_MISMATCH, MDB_PAGE_NOTFOUND].contains(code) }

    public var description: String { "LMDB \(operation) failed for \(path): \(message) (code \(code))" }
}

/// Flags for `put`.
public struct LMDBPutFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Fail with MDB_KEYEXIST instead of overwriting an existing key.
    public static let noOverwrite = LMDBPutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    /// Append at the end of the database: fast bulk load; keys must arrive in strictly increasing
    /// order (otherwise MDB_KEYEXIST).
    public static let append = LMDBPutFlags(rawValue: UInt32(MDB_APPEND))
}

/// Key helpers.
public enum LMDBKey {
    /// 8-byte big-endian encoding: sorts like the integer.
    public static func uint64(_ v: UInt64) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }

    /// Decodes an 8-byte big-endian key; nil if the length is not 8.
    public static func uint64<B: Collection>(decoding bytes: B) -> UInt64? where B.Element == UInt8 {
        guard bytes.count == 8 else { return nil }
        var v: UInt64 = 0
        for b in bytes { v = v << 8 | UInt64(b) }
        return v
    }

    /// UTF-8 bytes of a string key.
    public static func string(_ s: String) -> [UInt8] { Array(s.utf8) }
}

/// Static facts about an environment.
public struct LMDBInfo: Sendable, Equatable {
    public var mapSize: Int
    public var lastPageNumber: Int
    public var lastTransactionID: Int
    public var maxReaders: Int
    public var readersInUse: Int
    public var pageSize: Int
}

public final class LMDBEnvironment: @unchecked Sendable {
    public let path: String
    public let readOnly: Bool
    let env: OpaquePointer
    /// Set when opened with `verifyStructure`: the checked layout and the values that must not be read.
    public let structure: LMDBStructureReport?
    /// Size of the checked data file (no value can be larger); nil: unchecked.
    let checkedFileBytes: Int?
    private let lock = NSLock()
    private var liveTransactions = 0

    /// Opens (creating when writable) an environment.
    /// - Parameters:
    ///   - path: directory holding data.mdb/lock.mdb, or the data file itself with `noSubdir`.
    ///     A writable environment creates the directory (or, with `noSubdir`, the parent directory)
    ///     when missing; a read-only one never creates anything.
    ///   - mapSize: maximum database size in bytes. nil: keep the file's size when read-only, 1 GiB
    ///     when writable. Rounded up by LMDB to a page multiple; grows on demand in `writeWithGrowth`.
    ///   - maxReaders: reader slots (concurrent read transactions across all processes).
    ///   - noReadAhead: MDB_NORDAHEAD (helps random access on datasets larger than RAM).
    ///   - noSync: MDB_NOSYNC (bulk builds: faster, not crash-safe until `sync()`).
    ///   - verifyStructure: read-only only. Check the data file with `LMDBStructure.verify` before
    ///     mapping it (throws MDB_CORRUPTED for a truncated or damaged tree); afterwards values
    ///     listed as damaged, or lying outside the checked file, are refused instead of read.
    ///     Use it for files that may be damaged (dataset shards): liblmdb itself trusts the file.
    public init(path: String, readOnly: Bool = true, mapSize: Int? = nil, maxReaders: Int = 126,
                noSubdir: Bool = false, noReadAhead: Bool = false, noSync: Bool = false,
                verifyStructure: Bool = false) throws {
        self.path = path
        self.readOnly = readOnly
        var report: LMDBStructureReport? = nil
        if verifyStructure {
            guard readOnly else {
                throw LMDBError(custom: "structure checks need a read-only environment", operation: "open", path: path)
            }
            report = try LMDBStructure.verify(dataFile: noSubdir ? path : (path as NSString).appendingPathComponent("data.mdb"))
        }
        var e: OpaquePointer?
        var rc = mdb_env_create(&e)
        guard rc == 0, let envp = e else { throw LMDBError(rc, "mdb_env_create", path: path) }
        func fail(_ rc: Int32, _ op: String) -> LMDBError {
            mdb_env_close(envp)
            return LMDBError(rc, op, path: path)
        }
        if let size = mapSize ?? (readOnly ? nil : 1 << 30) {
            guard size > 0 else {
                mdb_env_close(envp)
                throw LMDBError(custom: "map size must be positive", operation: "open", path: path)
            }
            rc = mdb_env_set_mapsize(envp, size)
            if rc != 0 { throw fail(rc, "mdb_env_set_mapsize") }
        }
        guard maxReaders > 0, maxReaders <= Int(UInt32.max) else {
            mdb_env_close(envp)
            throw LMDBError(custom: "maxReaders must be positive", operation: "open", path: path)
        }
        rc = mdb_env_set_maxreaders(envp, UInt32(maxReaders))
        if rc != 0 { throw fail(rc, "mdb_env_set_maxreaders") }

        if !readOnly {
            let dir = noSubdir ? (path as NSString).deletingLastPathComponent : path
            if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
                do {
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                } catch {
                    mdb_env_close(envp)
                    throw LMDBError(custom: "cannot create directory: \(error)", operation: "open", path: path,
                                    code: Int32(EACCES))
                }
            }
        }
        var flags = UInt32(MDB_NOTLS)
        if readOnly { flags |= UInt32(MDB_RDONLY) }
        if noSubdir { flags |= UInt32(MDB_NOSUBDIR) }
        if noReadAhead { flags |= UInt32(MDB_NORDAHEAD) }
        if noSync { flags |= UInt32(MDB_NOSYNC) }
        rc = mdb_env_open(envp, path, flags, 0o664)
        if rc != 0 { throw fail(rc, "mdb_env_open") }
        if let report {
            // LMDB must be looking at the snapshot that was checked (same meta page, same file).
            var i = MDB_envinfo()
            rc = mdb_env_info(envp, &i)
            if rc != 0 { throw fail(rc, "mdb_env_info") }
            guard i.me_last_pgno == report.lastPage, i.me_last_txnid == report.transactionID else {
                mdb_env_close(envp)
                throw LMDBError(custom: "the file changed between its structure check and opening (last page \(i.me_last_pgno), "
                                + "transaction \(i.me_last_txnid); checked \(report.lastPage), \(report.transactionID))",
                                operation: "open", path: path, code: MDB_CORRUPTED)
            }
            checkedFileBytes = report.fileBytes
        } else {
            checkedFileBytes = nil
        }
        structure = report
        env = envp

        if !readOnly {
            // Create the unnamed database once so later read transactions can open it.
            let txn = try LMDBWriteTransaction(self)
            try txn.commit()
        }
    }

    deinit {
        mdb_env_close(env)
    }

    // MARK: info

    public func info() throws -> LMDBInfo {
        var i = MDB_envinfo()
        let rc = mdb_env_info(env, &i)
        guard rc == 0 else { throw LMDBError(rc, "mdb_env_info", path: path) }
        var s = MDB_stat()
        let rc2 = mdb_env_stat(env, &s)
        guard rc2 == 0 else { throw LMDBError(rc2, "mdb_env_stat", path: path) }
        return LMDBInfo(mapSize: i.me_mapsize, lastPageNumber: i.me_last_pgno, lastTransactionID: i.me_last_txnid,
                        maxReaders: Int(i.me_maxreaders), readersInUse: Int(i.me_numreaders),
                        pageSize: Int(s.ms_psize))
    }

    /// Current map size in bytes.
    public var mapSize: Int {
        var i = MDB_envinfo()
        return mdb_env_info(env, &i) == 0 ? i.me_mapsize : 0
    }

    /// Number of entries (opens a short read transaction).
    public func count() throws -> Int {
        try read { try $0.count() }
    }

    /// Flushes to disk (needed with `noSync`).
    public func sync(force: Bool = true) throws {
        let rc = mdb_env_sync(env, force ? 1 : 0)
        guard rc == 0 else { throw LMDBError(rc, "mdb_env_sync", path: path) }
    }

    /// Changes the map size. Requires that no transaction of this environment is live.
    public func setMapSize(_ bytes: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        guard liveTransactions == 0 else {
            throw LMDBError(custom: "cannot resize the map while \(liveTransactions) transaction(s) are active",
                            operation: "mdb_env_set_mapsize", path: path, code: Int32(EBUSY))
        }
        let rc = mdb_env_set_mapsize(env, bytes)
        guard rc == 0 else { throw LMDBError(rc, "mdb_env_set_mapsize", path: path) }
    }

    // MARK: transactions

    public func beginRead() throws -> LMDBReadTransaction { try LMDBReadTransaction(self) }

    public func beginWrite() throws -> LMDBWriteTransaction {
        guard !readOnly else {
            throw LMDBError(custom: "environment is read-only", operation: "mdb_txn_begin", path: path,
                            code: Int32(EACCES))
        }
        return try LMDBWriteTransaction(self)
    }

    /// Runs `body` in a read transaction that ends when it returns.
    public func read<R>(_ body: (LMDBReadTransaction) throws -> R) throws -> R {
        let txn = try beginRead()
        defer { txn.end() }
        return try body(txn)
    }

    /// Runs `body` in a write transaction: committed if it returns, aborted if it throws.
    public func write<R>(_ body: (LMDBWriteTransaction) throws -> R) throws -> R {
        let txn = try beginWrite()
        do {
            let r = try body(txn)
            try txn.commit()
            return r
        } catch {
            txn.abort()
            throw error
        }
    }

    /// Like `write`, but on MDB_MAP_FULL (from a put or from commit) the transaction is aborted, the
    /// map size doubled, and `body` run again from scratch in a new transaction. `body` must
    /// therefore be re-runnable (write the whole batch each time). Gives up, rethrowing MAP_FULL,
    /// once the map would exceed `maxMapSize`. Requires no other live transaction on this env.
    public func writeWithGrowth<R>(maxMapSize: Int = 1 << 44, _ body: (LMDBWriteTransaction) throws -> R) throws -> R {
        while true {
            do {
                return try write(body)
            } catch let e as LMDBError where e.isMapFull {
                let current = mapSize
                let (doubled, overflow) = max(current, 1 << 16).multipliedReportingOverflow(by: 2)
                guard !overflow, doubled <= maxMapSize else { throw e }
                try setMapSize(doubled)
            }
        }
    }

    // MARK: bookkeeping used by transactions

    func transactionStarted() {
        lock.lock()
        liveTransactions += 1
        lock.unlock()
    }

    func transactionEnded() {
        lock.lock()
        liveTransactions -= 1
        lock.unlock()
    }

    /// Begins a raw transaction and counts it as live, adopting a map that another process grew
    /// (MDB_MAP_RESIZED). The count is taken BEFORE mdb_txn_begin so that a concurrent `setMapSize`
    /// (which checks the count under the same lock) can never remap under a starting transaction.
    func beginRaw(flags: UInt32, operation: String) throws -> OpaquePointer {
        var attempts = 0
        while true {
            transactionStarted()
            var t: OpaquePointer?
            let rc = mdb_txn_begin(env, nil, flags, &t)
            if rc == 0, let txn = t { return txn }
            transactionEnded()
            if rc == MDB_MAP_RESIZED && attempts < 3 {
                attempts += 1
                // Size 0 = adopt the size recorded in the file. Only legal with no live txns.
                lock.lock()
                let rc2 = liveTransactions == 0 ? mdb_env_set_mapsize(env, 0) : rc
                lock.unlock()
                if rc2 == 0 { continue }
            }
            throw LMDBError(rc, operation, path: path)
        }
    }
}

extension LMDBEnvironment {
    /// Throws MDB_CORRUPTED unless the value of `key` may be read: not listed as damaged by the
    /// structure check (which proved every other value lies inside the file) and no larger than
    /// the file (no-op for unchecked environments).
    func checkValue(key: [UInt8], _ v: MDB_val) throws {
        guard let fileBytes = checkedFileBytes else { return }
        if let why = structure?.damagedValues[key] {
            throw LMDBError(custom: "damaged value: \(why)", operation: "read", path: path, code: MDB_CORRUPTED)
        }
        guard v.mv_size <= fileBytes else {
            throw LMDBError(custom: "value of \(v.mv_size) bytes is larger than the checked file", operation: "read",
                            path: path, code: MDB_CORRUPTED)
        }
    }
}

// LMDB transactions (the shared read operations, read and write transactions) and the cursor.

import CLMDB

// MARK: - shared read operations

/// Operations available in both kinds of transaction.
public class LMDBTransactionBase {
    public let environment: LMDBEnvironment
    var txn: OpaquePointer?
    var dbi: MDB_dbi = 0

    init(environment: LMDBEnvironment) {
        self.environment = environment
    }

    var path: String { environment.path }

    func liveTxn(_ op: String) throws -> OpaquePointer {
        guard let t = txn else {
            throw LMDBError(custom: "transaction has ended", operation: op, path: path)
        }
        return t
    }

    /// Zero-copy access to the value stored under `key` (nil if absent). The buffer points into the
    /// memory map and is valid only inside `body`.
    public func withValue<R>(forKey key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        let t = try liveTxn("mdb_get")
        guard !key.isEmpty else { throw LMDBError(custom: "empty key", operation: "mdb_get", path: path) }
        var v = MDB_val(mv_size: 0, mv_data: nil)
        // A damaged node must not reach mdb_get at all (its flags may send LMDB off the page).
        if let why = environment.structure?.damagedValues[key] {
            throw LMDBError(custom: "damaged value: \(why)", operation: "mdb_get", path: path, code: MDB_CORRUPTED)
        }
        let rc = key.withUnsafeBytes { kb -> Int32 in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            return mdb_get(t, dbi, &k, &v)
        }
        if rc == MDB_NOTFOUND { return nil }
        guard rc == 0 else { throw LMDBError(rc, "mdb_get", path: path) }
        try environment.checkValue(key: key, v)
        return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// A copy of the value stored under `key`, or nil.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        try withValue(forKey: key) { Array($0) }
    }

    public func get(_ key: UInt64) throws -> [UInt8]? { try get(LMDBKey.uint64(key)) }

    public func contains(_ key: [UInt8]) throws -> Bool {
        try withValue(forKey: key) { _ in true } ?? false
    }

    /// Number of entries (mdb_stat).
    public func count() throws -> Int {
        let t = try liveTxn("mdb_stat")
        var s = MDB_stat()
        let rc = mdb_stat(t, dbi, &s)
        guard rc == 0 else { throw LMDBError(rc, "mdb_stat", path: path) }
        return s.ms_entries
    }

    /// A cursor for key-ordered iteration. It must not outlive this transaction's active period.
    public func makeCursor() throws -> LMDBCursor {
        let t = try liveTxn("mdb_cursor_open")
        var c: OpaquePointer?
        let rc = mdb_cursor_open(t, dbi, &c)
        guard rc == 0, let cur = c else { throw LMDBError(rc, "mdb_cursor_open", path: path) }
        return LMDBCursor(cursor: cur, owner: self)
    }

    /// Visits entries in key order, starting at the first key >= `start` (or the first key). Return
    /// false from `body` to stop early.
    public func forEach(from start: [UInt8]? = nil,
                        _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) throws {
        let cursor = try makeCursor()
        defer { cursor.close() }
        var entry = try start.map { try cursor.seek(atLeast: $0) } ?? cursor.first()
        while let (k, v) = entry {
            guard try body(k, v) else { return }
            entry = try cursor.next()
        }
    }

    /// All keys in order (convenience for small databases / tests).
    public func allKeys() throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        try forEach { k, _ in keys.append(k); return true }
        return keys
    }

    func openDBI(create: Bool) throws {
        let t = try liveTxn("mdb_dbi_open")
        var d: MDB_dbi = 0
        let rc = mdb_dbi_open(t, nil, create ? UInt32(MDB_CREATE) : 0, &d)
        guard rc == 0 else { throw LMDBError(rc, "mdb_dbi_open", path: path) }
        dbi = d
    }
}

// MARK: - read transaction

public final class LMDBReadTransaction: LMDBTransactionBase {
    private var isReset = false

    init(_ env: LMDBEnvironment) throws {
        super.init(environment: env)
        txn = try env.beginRaw(flags: UInt32(MDB_RDONLY), operation: "mdb_txn_begin(read)")
        do {
            try openDBI(create: false)
        } catch {
            end()
            throw error
        }
    }

    deinit { end() }

    /// Releases the snapshot but keeps the reader slot for a cheap `renew()`.
    public func reset() {
        guard let t = txn, !isReset else { return }
        mdb_txn_reset(t)
        isReset = true
        environment.transactionEnded()
    }

    /// Takes a fresh snapshot after `reset()`.
    public func renew() throws {
        guard let t = txn else {
            throw LMDBError(custom: "transaction has ended", operation: "mdb_txn_renew", path: path)
        }
        guard isReset else { return }
        environment.transactionStarted()
        let rc = mdb_txn_renew(t)
        guard rc == 0 else {
            environment.transactionEnded()
            throw LMDBError(rc, "mdb_txn_renew", path: path)
        }
        isReset = false
    }

    /// Ends the transaction (idempotent).
    public func end() {
        guard let t = txn else { return }
        mdb_txn_abort(t)
        txn = nil
        if !isReset { environment.transactionEnded() }
        isReset = false
    }

    override func liveTxn(_ op: String) throws -> OpaquePointer {
        if isReset { throw LMDBError(custom: "transaction is reset; call renew()", operation: op, path: path) }
        return try super.liveTxn(op)
    }
}

// MARK: - write transaction

public final class LMDBWriteTransaction: LMDBTransactionBase {
    init(_ env: LMDBEnvironment) throws {
        super.init(environment: env)
        txn = try env.beginRaw(flags: 0, operation: "mdb_txn_begin(write)")
        do {
            try openDBI(create: true)
        } catch {
            abort()
            throw error
        }
    }

    /// Aborts if neither committed nor aborted.
    deinit { abort() }

    public var isActive: Bool { txn != nil }

    public func put(_ key: [UInt8], _ value: [UInt8], flags: LMDBPutFlags = []) throws {
        let t = try liveTxn("mdb_put")
        guard !key.isEmpty else { throw LMDBError(custom: "empty key", operation: "mdb_put", path: path) }
        let rc = key.withUnsafeBytes { kb in
            value.withUnsafeBytes { vb -> Int32 in
                var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
                var v = MDB_val(mv_size: vb.count, mv_data: UnsafeMutableRawPointer(mutating: vb.baseAddress))
                return mdb_put(t, dbi, &k, &v, flags.rawValue)
            }
        }
        guard rc == 0 else { throw LMDBError(rc, "mdb_put", path: path) }
    }

    public func put(_ key: UInt64, _ value: [UInt8], flags: LMDBPutFlags = []) throws {
        try put(LMDBKey.uint64(key), value, flags: flags)
    }

    /// Deletes `key`; returns false if it was absent.
    @discardableResult
    public func delete(_ key: [UInt8]) throws -> Bool {
        let t = try liveTxn("mdb_del")
        guard !key.isEmpty else { throw LMDBError(custom: "empty key", operation: "mdb_del", path: path) }
        let rc = key.withUnsafeBytes { kb -> Int32 in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            return mdb_del(t, dbi, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        guard rc == 0 else { throw LMDBError(rc, "mdb_del", path: path) }
        return true
    }

    /// Commits. On failure (e.g. MDB_MAP_FULL) LMDB has already freed the transaction.
    public func commit() throws {
        let t = try liveTxn("mdb_txn_commit")
        txn = nil
        let rc = mdb_txn_commit(t)          // frees the transaction whether or not it succeeds
        environment.transactionEnded()
        guard rc == 0 else { throw LMDBError(rc, "mdb_txn_commit", path: path) }
    }

    /// Discards all changes (idempotent).
    public func abort() {
        guard let t = txn else { return }
        mdb_txn_abort(t)
        txn = nil
        environment.transactionEnded()
    }
}

// MARK: - cursor

/// Key-ordered cursor. Keeps its transaction object alive; invalid once that transaction ends.
public final class LMDBCursor {
    private var cursor: OpaquePointer?
    private let owner: LMDBTransactionBase

    init(cursor: OpaquePointer, owner: LMDBTransactionBase) {
        self.cursor = cursor
        self.owner = owner
    }

    deinit { close() }

    public func close() {
        guard let c = cursor else { return }
        // A read-transaction cursor must always be closed explicitly (even after the transaction
        // ended); a write-transaction cursor is freed by LMDB when its transaction ends.
        if owner is LMDBReadTransaction || owner.txn != nil { mdb_cursor_close(c) }
        cursor = nil
    }

    private func op(_ o: MDB_cursor_op, key: [UInt8]? = nil) throws -> (key: [UInt8], value: [UInt8])? {
        guard let c = cursor, owner.txn != nil else {
            throw LMDBError(custom: "cursor or transaction closed", operation: "mdb_cursor_get", path: owner.path)
        }
        if let key, key.isEmpty {
            throw LMDBError(custom: "empty key", operation: "mdb_cursor_get", path: owner.path)
        }
        var rc: Int32 = 0
        var result: (key: [UInt8], value: [UInt8])? = nil
        var damage: Error? = nil
        // The search key buffer only needs to live during the call; on success LMDB points `k` at
        // the key stored in the map, which we copy out before leaving the closure.
        (key ?? [0]).withUnsafeBytes { kb in
            var k = key == nil ? MDB_val(mv_size: 0, mv_data: nil)
                               : MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            var v = MDB_val(mv_size: 0, mv_data: nil)
            rc = mdb_cursor_get(c, &k, &v, o)
            if rc == 0, owner.environment.checkedFileBytes != nil {
                // Keys lie in checked pages; values are checked before they are copied.
                let key = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
                do { try owner.environment.checkValue(key: key, v) } catch {
                    damage = error
                    return
                }
            }
            if rc == 0 {
                result = (Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)),
                          Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)))
            }
        }
        if let damage { throw damage }
        if rc == MDB_NOTFOUND { return nil }
        guard rc == 0 else { throw LMDBError(rc, "mdb_cursor_get", path: owner.path) }
        return result
    }

    public func first() throws -> (key: [UInt8], value: [UInt8])? { try op(MDB_FIRST) }
    public func last() throws -> (key: [UInt8], value: [UInt8])? { try op(MDB_LAST) }
    public func next() throws -> (key: [UInt8], value: [UInt8])? { try op(MDB_NEXT) }
    public func previous() throws -> (key: [UInt8], value: [UInt8])? { try op(MDB_PREV) }
    /// Positions at the first key >= `key`.
    public func seek(atLeast key: [UInt8]) throws -> (key: [UInt8], value: [UInt8])? {
        try op(MDB_SET_RANGE, key: key)
    }
}

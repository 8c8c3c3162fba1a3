import CLMDB

/// A read or write transaction. Obtained through ``Environment/read(_:)`` or
/// ``Environment/write(_:)``, and valid only inside their closures.
public final class Transaction {
    /// Flags for ``put(_:forKey:in:flags:)``.
    public struct PutFlags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Fail with `MDB_KEYEXIST` instead of overwriting.
        public static let noOverwrite = PutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
        /// The key sorts after every key in the database: a fast append.
        public static let append = PutFlags(rawValue: UInt32(MDB_APPEND))
    }

    let handle: OpaquePointer
    private var isOpen = true

    init(environment: Environment, readOnly: Bool) throws(LMDBError) {
        var txn: OpaquePointer?
        try check(
            mdb_txn_begin(environment.handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn),
            readOnly ? "beginning a read transaction" : "beginning a write transaction"
        )
        guard let txn else { throw LMDBError(code: ENOMEM_CODE, operation: "mdb_txn_begin") }
        handle = txn
    }

    deinit {
        if isOpen { mdb_txn_abort(handle) }
    }

    func commit() throws(LMDBError) {
        isOpen = false
        try check(mdb_txn_commit(handle), "committing a write transaction")
    }

    func abort() {
        guard isOpen else { return }
        isOpen = false
        mdb_txn_abort(handle)
    }

    /// Opens the database called `name` (`nil`: the environment's main database).
    public func openDatabase(named name: String?, create: Bool = false) throws(LMDBError) -> Database {
        var dbi = MDB_dbi()
        try check(
            mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi),
            "opening database \(name ?? "(main)")"
        )
        return Database(dbi: dbi)
    }

    /// Calls `body` with the value stored under `key`, or with `nil` when there is none.
    /// The bytes are LMDB's own mapped memory and valid only during `body`.
    public func withValue<R>(
        forKey key: UnsafeRawBufferPointer,
        in database: Database,
        _ body: (UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        var keyVal = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var dataVal = MDB_val()
        let code = mdb_get(handle, database.dbi, &keyVal, &dataVal)
        if code == MDB_NOTFOUND { return try body(nil) }
        try check(code, "mdb_get")
        return try body(UnsafeRawBufferPointer(start: dataVal.mv_data, count: dataVal.mv_size))
    }

    /// The value stored under `key`, copied out, or `nil`.
    public func value(forKey key: [UInt8], in database: Database) throws -> [UInt8]? {
        try key.withUnsafeBytes { key in
            try withValue(forKey: key, in: database) { $0.map { Array($0) } }
        }
    }

    /// Stores `value` under `key`.
    public func put(
        _ value: UnsafeRawBufferPointer,
        forKey key: UnsafeRawBufferPointer,
        in database: Database,
        flags: PutFlags = []
    ) throws(LMDBError) {
        var keyVal = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var dataVal = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try check(mdb_put(handle, database.dbi, &keyVal, &dataVal, flags.rawValue), "mdb_put")
    }

    /// Stores `value` under `key`.
    public func put(_ value: [UInt8], forKey key: [UInt8], in database: Database, flags: PutFlags = []) throws {
        try value.withUnsafeBytes { value in
            try key.withUnsafeBytes { key in
                try put(value, forKey: key, in: database, flags: flags)
            }
        }
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func delete(key: [UInt8], in database: Database) throws -> Bool {
        var found = true
        try key.withUnsafeBytes { key in
            var keyVal = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            let code = mdb_del(handle, database.dbi, &keyVal, nil)
            if code == MDB_NOTFOUND { found = false; return }
            try check(code, "mdb_del")
        }
        return found
    }

    /// The snapshot this transaction reads (LMDB's transaction id): two read transactions with the same
    /// id see the same data.
    public var snapshot: Int {
        mdb_txn_id(handle)
    }

    /// The number of entries in `database`.
    public func count(in database: Database) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(handle, database.dbi, &stat), "mdb_stat")
        return stat.ms_entries
    }

    /// Calls `body` with every key and value in key order until it returns `false`.
    /// The bytes are LMDB's mapped memory and valid only during each call.
    public func forEach(
        in database: Database,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try walk(in: database, first: MDB_FIRST, next: MDB_NEXT, body)
    }

    /// Calls `body` with every key and value from the first key at or after `start`, in key order,
    /// until it returns `false`. The bytes are valid only during each call.
    public func forEach(
        in database: Database,
        from start: [UInt8],
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try walk(in: database, first: MDB_SET_RANGE, next: MDB_NEXT, start: start, body)
    }

    /// The last key and value in key order, copied out, or `nil` for an empty database.
    public func last(in database: Database) throws -> (key: [UInt8], value: [UInt8])? {
        var result: (key: [UInt8], value: [UInt8])?
        try walk(in: database, first: MDB_LAST, next: MDB_PREV) { key, value in
            result = (Array(key), Array(value))
            return false
        }
        return result
    }

    /// Walks a cursor: `first` positions it (at `start` for `MDB_SET_RANGE`), `next` moves it on.
    private func walk(
        in database: Database,
        first: MDB_cursor_op,
        next: MDB_cursor_op,
        start: [UInt8] = [],
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, database.dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        try start.withUnsafeBytes { start in
            var keyVal = MDB_val(mv_size: start.count, mv_data: UnsafeMutableRawPointer(mutating: start.baseAddress))
            var dataVal = MDB_val()
            var op = first
            while true {
                let code = mdb_cursor_get(cursor, &keyVal, &dataVal, op)
                if code == MDB_NOTFOUND { return }
                try check(code, "mdb_cursor_get")
                let key = UnsafeRawBufferPointer(start: keyVal.mv_data, count: keyVal.mv_size)
                let value = UnsafeRawBufferPointer(start: dataVal.mv_data, count: dataVal.mv_size)
                if try !body(key, value) { return }
                op = next
            }
        }
    }
}

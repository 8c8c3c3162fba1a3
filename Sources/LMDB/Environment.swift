import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An LMDB environment: one data file and its lock file in a directory, mapped into memory.
///
/// The environment owns its `MDB_env` handle and closes it when released.
/// It is `@unchecked Sendable` because LMDB allows an environment to be shared between threads
/// (it is opened with `MDB_NOTLS`, so transactions are not tied to threads); what LMDB forbids,
/// resizing the map while a transaction of this process is open, is the caller's to avoid, as
/// ``setMapSize(_:)`` says.
public final class Environment: @unchecked Sendable {
    /// Options for opening an environment.
    public struct Options: Sendable {
        /// The initial size of the memory map in bytes (rounded by LMDB to whole pages).
        public var mapSize: Int
        /// How many named databases the environment may hold.
        public var maxDatabases: UInt32
        /// How many reader slots (concurrent read transactions across processes).
        public var maxReaders: UInt32
        /// Open read-only: no write transactions, no map growth.
        public var readOnly: Bool
        /// Skip `fsync` at commit: faster, but a crash of the machine may lose recent commits.
        public var noSync: Bool

        public init(
            mapSize: Int = 64 << 20,
            maxDatabases: UInt32 = 4,
            maxReaders: UInt32 = 126,
            readOnly: Bool = false,
            noSync: Bool = false
        ) {
            self.mapSize = mapSize
            self.maxDatabases = maxDatabases
            self.maxReaders = maxReaders
            self.readOnly = readOnly
            self.noSync = noSync
        }
    }

    let handle: OpaquePointer
    /// The directory holding `data.mdb` and `lock.mdb`.
    public let path: String

    /// Opens (creating if needed) the environment in the existing directory `path`.
    public init(path: String, options: Options = Options()) throws(LMDBError) {
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: ENOMEM_CODE, operation: "mdb_env_create") }
        do {
            try check(mdb_env_set_maxdbs(env, MDB_dbi(options.maxDatabases)), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            if !options.readOnly {
                try check(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
            }
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            if options.noSync { flags |= UInt32(MDB_NOSYNC) }
            try check(mdb_env_open(env, path, flags, 0o644), "opening LMDB environment at \(path)")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.path = path
    }

    deinit {
        mdb_env_close(handle)
    }

    /// The current size of the memory map in bytes.
    public var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    /// The bytes of the map in use: pages up to the last one written, times the page size.
    public var usedBytes: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        var stat = MDB_stat()
        mdb_env_stat(handle, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// The id of the last committed write transaction: it changes with every commit that changes
    /// anything, so it tells whether the data moved on since it was last read.
    public var lastTransactionID: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_last_txnid
    }

    /// Changes the size of the memory map; `0` adopts the size another process set.
    ///
    /// LMDB requires that no transaction of this process is open while the map is resized.
    public func setMapSize(_ size: Int) throws(LMDBError) {
        try check(mdb_env_set_mapsize(handle, size), "mdb_env_set_mapsize(\(size))")
    }

    /// Drops this process's resident pages of the memory map (the data stays in the file and the
    /// kernel's page cache, and is mapped in again when read). Useful after one full scan, so that
    /// the scan does not count as the process's memory. LMDB does not say where its map lies (its
    /// `me_mapaddr` is set only for `MDB_FIXEDMAP`), so this maps the file anew at the same size,
    /// which unmaps the old pages. Like ``setMapSize(_:)``, it needs that no transaction of this
    /// process is open, read transactions included.
    public func releaseMappedPages() throws(LMDBError) {
        try setMapSize(mapSize)
    }

    /// Flushes the data file to disk (needed only with ``Options/noSync``).
    public func sync(force: Bool = true) throws(LMDBError) {
        try check(mdb_env_sync(handle, force ? 1 : 0), "mdb_env_sync")
    }

    /// Writes a consistent copy of the environment into the existing empty directory `path`.
    ///
    /// The copy runs inside a read transaction, so it is safe while other threads or processes
    /// write; with `compacting`, free pages are left out and the copy is as small as it can be.
    public func copy(to path: String, compacting: Bool = true) throws(LMDBError) {
        try check(
            mdb_env_copy2(handle, path, compacting ? UInt32(MDB_CP_COMPACT) : 0),
            "copying LMDB environment to \(path)"
        )
    }

    /// Runs `body` in a read-only transaction, which is released when `body` returns.
    public func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        let transaction = try Transaction(environment: self, readOnly: true)
        defer { transaction.abort() }
        return try body(transaction)
    }

    /// Runs `body` in a write transaction, committed when `body` returns and aborted when it throws.
    ///
    /// A commit that fails throws its ``LMDBError``; nothing of the transaction is kept then.
    public func write<R>(_ body: (Transaction) throws -> R) throws -> R {
        let transaction = try Transaction(environment: self, readOnly: false)
        let result: R
        do {
            result = try body(transaction)
        } catch {
            transaction.abort()
            throw error
        }
        try transaction.commit()
        return result
    }
}

/// `ENOMEM`, spelled out so this file needs no libc import.
let ENOMEM_CODE: Int32 = 12

import CLMDB

/// An error returned by LMDB, carrying its code and LMDB's own description of it.
public struct LMDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The raw return code: one of LMDB's `MDB_*` codes or a POSIX `errno` value.
    public let code: Int32
    /// The LMDB call that failed, for messages a person can act on.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// The memory map is full: grow it with ``Environment/setMapSize(_:)`` and retry the transaction.
    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// Another process grew the map; adopt its size with `setMapSize(0)`.
    public var isMapResized: Bool { code == MDB_MAP_RESIZED }
    /// The key was not found.
    public var isNotFound: Bool { code == MDB_NOTFOUND }

    /// LMDB's text for the code (for POSIX codes, the system's `strerror`).
    public var message: String { String(cString: mdb_strerror(code)) }

    public var description: String { "\(operation): \(message)" }

    public static func == (lhs: LMDBError, rhs: LMDBError) -> Bool { lhs.code == rhs.code }
}

/// Turns an LMDB return code into a thrown ``LMDBError``.
@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if code != 0 { throw LMDBError(code: code, operation: operation()) }
}

import CLMDB

/// A handle to one database (a key-value table) inside an ``Environment``.
///
/// Handles are plain numbers, valid for the life of the environment once the transaction that
/// opened them has committed.
public struct Database: Sendable, Hashable {
    let dbi: MDB_dbi
}

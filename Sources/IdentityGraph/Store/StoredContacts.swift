/// Operations on a data directory from outside the engine that serves it: they open the store
/// read-only, so they are safe while a server (another process) is running on it.
///
/// LMDB forbids opening one store twice in one process; inside a process that runs an engine on
/// the directory, use ``IdentityEngine/snapshot(to:)`` and ``IdentityEngine/allContacts()``.
public enum StoredContacts {
    /// Every Contact row of the store in `dataDirectory`, in id order, as one consistent read.
    public static func read(dataDirectory: String) throws(StorageError) -> [Contact] {
        try ContactStore.readContents(in: dataDirectory).contacts
    }

    /// Every row, link and keep-apart rule of the store in `dataDirectory`, as one consistent read.
    public static func readContents(dataDirectory: String) throws(StorageError) -> StoreContents {
        try ContactStore.readContents(in: dataDirectory)
    }

    /// A bare cursor scan of the Contact rows, links and keep-apart rules: every key and value is
    /// touched, nothing decoded. Returns the rows and bytes seen. The floor that restart and export are
    /// measured against in `benchmarks/run.sh`.
    public static func scan(dataDirectory: String) throws(StorageError) -> (rows: Int, bytes: Int) {
        try ContactStore.scan(in: dataDirectory)
    }

    /// Writes a consistent, compacted copy of the store in `dataDirectory` into `output`, which
    /// must not exist or be an empty directory. The copy holds exactly what was committed when the
    /// copy began; `identity-graph serve --data-dir OUTPUT` starts from it.
    public static func snapshot(dataDirectory: String, to output: String) throws(StorageError) {
        try ContactStore.snapshot(of: dataDirectory, to: output)
    }
}

/// What a store holds besides its change feed.
public struct StoreContents: Sendable, Hashable {
    /// Every Contact row, tombstones included, in id order.
    public var contacts: [Contact] = []
    /// The links, oldest first.
    public var links: [StoredPair] = []
    /// The keep-apart rules, oldest first.
    public var keepApart: [StoredPair] = []

    public init(contacts: [Contact] = [], links: [StoredPair] = [], keepApart: [StoredPair] = []) {
        self.contacts = contacts
        self.links = links
        self.keepApart = keepApart
    }
}

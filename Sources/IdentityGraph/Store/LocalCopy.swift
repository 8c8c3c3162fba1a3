import Foundation
import LMDB

/// A cluster server's local copy (SPEC.md section 17) as cluster mode handles it whole: where it stands
/// in the cluster's log, whether it is empty, and installing a checkpoint as the store of an empty data
/// directory. A checkpoint is the file a snapshot writes (``IdentityEngine/snapshot(to:)``): the
/// store's rows, links, rules, change events and log position, as one consistent moment.
public enum LocalCopy {
    /// Where a store stands: its newest change event and the newest log batch it holds.
    public struct Position: Sendable, Hashable {
        public var seq: UInt64
        public var logPosition: UInt64
        /// Contact rows, erased ones included.
        public var contacts: Int
    }

    /// The store file of a data directory.
    public static func storeFile(in directory: String) -> String { directory + "/data.mdb" }

    /// The position of the store in `directory` (read-only, so a server may be writing it), or `nil`
    /// when the directory holds no store.
    public static func position(of directory: String) throws(StorageError) -> Position? {
        guard FileManager.default.fileExists(atPath: storeFile(in: directory)) else { return nil }
        do {
            return try ContactStore.withReadOnlyEnvironment(directory) { environment in
                try environment.read { transaction in
                    var position = Position(seq: 0, logPosition: 0, contacts: 0)
                    if let rows = try? transaction.openDatabase(named: "contacts") {
                        position.contacts = try transaction.count(in: rows)
                    }
                    if let changes = try? transaction.openDatabase(named: "changes"),
                        let last = try transaction.last(in: changes), last.key.count == 8
                    {
                        position.seq = last.key.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
                    }
                    if let meta = try? transaction.openDatabase(named: "meta") {
                        let key = withUnsafeBytes(of: ContactStore.logPositionKey.bigEndian) { Array($0) }
                        if let value = try transaction.value(forKey: key, in: meta), value.count == 8 {
                            position.logPosition = value.withUnsafeBytes {
                                UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self))
                            }
                        }
                    }
                    return position
                }
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.cannotOpen, "cannot read the store in \(directory): \(error)")
        }
    }

    /// Whether `directory` holds no store, or one with no contact, no change event and no log batch
    /// (what a server that could not reach the cluster at its first start leaves behind).
    public static func isEmpty(_ directory: String) throws(StorageError) -> Bool {
        guard let position = try position(of: directory) else { return true }
        return position.contacts == 0 && position.seq == 0 && position.logPosition == 0
    }

    // MARK: - A join's checkpoint on its way to the disk

    /// The file that says a join's checkpoint may not all be on disk yet. A join writes the checkpoint
    /// without waiting for the disk, installs it and starts serving; a thread syncs the store file and
    /// only then removes this marker (``finishJoin(in:)``). So `/healthz` does not wait for a sync of
    /// the whole store, and a crash before the sync leaves the marker, which makes the next start throw
    /// the store away and join again (``discardUnfinishedJoin(in:)``): its file may have holes.
    public static let unfinishedJoinMarker = ".join-unsynced"

    /// Whether `directory` holds a join's checkpoint that may not all be on disk.
    public static func hasUnfinishedJoin(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/" + unfinishedJoinMarker)
    }

    /// Leaves the marker of a join in `directory`, synced, before the checkpoint is written there.
    public static func beginJoin(in directory: String) throws(StorageError) {
        let path = directory + "/" + unfinishedJoinMarker
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0, fsync(descriptor) == 0 else {
            if descriptor >= 0 { close(descriptor) }
            throw StorageError(.cannotOpen, "cannot create \(path): errno \(errno)")
        }
        close(descriptor)
        try StoreFiles.syncDirectory(directory)
    }

    /// Syncs the store file a join installed in `directory`, then removes the join's marker (synced):
    /// from then on a crash leaves the whole store.
    public static func finishJoin(in directory: String) throws(StorageError) {
        let file = storeFile(in: directory)
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageError(.cannotOpen, "cannot open \(file): errno \(errno)") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StorageError(.unavailable, "cannot sync \(file): errno \(errno)") }
        // The rename that installed the store, on disk before the marker goes.
        try StoreFiles.syncDirectory(directory)
        try removeMarker(in: directory)
    }

    /// When a join in `directory` did not finish (its marker is there), deletes the store, its lock
    /// file and its index image, then the marker, so that the directory is empty again and the next join
    /// starts over. Returns whether it did.
    @discardableResult
    public static func discardUnfinishedJoin(in directory: String) throws(StorageError) -> Bool {
        guard hasUnfinishedJoin(directory) else { return false }
        for name in ["data.mdb", "lock.mdb", IndexImage.fileName, ".checkpoint-download"] {
            try StoreFiles.remove(directory + "/" + name)
        }
        try StoreFiles.syncDirectory(directory)
        try removeMarker(in: directory)
        return true
    }

    /// Deletes the join's marker, durably: what it guarded is on disk, or gone.
    private static func removeMarker(in directory: String) throws(StorageError) {
        try StoreFiles.remove(directory + "/" + unfinishedJoinMarker)
        try StoreFiles.syncDirectory(directory)
    }

    /// Makes `file`, a checkpoint's store file, the store of `directory`, which must be empty (see
    /// ``isEmpty(_:)``): it is checked to be a store first, and moved in with a rename. The file need
    /// not be synced: a join marks the directory first (``beginJoin(in:)``), and a crash before
    /// ``finishJoin(in:)`` leaves the marker, so the next start joins again. Returns the checkpoint's
    /// position. (The index image that came with the checkpoint goes to the engine in memory,
    /// ``IdentityEngine/Options/image``: written here, it would only be deleted by the engine's first write.)
    public static func install(_ file: String, into directory: String) throws(StorageError) -> Position {
        let files = FileManager.default
        let staging = directory + "/.checkpoint-check"
        try? files.removeItem(atPath: staging)
        defer { try? files.removeItem(atPath: staging) }
        do {
            try files.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try files.moveItem(atPath: file, toPath: storeFile(in: staging))
        } catch {
            throw StorageError(.cannotOpen, "cannot stage the checkpoint in \(staging): \(error.localizedDescription)")
        }
        guard let position = try position(of: staging) else {
            throw StorageError(.corrupt, "the checkpoint holds no store")
        }
        guard try isEmpty(directory) else {
            throw StorageError(.cannotOpen, "\(directory) holds a store already; a checkpoint goes only into an empty one")
        }
        // (An empty store's image, of a clean stop before this join, would only be refused as stale.)
        for name in ["data.mdb", "lock.mdb", IndexImage.fileName] { try? files.removeItem(atPath: directory + "/" + name) }
        guard rename(storeFile(in: staging), storeFile(in: directory)) == 0 else {
            throw StorageError(.cannotOpen, "cannot move the checkpoint into \(directory): errno \(errno)")
        }
        return position
    }

    /// Builds the index of the store in `directory`, a snapshot no server has open, and saves it there as
    /// the store's index image (``IndexImage``), as a clean stop would: the image that a checkpoint carries
    /// beside its store file, so that a server that joins loads it instead of rebuilding the index. Holds
    /// the whole graph in memory while it runs (about as much as the serving server's). Returns the image's
    /// path, `nil` when the store is of an older format (its upgrade would rewrite it).
    public static func saveIndexImage(in directory: String) throws(StorageError) -> String? {
        let store = try ContactStore(directory: directory, durable: false)
        guard !store.needsLinkUpgrade else { return nil }
        var graph = ContactGraph()
        try store.load(into: &graph)
        try IndexImage.save(graph, stamp: try store.indexStamp(), in: directory)
        return IndexImage.path(in: directory)
    }
}

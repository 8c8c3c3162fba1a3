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

    /// Makes `file`, a checkpoint's store file, the store of `directory`, which must be empty (see
    /// ``isEmpty(_:)``): it is checked to be a store first, and moved in with a rename, so that a crash
    /// leaves either the empty store or the whole checkpoint. Returns the checkpoint's position.
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
        for name in ["data.mdb", "lock.mdb"] { try? files.removeItem(atPath: directory + "/" + name) }
        guard rename(storeFile(in: staging), storeFile(in: directory)) == 0 else {
            throw StorageError(.cannotOpen, "cannot move the checkpoint into \(directory): errno \(errno)")
        }
        return position
    }
}

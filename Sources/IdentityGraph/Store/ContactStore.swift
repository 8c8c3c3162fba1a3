import Foundation
import LMDB

/// Contact rows in LMDB: one database of rows keyed by id, one of metadata.
///
/// Only the engine's writer thread writes through a store once it is open; the memory map is
/// resized only there, between transactions, which is what LMDB requires of a resize.
///
/// `@unchecked Sendable`: after opening, writes happen on the writer thread alone; ``copy(to:)``
/// may run on another thread, which LMDB allows (it reads in its own transaction), and the one
/// operation that must not overlap it, resizing the map, waits for it through `resizeGate`.
final class ContactStore: @unchecked Sendable {
    /// The first map size of a new store; it doubles whenever it fills.
    static let initialMapSize = 64 << 20
    private static let formatKey = Array("format".utf8)
    private static let formatValue = Array("identity-graph contacts v1".utf8)

    let environment: Environment
    private let rows: Database
    private let meta: Database
    private let resizeGate = Protected(())
    /// How many of the next writes fail without touching LMDB: a seam for tests of the engine's
    /// failure path, since a real full disk cannot be arranged portably.
    let injectedFailures = Protected(0)

    /// Opens (creating when needed) the store in `directory`.
    init(directory: String, mapSize: Int = ContactStore.initialMapSize, durable: Bool = true) throws(StorageError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StorageError(.cannotOpen, "cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        do {
            environment = try Environment(
                path: directory,
                options: .init(mapSize: mapSize, maxDatabases: 4, noSync: !durable)
            )
            if environment.mapSize < environment.usedBytes * 2 {
                try environment.setMapSize(environment.usedBytes * 2)
            }
            (rows, meta) = try environment.write { transaction in
                let rows = try transaction.openDatabase(named: "contacts", create: true)
                let meta = try transaction.openDatabase(named: "meta", create: true)
                if let format = try transaction.value(forKey: Self.formatKey, in: meta) {
                    guard format == Self.formatValue else {
                        throw StorageError(.corrupt, "\(directory) holds data of an unknown format "
                            + "(\(String(decoding: format, as: UTF8.self)))")
                    }
                } else {
                    try transaction.put(Self.formatValue, forKey: Self.formatKey, in: meta)
                }
                return (rows, meta)
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.cannotOpen, "cannot open the store in \(directory): \(error)")
        }
    }

    /// Reads every row, in id order, into `graph`.
    func load(into graph: inout ContactGraph) throws(StorageError) {
        do {
            try environment.read { transaction in
                graph.reserve(contacts: try transaction.count(in: rows))
                try transaction.forEach(in: rows) { key, value in
                    guard let id = ContactRecord.id(fromKey: key), let row = ContactRecord.decodeFields(value) else {
                        throw StorageError(.corrupt, "an unreadable row (key \(Array(key))) in the store")
                    }
                    try graph.load(id: id, row)
                    return true
                }
            }
            // The index now lives in memory; the pages read to build it need not stay resident.
            environment.releaseMappedPages()
        } catch let error as StorageError {
            throw error
        } catch let error as ContactGraph.LoadError {
            throw StorageError(.corrupt, "contact \(error.id) cannot be loaded: \(error.reason); "
                + "run `identity-graph check` on the data directory")
        } catch {
            throw StorageError(.corrupt, "cannot read the store: \(error)")
        }
    }

    /// Every row of the store in `directory`, in id order, read in one read-only transaction, so a
    /// running server may keep writing meanwhile. For `identity-graph check` and tests.
    static func readContacts(in directory: String) throws(StorageError) -> [Contact] {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else {
            throw StorageError(.cannotOpen, "no store in \(directory) (no data.mdb)")
        }
        do {
            let environment = try Environment(path: directory, options: .init(maxDatabases: 4, readOnly: true))
            return try environment.read { transaction in
                let rows = try transaction.openDatabase(named: "contacts")
                var contacts: [Contact] = []
                try transaction.forEach(in: rows) { key, value in
                    guard let id = ContactRecord.id(fromKey: key), let contact = ContactRecord.decode(id: id, value)
                    else {
                        throw StorageError(.corrupt, "an unreadable row (key \(Array(key))) in the store")
                    }
                    contacts.append(contact)
                    return true
                }
                return contacts
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.cannotOpen, "cannot read the store in \(directory): \(error)")
        }
    }

    /// Writes `contacts` (new and changed rows) in one transaction and commits it; with the default
    /// durable settings the commit has reached the disk when this returns. A full map is grown and
    /// the transaction retried; any other failure throws, and nothing of the batch is kept.
    func write(_ contacts: [Contact]) throws(StorageError) {
        var batch = RowBatch()
        for contact in contacts { batch.append(id: contact.id) { ContactRecord.encode(contact, into: &$0) } }
        try write(batch)
    }

    /// Writes the rows of `batch` in one transaction and commits it; see ``write(_:)-([Contact])``.
    func write(_ batch: RowBatch) throws(StorageError) {
        let injected = injectedFailures.withLock { remaining in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        if injected { throw StorageError(.unavailable, "cannot write to the store: injected failure") }
        while true {
            do {
                try environment.write { transaction in
                    try batch.forEach { key, record in try transaction.put(record, forKey: key, in: rows) }
                }
                return
            } catch let error as LMDBError where error.isMapFull {
                do {
                    try resizeGate.withLock { _ in
                        try environment.setMapSize(environment.mapSize * 2)
                    }
                } catch {
                    throw StorageError(.unavailable, "cannot grow the store's map: \(error)")
                }
            } catch {
                throw StorageError(.unavailable, "cannot write to the store: \(error)")
            }
        }
    }

    /// Flushes everything to disk (a no-op cost with durable commits, needed after relaxed ones).
    func sync() throws(StorageError) {
        do {
            try environment.sync()
        } catch {
            throw StorageError(.unavailable, "cannot flush the store: \(error)")
        }
    }

    /// Writes a consistent, compacted copy of this open store into the empty directory `output`
    /// while writes go on; see ``snapshot(of:to:)``.
    func copy(to output: String) throws(StorageError) {
        try Self.prepareSnapshotDirectory(output)
        do {
            try resizeGate.withLock { _ in try environment.copy(to: output, compacting: true) }
        } catch {
            throw StorageError(.cannotOpen, "cannot snapshot into \(output): \(error)")
        }
    }

    /// Writes a consistent, compacted copy of the store in `directory` (live or not) into `output`,
    /// which must not exist or be an empty directory. The copy holds exactly what was committed when
    /// it began, and `identity-graph serve --data-dir OUTPUT` can start from it.
    static func snapshot(of directory: String, to output: String) throws(StorageError) {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else {
            throw StorageError(.cannotOpen, "no store in \(directory) (no data.mdb)")
        }
        try prepareSnapshotDirectory(output)
        do {
            let environment = try Environment(path: directory, options: .init(maxDatabases: 4, readOnly: true))
            do {
                try environment.copy(to: output, compacting: true)
            } catch let error where error.isMapResized {
                // The live server grew its map since we opened: adopt the new size and copy again.
                try? FileManager.default.removeItem(atPath: output + "/data.mdb")
                try environment.setMapSize(0)
                try environment.copy(to: output, compacting: true)
            }
        } catch {
            throw StorageError(.cannotOpen, "cannot snapshot \(directory) into \(output): \(error)")
        }
    }

    private static func prepareSnapshotDirectory(_ output: String) throws(StorageError) {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        if files.fileExists(atPath: output, isDirectory: &isDirectory) {
            let entries = (try? files.contentsOfDirectory(atPath: output)) ?? []
            guard isDirectory.boolValue, entries.isEmpty else {
                throw StorageError(.cannotOpen, "\(output) exists and is not an empty directory")
            }
        } else {
            do {
                try files.createDirectory(atPath: output, withIntermediateDirectories: true)
            } catch {
                throw StorageError(.cannotOpen, "cannot create \(output): \(error.localizedDescription)")
            }
        }
    }
}

import Foundation
import LMDB

/// Contact rows in LMDB: one database of rows keyed by id, one each of links, keep-apart rules and
/// change events (see ``PairRecord`` and ``ChangeEvent``), and one of metadata.
///
/// Format versions: v1 stores (written before links existed) hold rows only; opening one for
/// writing marks it for the upgrade of ``needsLinkUpgrade``, which the engine completes with
/// ``completeUpgrade(_:)`` in one transaction, so a store is either wholly v1 or wholly v2.
///
/// Only the engine's writer thread writes through a store once it is open; the memory map is
/// resized only there, between transactions, which is what LMDB requires of a resize.
///
/// `@unchecked Sendable`: after opening, writes happen on the writer thread alone; ``copy(to:)`` and
/// half of ``load(into:)`` may run on other threads, which LMDB allows (each reads in its own
/// transaction). The one operation that must not overlap a copy, resizing the map, waits for it
/// through `resizeGate`.
final class ContactStore: @unchecked Sendable {
    /// The first map size of a new store; it doubles whenever it fills.
    static let initialMapSize = 64 << 20
    private static let formatKey = Array("format".utf8)
    static let formatV1 = Array("identity-graph contacts v1".utf8)
    private static let formatValue = Array("identity-graph contacts v2".utf8)
    /// The key, in `meta`, of the newest cluster log batch this store holds (SPEC.md section 17):
    /// written in the commit that applies the batch, so the copy and its position never disagree.
    static let logPositionKey: UInt64 = 0x6C6F_6750_6F73_0001
    /// The newest cluster log batch the store holds, 0 for none (a store that never joined a cluster).
    /// Written by the writer's thread alone, read once the writer is idle (a rebuild) or at open.
    private(set) var logPosition: UInt64 = 0
    static let maxDatabases: UInt32 = 8

    let environment: Environment
    private let rows: Database
    private let linkTable: Database
    private let ruleTable: Database
    private let changeTable: Database
    private let meta: Database
    /// The store was written by the release before links; see the type's documentation.
    private(set) var needsLinkUpgrade = false
    /// How many change events to keep (the newest); older ones are deleted as new ones arrive.
    let changesRetained: UInt64
    /// The newest and oldest stored change events (0 when none), kept by the writer thread alone.
    private(set) var newestSeq: UInt64 = 0
    private(set) var oldestSeq: UInt64 = 0
    private let resizeGate = NSLock()
    /// How many of the next writes fail without touching LMDB: a seam for tests of the engine's
    /// failure path, since a real full disk cannot be arranged portably.
    let injectedFailures = Protected(0)
    /// The data directory, which also holds the index image (``IndexImage``).
    let directory: String
    /// Whether the index image is gone: it is deleted before the first write, on the writer's
    /// thread, so that no later start can load an index older than the store.
    private var imageDiscarded = false

    /// Opens (creating when needed) the store in `directory`.
    init(
        directory: String, mapSize: Int = ContactStore.initialMapSize, durable: Bool = true,
        changesRetained: UInt64 = 10_000_000
    ) throws(StorageError) {
        self.changesRetained = max(changesRetained, 1)
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StorageError(.cannotOpen, "cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        do {
            environment = try Environment(
                path: directory,
                options: .init(mapSize: mapSize, maxDatabases: Self.maxDatabases, noSync: !durable)
            )
            if environment.mapSize < environment.usedBytes * 2 {
                try environment.setMapSize(environment.usedBytes * 2)
            }
            var upgrade = false
            (rows, linkTable, ruleTable, changeTable, meta) = try environment.write { transaction in
                let rows = try transaction.openDatabase(named: "contacts", create: true)
                let links = try transaction.openDatabase(named: "links", create: true)
                let rules = try transaction.openDatabase(named: "keepApart", create: true)
                let changes = try transaction.openDatabase(named: "changes", create: true)
                let meta = try transaction.openDatabase(named: "meta", create: true)
                if let format = try transaction.value(forKey: Self.formatKey, in: meta) {
                    if format == Self.formatV1 {
                        upgrade = true
                    } else if format != Self.formatValue {
                        throw StorageError(.corrupt, "\(directory) holds data of an unknown format "
                            + "(\(String(decoding: format, as: UTF8.self)))")
                    }
                } else {
                    try transaction.put(Self.formatValue, forKey: Self.formatKey, in: meta)
                }
                return (rows, links, rules, changes, meta)
            }
            needsLinkUpgrade = upgrade
            try environment.read { transaction in
                try transaction.forEach(in: changeTable) { key, _ in
                    oldestSeq = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                    return false
                }
                if let last = try transaction.last(in: changeTable) {
                    newestSeq = last.key.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
                }
                let positionKey = withUnsafeBytes(of: Self.logPositionKey.bigEndian) { Array($0) }
                if let position = try transaction.value(forKey: positionKey, in: meta), position.count == 8 {
                    logPosition = position.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
                }
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.cannotOpen, "cannot open the store in \(directory): \(error)")
        }
    }

    /// Reads every row, in id order, into `graph`, on two threads: the emails on a thread of their
    /// own (``intern(_:)``), the phone numbers, profiles and times on the caller's (about as much work
    /// each: emails are the longer values; a third thread for the phone numbers measured slower on
    /// two cores, each thread reading every row). The callers load with the writer idle: at open, and
    /// on a fenced leader's rebuild.
    func load(into graph: inout ContactGraph) throws(StorageError) {
        do {
            try environment.read { transaction in
                let contacts = try transaction.count(in: rows)
                graph.reserve(contacts: contacts)
                let emails = EmailLoad(EmailColumn(table: graph.emails, contacts: contacts))
                // (The table is the column's now: not shared, so not copied as it grows.)
                graph.emails = ValueTable()
                Thread { self.intern(emails) }.start()
                // This thread stops at the first row it cannot load, and still waits for the other.
                var stopped: (any Error)?
                do {
                    try loadRowsButEmails(in: transaction, into: &graph)
                } catch {
                    stopped = error
                }
                emails.done.wait()
                // (Out of the box, so that the graph holds the column's arrays alone.)
                let column = emails.column!
                emails.column = nil
                // Were a commit to land between the two threads' transactions, their halves of the graph
                // would disagree.
                if let snapshot = emails.snapshot, snapshot != transaction.snapshot {
                    throw StorageError(.unavailable, "the store changed while the index was rebuilt from it")
                }
                // The first broken row wins, whichever thread found it: rows up to where both stopped are
                // checked for their emails before either thread's own error is reported.
                if let problem = graph.adopt(column) { throw problem }
                if let stopped { throw stopped }
                if let failure = emails.failure {
                    throw failure as? StorageError
                        ?? StorageError(.unavailable, "cannot read the store on the rebuild's other thread: \(failure)")
                }
                for (table, isRule) in [(linkTable, false), (ruleTable, true)] {
                    try Self.forEachPair(in: transaction, table, rule: isRule) { number, at, email, phone in
                        try graph.loadPair(number, email: email, phone: phone, at: at, rule: isRule)
                    }
                }
            }
            // The index now lives in memory; the pages read to build it need not stay resident (about
            // as many bytes as the index itself). No transaction may be open meanwhile: a reader of
            // the change feed holds the gate.
            try resizeGate.withLock { try environment.releaseMappedPages() }
        } catch let error as StorageError {
            throw error
        } catch let error as ContactGraph.LoadError {
            let subject = error.id == 0 ? "the store" : "contact \(error.id)"
            throw StorageError(.corrupt, "\(subject) cannot be loaded: \(error.reason); "
                + "run `identity-graph check` on the data directory")
        } catch {
            throw StorageError(.corrupt, "cannot read the store: \(error)")
        }
    }

    /// Rows are hashed this many at a time before they are loaded, so that the cache misses of their
    /// slots overlap (see ``ValueTable/prefetch(_:)``); the rows' text stays valid in LMDB's map for the
    /// whole transaction.
    private static let rowsAhead = 16

    /// The rebuild's work but the emails: every row's phone number, profile and times.
    private func loadRowsButEmails(in transaction: Transaction, into graph: inout ContactGraph) throws {
        var pending: [(id: Int, row: ContactRecord.Fields, hash: UInt64?)] = []
        pending.reserveCapacity(Self.rowsAhead)
        func loadPending() throws(ContactGraph.LoadError) {
            for entry in pending { try graph.load(id: entry.id, entry.row, emails: false, phoneHash: entry.hash) }
            pending.removeAll(keepingCapacity: true)
        }
        try Self.forEachRow(in: transaction, rows) { id, row in
            pending.append((id, row, graph.prefetchPhone(row)))
            if pending.count == Self.rowsAhead { try loadPending() }
        }
        try loadPending()
    }

    /// The email half of a rebuild, on its own thread and in its own read transaction: every live
    /// row's email interned in `load`'s column, which it hands back through `load` when done, with what
    /// stopped it if it did not read every row.
    private func intern(_ load: EmailLoad) {
        // Taken out of the box, so that the column's arrays are not shared (copied) while they grow.
        var column = load.column!
        load.column = nil
        defer {
            load.column = column
            load.done.signal()
        }
        var pending: [(id: Int, email: UnsafeRawBufferPointer?, hash: UInt64)] = []
        pending.reserveCapacity(Self.rowsAhead)
        var next = 1
        func addPending() {
            for entry in pending { column.add(id: entry.id, email: entry.email, hash: entry.hash) }
            pending.removeAll(keepingCapacity: true)
        }
        do {
            try environment.read { transaction in
                load.snapshot = transaction.snapshot
                // The rows read before one that stops the thread are added all the same, so that the
                // caller can check them (the first broken row is reported, whichever thread found it).
                defer { addPending() }
                do {
                    try Self.forEachRow(in: transaction, rows) { id, row in
                        // Rows that are not dense end the column; the other thread reports them.
                        guard id == next else { throw EmailLoad.Stop() }
                        next += 1
                        let email = row.deletedAt == nil ? row.email : nil
                        pending.append((id, email, email.map { column.prefetch($0) } ?? 0))
                        if pending.count == Self.rowsAhead { addPending() }
                    }
                } catch is EmailLoad.Stop {}
            }
        } catch {
            load.failure = error
        }
    }

    // MARK: - Reading stored rows and pairs

    /// Calls `body` with every row of `table` (the contacts), in id order, its text still in LMDB's
    /// memory: the one decoder of rows that loading, ``readContents(in:)`` and export share.
    static func forEachRow(
        in transaction: Transaction, _ table: Database, _ body: (Int, ContactRecord.Fields) throws -> Void
    ) throws {
        try transaction.forEach(in: table) { key, value in
            guard let id = ContactRecord.id(fromKey: key), let row = ContactRecord.decodeFields(value) else {
                throw StorageError(.corrupt, "an unreadable row (key \(Array(key))) in the store")
            }
            try body(id, row)
            return true
        }
    }

    /// Calls `body` with every link (`rule` false) or keep-apart rule of `table`, oldest first: its
    /// number, its time in milliseconds, and its email and phone number in LMDB's memory. The one
    /// decoder of pairs that loading, ``readContents(in:)`` and export share.
    static func forEachPair(
        in transaction: Transaction, _ table: Database, rule: Bool,
        _ body: (UInt64, Int64, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        try transaction.forEach(in: table) { key, value in
            guard key.count == 8, let pair = PairRecord.decode(value) else {
                throw StorageError(.corrupt, "an unreadable \(rule ? "keep-apart rule" : "link") in the store")
            }
            try body(UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)), pair.at, pair.email, pair.phone)
            return true
        }
    }

    /// Opens the store in `directory` read-only, so that a running server (another process) may keep
    /// writing, and runs `body` with it. A server that grows its map meanwhile makes LMDB refuse the
    /// next transaction (`MDB_MAP_RESIZED`): the new size is adopted and `body` runs again, so it must
    /// do nothing visible before its transaction begins. Errors of `body` are rethrown; failing to
    /// open becomes a ``StorageError``. The one way reads from outside a server open a store:
    /// ``readContents(in:)``, ``scan(in:)``, ``snapshot(of:to:)`` and export.
    static func withReadOnlyEnvironment<T>(_ directory: String, _ body: (Environment) throws -> T) throws -> T {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else {
            throw StorageError(.cannotOpen, "no store in \(directory) (no data.mdb)")
        }
        let environment: Environment
        do {
            environment = try Environment(path: directory, options: .init(maxDatabases: Self.maxDatabases, readOnly: true))
        } catch {
            throw StorageError(.cannotOpen, "cannot open the store in \(directory): \(error)")
        }
        var resizes = 0
        while true {
            do {
                return try body(environment)
            } catch let error as LMDBError where error.isMapResized && resizes < 8 {
                resizes += 1
                do {
                    try environment.setMapSize(0)
                } catch {
                    throw StorageError(.cannotOpen, "cannot read the store in \(directory): \(error)")
                }
            }
        }
    }

    /// Runs `body` in one read-only transaction on the store in `directory`, so a running server may
    /// keep writing meanwhile; LMDB's and the body's errors become a ``StorageError``.
    private static func reading<T>(
        _ directory: String, _ body: (Transaction) throws -> T
    ) throws(StorageError) -> T {
        do {
            return try withReadOnlyEnvironment(directory) { try $0.read(body) }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.cannotOpen, "cannot read the store in \(directory): \(error)")
        }
    }

    /// A bare cursor scan of the rows, links and rules: see ``StoredContacts/scan(dataDirectory:)``.
    static func scan(in directory: String) throws(StorageError) -> (rows: Int, bytes: Int) {
        try reading(directory) { transaction in
            var rows = 0
            var sum = 0
            for name in ["contacts", "links", "keepApart"] {
                guard let table = try? transaction.openDatabase(named: name) else { continue }
                try transaction.forEach(in: table) { key, value in
                    rows += 1
                    // Read every byte, as a decoder would, so the pages are really brought in.
                    for byte in key { sum &+= Int(byte) }
                    for byte in value { sum &+= Int(byte) }
                    return true
                }
            }
            return (rows, sum & 0x7fff_ffff)
        }
    }

    /// Every row, link and keep-apart rule of the store in `directory` (rows in id order, links and
    /// rules oldest first), read in one read-only transaction, so a running server may keep writing
    /// meanwhile. For `identity-graph check`, export and tests.
    static func readContents(in directory: String) throws(StorageError) -> StoreContents {
        try reading(directory) { transaction in
            let rows = try transaction.openDatabase(named: "contacts")
            var contents = StoreContents()
            try forEachRow(in: transaction, rows) { id, row in
                guard let contact = ContactRecord.contact(id: id, row) else {
                    throw StorageError(.corrupt, "row \(id) of the store holds text that is not UTF-8")
                }
                contents.contacts.append(contact)
            }
            for (name, isRule) in [("links", false), ("keepApart", true)] {
                // A v1 store has neither table yet.
                guard let table = try? transaction.openDatabase(named: name) else { continue }
                try forEachPair(in: transaction, table, rule: isRule) { _, at, email, phone in
                    guard let email = String(validating: email, as: UTF8.self),
                        let phone = String(validating: phone, as: UTF8.self)
                    else {
                        throw StorageError(.corrupt, "an unreadable \(isRule ? "keep-apart rule" : "link") in the store")
                    }
                    let stored = StoredPair(email: email, phoneNumber: phone, at: Timestamp(millisecondsSince1970: at))
                    if isRule { contents.keepApart.append(stored) } else { contents.links.append(stored) }
                }
            }
            return contents
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
    /// `appending`: every key of the batch is larger than any of its table (a restore into an empty
    /// store), so LMDB appends them without a search and fills its pages.
    func write(_ batch: RowBatch, appending: Bool = false) throws(StorageError) {
        try write(CollectionOfOne(batch), appending: appending)
    }

    /// Writes the rows of `batches`, in order, in one transaction and commits it: a cluster member's
    /// local copy catching up with several batches of the log at once, for one fsync.
    func write(_ batches: some Collection<RowBatch>, appending: Bool = false) throws(StorageError) {
        let injected = injectedFailures.withLock { remaining in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        if injected { throw StorageError(.unavailable, "cannot write to the store: injected failure") }
        discardIndexImage()
        while true {
            do {
                var position: UInt64?
                let (newest, oldest) = try environment.write { transaction in
                    var seqs = (newestSeq, oldestSeq)
                    for batch in batches {
                        seqs = try apply(batch, in: transaction, from: seqs, appending: appending, logPosition: &position)
                    }
                    return seqs
                }
                (newestSeq, oldestSeq) = (newest, oldest)
                if let position { logPosition = position }
                return
            } catch let error as LMDBError where error.isMapFull {
                do {
                    try resizeGate.withLock {
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

    /// Applies the entries of `batch` in `transaction`, then deletes the change events beyond the
    /// retention; returns the newest and oldest stored seq that the commit will leave, given `seqs`,
    /// the newest and oldest before it (the store's, or an earlier batch's of the same transaction).
    private func apply(
        _ batch: RowBatch, in transaction: Transaction, from seqs: (UInt64, UInt64)? = nil, appending: Bool = false,
        logPosition: inout UInt64?
    ) throws -> (UInt64, UInt64) {
        var (newest, oldest) = seqs ?? (newestSeq, oldestSeq)
        try batch.forEach { table, key, value in
            let database = switch table {
            case .contacts: rows
            case .links: linkTable
            case .rules: ruleTable
            case .changes: changeTable
            case .meta: meta
            }
            if let value {
                // Events arrive in seq order, after every stored one: LMDB can append them.
                try transaction.put(value, forKey: key, in: database, flags: appending || table == .changes ? .append : [])
                if table == .changes {
                    newest = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                    if oldest == 0 { oldest = newest }
                } else if table == .meta, value.count == 8,
                    UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)) == Self.logPositionKey
                {
                    logPosition = UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))
                }
            } else {
                try transaction.delete(key: Array(key), in: database)
            }
        }
        if newest > 0, newest - oldest + 1 > changesRetained {
            let keepFrom = newest - changesRetained + 1
            while oldest < keepFrom {
                try transaction.delete(key: ContactRecord.key(Int(oldest)), in: changeTable)
                oldest += 1
            }
        }
        return (newest, oldest)
    }

    /// Grows the map, when needed, so that about `bytes` more of data fit without the retry a full map
    /// costs (which redoes the whole transaction): for a restore, written in one transaction.
    func reserve(bytes: Int) throws(StorageError) {
        let wanted = environment.usedBytes + bytes * 2
        guard environment.mapSize < wanted else { return }
        do {
            try resizeGate.withLock { try environment.setMapSize(wanted) }
        } catch {
            throw StorageError(.unavailable, "cannot grow the store's map: \(error)")
        }
    }

    /// Writes `batch` (the links derived for a v1 store) and marks the store as v2, in one commit.
    func completeUpgrade(_ batch: RowBatch) throws(StorageError) {
        discardIndexImage()
        do {
            try environment.write { transaction in
                var position: UInt64?
                _ = try apply(batch, in: transaction, logPosition: &position)
                try transaction.put(Self.formatValue, forKey: Self.formatKey, in: meta)
            }
            needsLinkUpgrade = false
        } catch {
            throw StorageError(.unavailable, "cannot upgrade the store: \(error)")
        }
    }

    /// Deletes the index image before the store changes for the first time since it opened.
    private func discardIndexImage() {
        guard !imageDiscarded else { return }
        IndexImage.discard(in: directory)
        imageDiscarded = true
    }

    /// What an index image of the store as it is now is stamped with (see ``IndexImage``).
    func indexStamp() throws(StorageError) -> IndexImage.Stamp {
        do {
            let rowCount = try environment.read { try $0.count(in: rows) }
            return IndexImage.Stamp(
                newestSeq: newestSeq, logPosition: logPosition,
                transaction: UInt64(environment.lastTransactionID), rows: UInt64(rowCount)
            )
        } catch {
            throw StorageError(.unavailable, "cannot read the store's state: \(error)")
        }
    }

    /// The stored change events with `seq` greater than `after`, at most `limit` of them, ascending,
    /// and the oldest seq stored (0 when there is none). Reads in its own transaction, beside the
    /// writer; the map is not resized meanwhile.
    func changes(after: UInt64, limit: Int) throws(StorageError) -> (events: [ChangeEvent], oldest: UInt64) {
        do {
            return try resizeGate.withLock {
                try environment.read { transaction in
                    var oldest: UInt64 = 0
                    try transaction.forEach(in: changeTable) { key, _ in
                        oldest = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                        return false
                    }
                    var events: [ChangeEvent] = []
                    guard limit > 0, after < UInt64(Int64.max) else { return (events, oldest) }
                    let start = withUnsafeBytes(of: (after + 1).bigEndian) { Array($0) }
                    try transaction.forEach(in: changeTable, from: start) { key, value in
                        let seq = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                        guard let event = ChangeEvent(seq: seq, stored: value) else {
                            throw StorageError(.corrupt, "an unreadable change event (seq \(seq)) in the store")
                        }
                        events.append(event)
                        return events.count < limit
                    }
                    return (events, oldest)
                }
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.unavailable, "cannot read the change feed: \(error)")
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
            try resizeGate.withLock { try environment.copy(to: output, compacting: true) }
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
            try withReadOnlyEnvironment(directory) { environment in
                // A copy refused for a resize may have left a partial file behind.
                try? FileManager.default.removeItem(atPath: output + "/data.mdb")
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

/// Hands a rebuild's email column to its thread and back (see ``ContactStore/load(into:)``).
/// `@unchecked Sendable`: the thread takes `column`, and writes it back, with `failure` and `snapshot`,
/// before it signals `done`; the caller reads them only after waiting for `done`.
private final class EmailLoad: @unchecked Sendable {
    var column: EmailColumn?
    /// What stopped the thread before the last row, if anything did (a row out of order does not).
    var failure: (any Error)?
    /// The snapshot the thread read (``LMDB/Transaction/snapshot``), `nil` if it could not begin.
    var snapshot: Int?
    let done = DispatchSemaphore(value: 0)

    init(_ column: EmailColumn) {
        self.column = column
    }

    /// Ends the email thread's scan at a row out of order.
    struct Stop: Error {}
}

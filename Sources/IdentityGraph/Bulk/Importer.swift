import Foundation

/// The work of one ``BulkImport``: the engine's core and the store, driven on one thread.
struct Importer {
    private var state: EngineState
    let store: ContactStore
    private let options: BulkImport.Options
    var summary = BulkImport.Summary()
    var onReject: (BulkImport.Rejection) -> Void = { _ in }
    var onProgress: (BulkImport.Progress) -> Void = { _ in }
    var shouldStop: () -> Bool = { false }
    var totalBytes = 0
    /// Bytes of the files done already.
    var bytesBefore = 0
    var startTime = 0.0
    private var lastProgress = 0.0
    /// Records applied since the last commit.
    private var sinceCommit = 0
    var stopped = false
    private let contactsBefore: Int
    private let seqBefore: UInt64

    /// A Contact record of the file being read, kept until the end of the file to join profiles.
    private struct TrackedContact {
        var id: Int
        var linkedId: Int
        var line: Int
        /// Value numbers in the graph, -1 for none.
        var email: Int32
        var phone: Int32
    }

    private var tracked: [TrackedContact] = []
    private var lastContactId = 0
    private var pendingRules: [(email: String, phone: String, line: Int, record: String?)] = []

    /// Opens the store and loads it as ``IdentityEngine/init(dataDirectory:options:)`` does.
    init(dataDirectory: String, options: BulkImport.Options) throws(BulkImport.Failure) {
        self.options = options
        do {
            store = try ContactStore(directory: dataDirectory)
            state = try EngineState.loading(store, guards: options.guards).state
        } catch {
            throw BulkImport.Failure(message: error.message, isUsage: false)
        }
        contactsBefore = state.graph.contactCount
        seqBefore = state.nextSeq
    }

    /// No contact and no change event, ever: an import of Contact records into it is a restore.
    var isEmptyStore: Bool { contactsBefore == 0 && seqBefore == 1 }

    // MARK: - Committing

    /// Commits the open batch: one LMDB transaction, one fsync.
    mutating func commit() throws(StorageError) {
        sinceCommit = 0
        guard let batch = state.takeBatch() else { return }
        try store.write(batch.rows)
        // No answer waits on a batch here: forget which profiles were pending before `committed`,
        // which would otherwise sift through them all only to keep none.
        state.pendingProfiles.removeAll(keepingCapacity: true)
        _ = state.committed(batch)
    }

    /// Commits the rest, flushes, and fills in the summary's counts.
    mutating func finish() throws(StorageError) {
        try commit()
        try store.sync()
        summary.contactsCreated = state.graph.contactCount - contactsBefore
        summary.merged = Int(state.nextSeq - seqBefore) - summary.contactsCreated
        summary.contacts = state.graph.contactCount
        summary.profiles = state.graph.profileCount
    }

    /// After each record: commits every `batchSize` records, polls for a stop and shows progress.
    @inline(__always)
    mutating func recordDone(bytesRead: Int) throws(StorageError) {
        summary.records += 1
        sinceCommit += 1
        if sinceCommit >= options.batchSize { try commit() }
        if summary.records & 1023 == 0 {
            if shouldStop() {
                stopped = true
                summary.outcome = .interrupted
            }
            let now = BulkImport.now()
            if now - lastProgress >= 0.25 {
                lastProgress = now
                onProgress(BulkImport.Progress(
                    records: summary.records, bytesRead: bytesBefore + bytesRead, totalBytes: totalBytes,
                    seconds: now - startTime
                ))
            }
        }
    }

    private mutating func reject(_ file: String, _ line: Int, _ reason: String, record: UnsafeRawBufferPointer?) {
        reject(BulkImport.Rejection(
            file: file, line: line, reason: reason, record: record.flatMap { String(validating: $0, as: UTF8.self) }
        ))
    }

    private mutating func reject(_ rejection: BulkImport.Rejection) {
        summary.rejected += 1
        onReject(rejection)
        if options.strict {
            stopped = true
            summary.outcome = .stoppedAtBadRecord(rejection)
        }
    }

    // MARK: - Identify

    /// Identify; returns why nothing usable was left, if nothing was.
    private mutating func identify(_ request: IdentifyRequest) -> String? {
        do {
            _ = try state.identify(request, canWrite: true)
            return nil
        } catch {
            if case .blocked(let reason) = error { return reason.detail }
            return "\(error)"
        }
    }

    // MARK: - NDJSON

    mutating func importNDJSON(_ path: String) throws {
        var reader = try LineReader(path: path, maximumLineBytes: options.maximumLineBytes)
        startFile()
        while !stopped, let line = try reader.next() {
            switch line {
            case .tooLong(let number):
                reject(path, number, "the line is longer than \(options.maximumLineBytes) bytes", record: nil)
            case .text(let number, let bytes):
                if Self.isBlank(bytes) { continue }
                if let reason = applyNDJSON(bytes, line: number) {
                    reject(path, number, reason, record: bytes)
                }
            }
            try recordDone(bytesRead: reader.bytesRead)
        }
        if !stopped { try endFile(path) }
    }

    private static func isBlank(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    /// Applies one NDJSON line; returns why it is a bad record, if it is one.
    private mutating func applyNDJSON(_ bytes: UnsafeRawBufferPointer, line: Int) -> String? {
        guard bytes.isValidUTF8 else { return "the line is not valid UTF-8" }
        var id: JSONValue?
        var linkedId: JSONValue?
        var deletedAt: JSONValue?
        var isRecord = false
        var nested: String?
        let decoded: Result<IdentifyRequest, RequestError>
        do {
            decoded = try IdentifyRequest.decode(json: bytes) { key, value in
                switch key {
                case "id": id = value
                case "linkedId":
                    linkedId = value
                    isRecord = true
                case "deletedAt":
                    deletedAt = value
                    isRecord = true
                case "link", "keepApart": nested = key
                default: break
                }
            }
        } catch {
            return error.detail
        }
        if let nested { return applyPair(bytes, member: nested, line: line) }
        // A Contact record has an id and a linkedId or deletedAt; an id alone (a line-protocol
        // request id, say) is an identify body's unknown member.
        if let id, isRecord {
            if let deletedAt, deletedAt != .null {
                summary.erasedSkipped += 1
                return nil
            }
            guard case .number(let text) = id, let number = Int(text), number >= 1 else {
                return "id: must be a positive whole number"
            }
            var linked: Int?
            switch linkedId {
            case nil, .null?: linked = nil
            case .number(let text)?:
                guard let value = Int(text), value >= 1 else { return "linkedId: must be a positive whole number or null" }
                linked = value
            default: return "linkedId: must be a positive whole number or null"
            }
            return applyContact(id: number, linkedId: linked, decoded, line: line)
        }
        switch decoded {
        case .success(let request): return identify(request)
        case .failure(let error): return error.detail
        }
    }

    /// The object of a `{"link": {...}}` or `{"keepApart": {...}}` line (`member` names which), which
    /// must be the line's one member; for import and restore alike.
    static func pairObject(_ bytes: UnsafeRawBufferPointer, member: String)
        -> Result<UnsafeRawBufferPointer, RequestError>
    {
        var object: UnsafeRawBufferPointer?
        var members = 0
        do {
            try JSONObjectReader.readRawObject(bytes) { key, value in
                members += 1
                if key.string == member, case .object(let slice) = value { object = slice }
            }
        } catch {
            return .failure(error)
        }
        guard let object, members == 1 else {
            return .failure(RequestError(field: member, reason: "must be the line's one member, an object"))
        }
        return .success(object)
    }

    /// A `{"link": {...}}` or `{"keepApart": {...}}` line.
    private mutating func applyPair(_ bytes: UnsafeRawBufferPointer, member: String, line: Int) -> String? {
        let object: UnsafeRawBufferPointer
        switch Importer.pairObject(bytes, member: member) {
        case .success(let found): object = found
        case .failure(let reason): return reason.detail
        }
        let request: IdentifyRequest
        do {
            request = try IdentifyRequest(json: object)
        } catch {
            return "\(member).\(error.detail)"
        }
        guard let email = request.email, let phone = request.phoneNumber else {
            return "\(member): needs both an email and a phoneNumber"
        }
        guard state.graph.emailValue(email) != nil, state.graph.phoneValue(phone) != nil else {
            return "\(member): names a value that no live contact carries"
        }
        if member == "link" { return identify(request) }
        pendingRules.append((email, phone, line, String(validating: bytes, as: UTF8.self)))
        return nil
    }

    // MARK: - Contact records

    private mutating func startFile() {
        tracked.removeAll()
        lastContactId = 0
        pendingRules.removeAll()
    }

    /// A live Contact record: identify of its values, remembered for the joins at the end of the file.
    private mutating func applyContact(
        id: Int, linkedId: Int?, _ decoded: Result<IdentifyRequest, RequestError>, line: Int
    ) -> String? {
        guard id > lastContactId else {
            summary.outOfOrder += 1
            return "Contact record \(id) comes after \(lastContactId): into a store that is not empty, records "
                + "must come in ascending id order (sort the file by id, or restore it into an empty store)"
        }
        lastContactId = id
        let request: IdentifyRequest
        switch decoded {
        case .success(let value): request = value
        case .failure(let error): return error.detail
        }
        if let reason = identify(request) { return reason }
        let graph = state.graph
        tracked.append(TrackedContact(
            id: id, linkedId: linkedId ?? id, line: line,
            email: request.email.flatMap { graph.emailValue($0) }.map { Int32($0) } ?? -1,
            phone: request.phoneNumber.flatMap { graph.phoneValue($0) }.map { Int32($0) } ?? -1
        ))
        return nil
    }

    /// The end of a file: joins what its Contact records put in one profile, then records its rules.
    private mutating func endFile(_ path: String) throws {
        joinProfiles(path)
        for rule in pendingRules where !stopped {
            if state.addKeepApartRule(email: rule.email, phone: rule.phone) {
                summary.keepApartRules += 1
            } else {
                reject(BulkImport.Rejection(
                    file: path, line: rule.line, reason: "keepApart: names a value that no live contact carries",
                    record: rule.record
                ))
            }
        }
        try commit()
    }

    /// Joins, for each profile of the file's Contact records (a primary and the records whose
    /// `linkedId` leads to it), the parts the store holds apart: each part not yet joined, oldest
    /// first, is linked to the joined ones by identify of its email with a phone number of theirs,
    /// or of its phone number with an email of theirs, as the merge that joined them once was.
    private mutating func joinProfiles(_ path: String) {
        guard tracked.count > 1 else { return }
        var position: [Int: Int] = [:]
        position.reserveCapacity(tracked.count)
        for (index, contact) in tracked.enumerated() { position[contact.id] = index }
        var groups: [Int: [Int]] = [:]
        var roots: [Int] = []
        for (index, contact) in tracked.enumerated() {
            // Follow linkedId to a record that is its own primary (Bitespeed tables may hold chains).
            var root = contact.linkedId
            var hops = 0
            while let next = position[root], tracked[next].linkedId != root, hops < 64 {
                root = tracked[next].linkedId
                hops += 1
            }
            if groups[root] == nil { roots.append(root) }
            groups[root, default: []].append(index)
        }
        for root in roots where !stopped {
            guard let members = groups[root], members.count > 1 else { continue }
            join(members, path: path)
        }
    }

    private mutating func join(_ members: [Int], path: String) {
        // The parts: members by the profile the store holds them in, each with its oldest member
        // and the first email and phone number its members carry.
        var parts: [(primary: UInt32, first: Int, email: Int32, phone: Int32)] = []
        for index in members {
            let contact = tracked[index]
            let primary: UInt32
            if contact.email >= 0 {
                primary = state.graph.primary(ofEmail: Int(contact.email))
            } else if contact.phone >= 0 {
                primary = state.graph.primary(ofPhone: Int(contact.phone))
            } else {
                continue
            }
            if let part = parts.firstIndex(where: { $0.primary == primary }) {
                if parts[part].email < 0 { parts[part].email = contact.email }
                if parts[part].phone < 0 { parts[part].phone = contact.phone }
            } else {
                parts.append((primary, index, contact.email, contact.phone))
            }
        }
        guard parts.count > 1 else { return }
        var joined = [0]
        var waiting = Array(1..<parts.count)
        var progress = true
        while !waiting.isEmpty && progress && !stopped {
            progress = false
            for (slot, part) in waiting.enumerated() {
                var pair: (email: Int32, phone: Int32)?
                for other in joined {
                    if parts[part].email >= 0, parts[other].phone >= 0 {
                        pair = (parts[part].email, parts[other].phone)
                    } else if parts[part].phone >= 0, parts[other].email >= 0 {
                        pair = (parts[other].email, parts[part].phone)
                    }
                    if pair != nil { break }
                }
                guard let pair else { continue }
                waiting.remove(at: slot)
                progress = true
                let contact = tracked[parts[part].first]
                let request = try! IdentifyRequest(
                    normalizedEmail: state.graph.emails.text(Int(pair.email)),
                    normalizedPhoneNumber: state.graph.phones.text(Int(pair.phone))
                )
                let ignored = (try? state.identify(request, canWrite: true))?.ignored ?? []
                if state.graph.primary(ofEmail: Int(pair.email)) == state.graph.primary(ofPhone: Int(pair.phone)) {
                    joined.append(part)
                } else {
                    reject(BulkImport.Rejection(
                        file: path, line: contact.line,
                        reason: "Contact record \(contact.id) cannot join the profile of \(tracked[parts[0].first].id): "
                            + (ignored.first.map { "\($0.reason.rawValue): \($0.detail)" } ?? "the guards refuse the merge"),
                        record: nil
                    ))
                }
                break
            }
        }
        for part in waiting where !stopped {
            let contact = tracked[parts[part].first]
            reject(BulkImport.Rejection(
                file: path, line: contact.line,
                reason: "Contact record \(contact.id) cannot join the profile of \(tracked[parts[0].first].id): "
                    + "no email of one part with a phone number of the other", record: nil
            ))
        }
    }

    // MARK: - Restore

    /// A restore (see ``Restore``): reads every file, then writes everything in one commit, or nothing.
    mutating func restore(_ plans: [(path: String, format: BulkImport.Format, size: Int)]) throws {
        summary.restored = true
        var restore = Restore()
        for plan in plans where !stopped {
            summary.files += 1
            try restore.read(plan.path, format: plan.format, options: options) { bytesRead in
                try recordDone(bytesRead: bytesRead)
                return stopped
            }
            bytesBefore += plan.size
        }
        guard !stopped else { return }
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        guard let built = restore.build(now: Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000) else {
            for problem in restore.problems { onReject(problem) }
            summary.rejected = restore.problems.count
            summary.outcome = .refused
            return
        }
        if built.contacts > 0 {
            try store.reserve(bytes: built.batch.bytes.count)
            try store.write(built.batch, appending: true)
            try store.sync()
        }
        summary.contacts = built.contacts
        summary.profiles = built.profiles
        summary.links = built.links
        summary.derivedLinks = built.derivedLinks
        summary.keepApartRules = built.keepApartRules
        summary.idsFilled = built.idsFilled
    }

    // MARK: - CSV

    mutating func importCSV(_ path: String) throws {
        var lines = try LineReader(path: path, maximumLineBytes: options.maximumLineBytes)
        let columns = try CSVColumns(
            reading: &lines, path: path, maximumRecordBytes: options.maximumLineBytes, choice: options.columns
        )
        var reader = CSVRecordReader(lines, maximumRecordBytes: options.maximumLineBytes)
        startFile()
        while !stopped, let record = try reader.next() {
            switch record {
            case .bad(let line, let reason):
                reject(path, line, reason, record: nil)
            case .fields(let line, let fields):
                if let reason = applyCSV(fields, columns: columns, reader: reader, line: line) {
                    // The record's fields, joined by commas again (its quoting is not kept).
                    let texts = fields.map { reader.text($0) }
                    let record = texts.contains(nil) ? nil : texts.map { $0! }.joined(separator: ",")
                    reject(BulkImport.Rejection(file: path, line: line, reason: reason, record: record))
                }
            }
            try recordDone(bytesRead: reader.bytesRead)
        }
        if !stopped { try endFile(path) }
    }

    /// Applies one CSV record; returns why it is a bad record, if it is one.
    private mutating func applyCSV(
        _ fields: [Range<Int>], columns: CSVColumns, reader: borrowing CSVRecordReader, line: Int
    ) -> String? {
        guard reader.bytes.withUnsafeBytes({ $0.isValidUTF8 }) else { return "the record is not valid UTF-8" }
        func value(_ column: Int?) -> String? {
            guard let column, column < fields.count, let text = reader.text(fields[column]) else { return nil }
            return text.isEmpty || text == "NULL" ? nil : text
        }
        if fields.count != columns.count {
            return "the record has \(fields.count) fields, the header \(columns.count)"
        }
        let decoded = Result { () throws(RequestError) in
            try IdentifyRequest(email: value(columns.email), phoneNumber: value(columns.phone))
        }
        guard columns.contactRecords else {
            switch decoded {
            case .success(let request): return identify(request)
            case .failure(let error): return error.detail
            }
        }
        if value(columns.deletedAt) != nil {
            summary.erasedSkipped += 1
            return nil
        }
        guard let text = value(columns.id), let id = Int(text), id >= 1 else { return "id: must be a positive whole number" }
        var linked: Int?
        if let text = value(columns.linkedId) {
            guard let number = Int(text), number >= 1 else { return "linkedId: must be a positive whole number or empty" }
            linked = number
        }
        return applyContact(id: id, linkedId: linked, decoded, line: line)
    }
}

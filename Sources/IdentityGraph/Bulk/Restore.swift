import Foundation

/// A restore (SPEC.md section 16): Contact records imported into an empty store are kept exactly,
/// ids, `linkedId`s, timestamps and tombstones included, in whatever order the files hold them.
///
/// Unlike an import, a restore reads every file before it writes anything: the rows are sorted by
/// id, checked against the invariants of SPEC.md section 2 (``InvariantCheck``, then the store's own
/// loader, ``ContactGraph/load(id:_:emails:phoneHash:)``), and written in one transaction with one
/// `restored` change event, so a store is either restored whole or left empty. Any problem (a line
/// that is not a Contact record, a link or a keep-apart rule; a field that cannot be read; a broken
/// invariant) is reported with its file and line, and nothing is written.
///
/// Choices where SPEC.md is silent:
/// - Ids the files leave out (a database sequence skips ids on a rolled-back insert) are kept out
///   of use as erased contacts (tombstones) dated like the row before them, so that no id is given
///   twice; at most as many as there are rows, plus 10,000.
/// - When the files hold no `link` line, the links are derived from the rows as the store's upgrade
///   from the format without links derives them (``ContactGraph/deriveMissingLinks(now:changes:)``).
/// - Values are normalized as identify normalizes them (SPEC.md section 3); timestamps are cut to
///   milliseconds. Guards (blocklist, profile limits) do not apply: a restore keeps what it is given.
struct Restore {
    /// Where a record came from: an index into ``files`` and a line number.
    struct Place: Hashable {
        var file: Int32
        var line: Int32
    }

    struct Row {
        var id: Int
        var linkedId: Int?
        var createdAt: Int64
        var updatedAt: Int64
        var deletedAt: Int64?
        var email: String?
        var phone: String?
        var place: Place
    }

    struct Pair {
        var email: String
        var phone: String
        var at: Int64
        var place: Place
    }

    /// What a restore writes, built and checked.
    struct Built {
        var batch: RowBatch
        var contacts: Int
        var profiles: Int
        var links: Int
        var derivedLinks: Int
        var keepApartRules: Int
        /// Ids no file held, kept as tombstones.
        var idsFilled: Int
    }

    private(set) var files: [String] = []
    private var rows: [Row] = []
    private var links: [Pair] = []
    private var rules: [Pair] = []
    /// Every problem found, in the order found.
    private(set) var problems: [BulkImport.Rejection] = []

    // MARK: - Telling a restore from an import

    /// Whether the file's first record is a Contact record (or a link or keep-apart line, as an export
    /// holds them), which makes an import into an empty store a restore; `nil` when the file holds no
    /// record (nor, for CSV, a header), so that the next file decides.
    static func startsWithContactRecords(
        _ path: String, format: BulkImport.Format, options: BulkImport.Options
    ) throws(LineReader.ReadError) -> Bool? {
        var lines = try LineReader(path: path, maximumLineBytes: options.maximumLineBytes)
        if format == .csv {
            let columns = try CSVColumns(
                reading: &lines, path: path, maximumRecordBytes: options.maximumLineBytes, choice: options.columns
            )
            return columns.count == 0 ? nil : columns.contactRecords
        }
        while let line = try lines.next() {
            guard case .text(_, let bytes) = line else { return false }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            var keys: Set<String> = []
            do {
                try JSONObjectReader.readRawObject(bytes) { key, _ in keys.insert(key.string) }
            } catch {
                return false
            }
            return (keys.contains("id") && (keys.contains("linkedId") || keys.contains("deletedAt")))
                || keys == ["link"] || keys == ["keepApart"]
        }
        return nil
    }

    // MARK: - Reading

    /// Reads the records of `path`; `afterRecord` is called with the bytes read so far after each one,
    /// and returns true to stop.
    mutating func read(
        _ path: String, format: BulkImport.Format, options: BulkImport.Options,
        afterRecord: (_ bytesRead: Int) throws -> Bool
    ) throws {
        let file = Int32(files.count)
        files.append(path)
        var lines = try LineReader(path: path, maximumLineBytes: options.maximumLineBytes)
        if format == .ndjson {
            while let line = try lines.next() {
                switch line {
                case .tooLong(let number):
                    problem(Place(file: file, line: Int32(number)), "the line is longer than \(options.maximumLineBytes) bytes")
                case .text(let number, let bytes):
                    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                    let place = Place(file: file, line: Int32(number))
                    if let reason = readJSON(bytes, place) {
                        problem(place, reason, record: String(validating: bytes, as: UTF8.self))
                    }
                }
                if try afterRecord(lines.bytesRead) { return }
            }
            return
        }
        let columns = try CSVColumns(
            reading: &lines, path: path, maximumRecordBytes: options.maximumLineBytes, choice: options.columns
        )
        guard columns.count == 0 || columns.contactRecords else {
            problem(Place(file: file, line: 1), "the header has no id and linkedId columns: a restore into an "
                + "empty store reads Contact records only; import this file after it")
            return
        }
        var reader = CSVRecordReader(lines, maximumRecordBytes: options.maximumLineBytes)
        while let record = try reader.next() {
            switch record {
            case .bad(let line, let reason):
                problem(Place(file: file, line: Int32(line)), reason)
            case .fields(let line, let fields):
                let place = Place(file: file, line: Int32(line))
                if let reason = readCSV(fields, columns: columns, reader: reader, place) { problem(place, reason) }
            }
            if try afterRecord(reader.bytesRead) { return }
        }
    }

    private mutating func problem(_ place: Place, _ reason: String, record: String? = nil) {
        problems.append(BulkImport.Rejection(
            file: place.file >= 0 ? files[Int(place.file)] : "", line: Int(place.line), reason: reason, record: record
        ))
    }

    /// One NDJSON line: a Contact record, or a `link` or `keepApart` line; returns what is wrong with it.
    private mutating func readJSON(_ bytes: UnsafeRawBufferPointer, _ place: Place) -> String? {
        guard bytes.isValidUTF8 else { return "the line is not valid UTF-8" }
        // One slot per member read, in the order of `names`; a dictionary would cost every line.
        let names = ["id", "linkedId", "linkPrecedence", "createdAt", "updatedAt", "deletedAt"]
        var fields: [JSONValue?] = [nil, nil, nil, nil, nil, nil]
        var nested: String?
        let decoded: Result<IdentifyRequest, RequestError>
        do {
            decoded = try IdentifyRequest.decode(json: bytes) { key, value in
                if let slot = names.firstIndex(of: key) {
                    fields[slot] = value
                } else if key == "link" || key == "keepApart" {
                    nested = key
                }
            }
        } catch {
            return error.detail
        }
        if let nested { return readPair(bytes, member: nested, place) }
        guard fields[0] != nil else {
            return "not a Contact record, a link or a keepApart line: a restore into an empty store reads only "
                + "those; import identify bodies after it"
        }
        func text(_ slot: Int) throws(RequestError) -> String? {
            switch fields[slot] {
            case nil, .null?: return nil
            case .string(let value)?, .number(let value)?: return value
            case let other?:
                throw RequestError(field: names[slot], reason: "must be a string, a number or null, not \(other.kindDescription)")
            }
        }
        do {
            return try addRow(
                id: text(0), linkedId: text(1), precedence: text(2), createdAt: text(3), updatedAt: text(4),
                deletedAt: text(5), values: decoded, place
            )
        } catch {
            return error.detail
        }
    }

    /// A `{"link": {...}}` or `{"keepApart": {...}}` line, which must carry its `at`.
    private mutating func readPair(_ bytes: UnsafeRawBufferPointer, member: String, _ place: Place) -> String? {
        let object: UnsafeRawBufferPointer
        switch Importer.pairObject(bytes, member: member) {
        case .success(let found): object = found
        case .failure(let reason): return reason.detail
        }
        var at: JSONValue?
        let request: IdentifyRequest
        do {
            request = try IdentifyRequest.decode(json: object) { key, value in if key == "at" { at = value } }.get()
        } catch {
            return "\(member).\(error.detail)"
        }
        guard let email = request.email, let phone = request.phoneNumber else {
            return "\(member): needs both an email and a phoneNumber"
        }
        guard case .string(let text)? = at, let time = Timestamp(parsing: text) else {
            return "\(member).at: must be a timestamp (RFC 3339), which a restore keeps"
        }
        let pair = Pair(email: email, phone: phone, at: time.millisecondsSince1970, place: place)
        if member == "link" { links.append(pair) } else { rules.append(pair) }
        return nil
    }

    /// One CSV record of Contact records.
    private mutating func readCSV(
        _ fields: [Range<Int>], columns: CSVColumns, reader: borrowing CSVRecordReader, _ place: Place
    ) -> String? {
        guard reader.bytes.withUnsafeBytes({ $0.isValidUTF8 }) else { return "the record is not valid UTF-8" }
        guard fields.count == columns.count else { return "the record has \(fields.count) fields, the header \(columns.count)" }
        func value(_ column: Int?) -> String? {
            guard let column, let text = reader.text(fields[column]) else { return nil }
            return text.isEmpty || text == "NULL" ? nil : text
        }
        let decoded = Result { () throws(RequestError) in
            try IdentifyRequest(email: value(columns.email), phoneNumber: value(columns.phone))
        }
        do {
            return try addRow(
                id: value(columns.id), linkedId: value(columns.linkedId), precedence: value(columns.linkPrecedence),
                createdAt: value(columns.createdAt), updatedAt: value(columns.updatedAt),
                deletedAt: value(columns.deletedAt), values: decoded, place
            )
        } catch {
            return error.detail
        }
    }

    /// Adds a Contact record from the text of its fields (`nil`: absent, empty or null).
    private mutating func addRow(
        id: String?, linkedId: String?, precedence: String?, createdAt: String?, updatedAt: String?,
        deletedAt: String?, values: Result<IdentifyRequest, RequestError>, _ place: Place
    ) throws(RequestError) -> String? {
        guard let id = id.flatMap({ Int($0) }), id >= 1, id < Int(UInt32.max) else {
            throw RequestError(field: "id", reason: "must be a positive whole number")
        }
        var linked: Int?
        if let linkedId {
            guard let number = Int(linkedId), number >= 1, number < Int(UInt32.max) else {
                throw RequestError(field: "linkedId", reason: "must be a positive whole number or null")
            }
            linked = number
        }
        if let precedence, precedence != (linked == nil ? "primary" : "secondary") {
            throw RequestError(
                field: "linkPrecedence",
                reason: linked == nil ? "is \"\(precedence)\" but linkedId is null: a primary has no linkedId"
                    : "is \"\(precedence)\" but linkedId is set: a secondary has one"
            )
        }
        func time(_ name: String, _ text: String?) throws(RequestError) -> Int64? {
            guard let text else { return nil }
            guard let value = Timestamp(parsing: text) else {
                throw RequestError(field: name, reason: "must be a timestamp (RFC 3339, `2026-11-27T05:33:28.123Z`)")
            }
            return value.millisecondsSince1970
        }
        guard let created = try time("createdAt", createdAt) else {
            throw RequestError(field: "createdAt", reason: "is missing: a restore into an empty store keeps it")
        }
        guard let updated = try time("updatedAt", updatedAt) else {
            throw RequestError(field: "updatedAt", reason: "is missing: a restore into an empty store keeps it")
        }
        var row = Row(
            id: id, linkedId: linked, createdAt: created, updatedAt: updated, deletedAt: try time("deletedAt", deletedAt),
            place: place
        )
        switch values {
        case .success(let request):
            row.email = request.email
            row.phone = request.phoneNumber
        case .failure(let error):
            // Neither value: a tombstone's due, and for a live row the check's to report.
            guard error.field == nil else { throw error }
        }
        rows.append(row)
        return nil
    }

    // MARK: - Building

    /// Sorts and checks what was read and builds the batch that writes it, with its `restored` event
    /// (seq 1, dated `now` or the newest timestamp of the rows if later). `nil` when there is a
    /// problem: ``problems`` then says each, by file and line.
    mutating func build(now: Int64) -> Built? {
        guard problems.isEmpty else { return nil }
        // By id, then by place, so that of two records with one id the later one is reported.
        rows.sort { ($0.id, $0.place.file, $0.place.line) < ($1.id, $1.place.file, $1.place.line) }
        for index in rows.indices.dropFirst() where rows[index].id == rows[index - 1].id {
            let other = rows[index - 1].place
            problem(rows[index].place, "Contact record \(rows[index].id) is given twice; "
                + "the other is at \(files[Int(other.file)]):\(other.line)")
        }
        let largest = rows.last?.id ?? 0
        if largest > 2 * rows.count + 10_000 {
            problem(rows.last!.place, "Contact record \(largest) is the largest id of \(rows.count) records: a restore "
                + "keeps ids and keeps those no record holds out of use, at most \(rows.count + 10_000) of them")
        }
        guard problems.isEmpty else { return nil }

        // The rows by id, the ids no record holds filled with tombstones.
        var contacts: [Contact] = []
        var places: [Place] = []
        contacts.reserveCapacity(largest)
        places.reserveCapacity(largest)
        var idsFilled = 0
        for row in rows {
            while contacts.count + 1 < row.id {
                let time = contacts.last?.createdAt.millisecondsSince1970 ?? row.createdAt
                let at = Timestamp(millisecondsSince1970: time)
                contacts.append(Contact(
                    id: contacts.count + 1, email: nil, phoneNumber: nil, linkedId: nil, createdAt: at, updatedAt: at,
                    deletedAt: at
                ))
                places.append(row.place)
                idsFilled += 1
            }
            contacts.append(Contact(
                id: row.id, email: row.email, phoneNumber: row.phone, linkedId: row.linkedId,
                createdAt: Timestamp(millisecondsSince1970: row.createdAt),
                updatedAt: Timestamp(millisecondsSince1970: row.updatedAt),
                deletedAt: row.deletedAt.map { Timestamp(millisecondsSince1970: $0) }
            ))
            places.append(row.place)
        }
        rows = []
        func report(_ findings: ArraySlice<InvariantCheck.Finding>, derived: Bool) {
            for finding in findings {
                switch finding.subject {
                case .contact(let id):
                    var reason = finding.reason
                    if derived, reason.hasSuffix("not connected by shared values and links") {
                        reason += " (the files hold no link lines, and no email of one part with a phone number "
                            + "of another gives one)"
                    }
                    problem(places[id - 1], reason)
                case .link(let index):
                    problem(derived ? places[0] : links[index].place, finding.reason)
                case .keepApart(let index):
                    problem(rules[index].place, finding.reason)
                }
            }
        }

        var check = InvariantCheck(contacts: contacts)
        report(check.findings[...], derived: false)
        guard problems.isEmpty else { return nil }

        // The store's own loader indexes the rows, links and rules as a restart would.
        var graph = ContactGraph()
        graph.reserve(contacts: contacts.count)
        for contact in contacts {
            do {
                try Self.load(contact, into: &graph)
            } catch let error as ContactGraph.LoadError {
                problem(places[contact.id - 1], "Contact record \(contact.id): \(error.reason)")
                return nil
            } catch {
                problem(places[contact.id - 1], "Contact record \(contact.id): \(error)")
                return nil
            }
        }
        for (list, isRule) in [(links, false), (rules, true)] {
            for (index, pair) in list.enumerated() {
                var email = pair.email
                var phone = pair.phone
                do {
                    try email.withUTF8 { email in
                        try phone.withUTF8 { phone in
                            try graph.loadPair(
                                UInt64(index + 1), email: UnsafeRawBufferPointer(email),
                                phone: UnsafeRawBufferPointer(phone), at: pair.at, rule: isRule
                            )
                        }
                    }
                } catch {
                    problem(pair.place, "\(isRule ? "keepApart" : "link"): names a value that no live contact carries")
                }
            }
        }
        guard problems.isEmpty else { return nil }
        var derivedLinks = 0
        if links.isEmpty {
            var changes = GraphChanges()
            derivedLinks = graph.deriveMissingLinks(now: 0, changes: &changes)
        }
        let before = check.findings.count
        check.checkPairs(StoreContents(
            contacts: contacts, links: graph.storedPairs(rules: false), keepApart: graph.storedPairs(rules: true)
        ))
        report(check.findings[before...], derived: links.isEmpty)
        guard problems.isEmpty else { return nil }

        var batch = RowBatch()
        for id in contacts.indices { graph.encodeRow(UInt32(id + 1), into: &batch) }
        for (isRule, table) in [(false, RowBatch.Table.links), (true, RowBatch.Table.rules)] {
            for (number, _) in (isRule ? graph.rules : graph.links).ordered {
                let bytes = graph.encodePair(number, rule: isRule)
                batch.put(table, key: number) { $0.append(contentsOf: bytes) }
            }
        }
        let event = ChangeEvent.restored(
            seq: 1, at: Timestamp(millisecondsSince1970: max(now, graph.latestTimestamp)), contacts: contacts.count
        )
        batch.put(.changes, key: 1) { event.encode(into: &$0) }
        return Built(
            batch: batch, contacts: contacts.count, profiles: graph.profileCount, links: graph.links.count,
            derivedLinks: derivedLinks, keepApartRules: graph.rules.count, idsFilled: idsFilled
        )
    }

    /// Loads `contact` with the store's loader, its text handed over as bytes.
    private static func load(_ contact: Contact, into graph: inout ContactGraph) throws {
        var fields = ContactRecord.Fields(
            linkedId: contact.linkedId, createdAt: contact.createdAt.millisecondsSince1970,
            updatedAt: contact.updatedAt.millisecondsSince1970, deletedAt: contact.deletedAt?.millisecondsSince1970
        )
        var email = contact.email ?? ""
        var phone = contact.phoneNumber ?? ""
        try email.withUTF8 { emailBytes in
            try phone.withUTF8 { phoneBytes in
                if contact.email != nil { fields.email = UnsafeRawBufferPointer(emailBytes) }
                if contact.phoneNumber != nil { fields.phoneNumber = UnsafeRawBufferPointer(phoneBytes) }
                try graph.load(id: contact.id, fields)
            }
        }
    }
}

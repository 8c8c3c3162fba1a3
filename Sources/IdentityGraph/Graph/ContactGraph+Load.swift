/// Rebuilding the graph from stored rows (a start without a saved index, a join, a restore).
///
/// A rebuild reads every row, in id order, and interns its values. ``ContactStore/load(into:)`` runs
/// it on two threads: the emails on one (an ``EmailColumn``), the phone numbers, profiles and times
/// on the other (``load(id:_:emails:phoneHash:)`` with `emails` false). What the email thread cannot
/// check, that an email it had seen already belongs to the row's profile, is checked once both are
/// done (``adopt(_:)``). ``Restore`` loads row by row, emails included.
extension ContactGraph {
    /// The room the contact arrays get for a store of `contacts` rows: an eighth more than it holds,
    /// so that the first contacts added after a start do not grow (copy) every array; room never
    /// written costs address space, not memory.
    static func capacity(contacts: Int) -> Int {
        contacts + contacts / 8 + 16
    }

    /// Pre-sizes the arrays for `contacts` rows (used when loading a store).
    mutating func reserve(contacts: Int) {
        let capacity = Self.capacity(contacts: contacts)
        for keyPath in [\ContactGraph.emailOf, \.phoneOf, \.linkedTo, \.nextMember, \.lastMember] {
            self[keyPath: keyPath].reserveCapacity(capacity)
        }
        createdAt.reserveCapacity(capacity)
        updatedAt.reserveCapacity(capacity)
        emails.reserve(values: contacts, bytes: contacts * 24)
        // Stores hold somewhat fewer phone numbers than contacts; a guess too low costs a rehash.
        phones.reserve(values: contacts * 3 / 4, bytes: contacts * 14)
    }

    /// Adds a stored row while rebuilding the graph. Rows must come in id order, and each must
    /// keep the invariants of SPEC.md section 2 with the rows before it; a row that does not is
    /// reported instead of being indexed wrongly. The row's text is read in place (no `String`s),
    /// since a restart reads every row. With `emails` false, the row's email is left to the rebuild's
    /// ``EmailColumn`` (the row gets none until ``adopt(_:)``); `phoneHash` is the phone number's hash
    /// when the caller prefetched its slot (``prefetchPhone(_:)``).
    mutating func load(
        id: Int, _ row: ContactRecord.Fields, emails internEmails: Bool = true, phoneHash: UInt64? = nil
    ) throws(LoadError) {
        guard id == contactCount + 1 else {
            throw LoadError(id: id, reason: "expected contact \(contactCount + 1) next: ids must be dense")
        }
        if let deletedAt = row.deletedAt {
            guard row.linkedId == nil, row.email == nil, row.phoneNumber == nil else {
                throw LoadError(id: id, reason: "an erased contact still has an email, a phone number or a link")
            }
            appendTombstone(createdAt: row.createdAt, updatedAt: row.updatedAt, deletedAt: deletedAt)
            return
        }
        var primary = UInt32(id)
        if let linkedId = row.linkedId {
            guard linkedId >= 1, linkedId < id, linkedTo[linkedId] == 0, !isErased(UInt32(linkedId)) else {
                throw LoadError(id: id, reason: "linkedId \(linkedId) is not an older primary")
            }
            primary = UInt32(linkedId)
        }
        var emailValue: Int?
        if internEmails, let email = row.email {
            let (value, inserted) = emails.findOrInsert(email, owner: UInt32(id))
            if !inserted, self.primary(of: emails.owners[value]) != primary {
                throw LoadError(id: id, reason: Self.emailProblem)
            }
            emailValue = value
        }
        var phoneValue: Int?
        if let phone = row.phoneNumber {
            let hash = phoneHash ?? phones.hash(phone)
            let (value, inserted) = phones.findOrInsert(phone, hash: hash, owner: UInt32(id))
            if !inserted, self.primary(of: phones.owners[value]) != primary {
                throw LoadError(id: id, reason: "its phone number belongs to another profile")
            }
            phoneValue = value
        }
        let appended = append(email: nil, emailValue: emailValue, phone: nil, phoneValue: phoneValue,
                              linkedTo: primary == UInt32(id) ? 0 : primary, now: row.createdAt)
        updatedAt[Int(appended)] = row.updatedAt
    }

    private static let emailProblem = "its email belongs to another profile"

    /// Asks the CPU for the phone table's slot that loading `row` will probe, without waiting; returns
    /// the phone number's hash, for ``load(id:_:emails:phoneHash:)`` a little later. Mutating, though
    /// it changes nothing, so that the rebuild's closure, which holds the graph in place, calls it on
    /// the graph itself: as a read, the call copied the graph's struct (retaining and releasing each
    /// of its arrays, for every row).
    mutating func prefetchPhone(_ row: ContactRecord.Fields) -> UInt64? {
        row.phoneNumber.map { phones.prefetch($0) }
    }

    /// Takes the emails a rebuild's email thread interned (`column`, a number for each row the thread
    /// read) and checks that each email a row shares with an earlier row belongs to the row's own
    /// profile, for the rows loaded here (this thread may have stopped at a broken row). Returns the
    /// first row that fails.
    mutating func adopt(_ column: EmailColumn) -> LoadError? {
        let loaded = emailOf.count
        emails = column.table
        emailOf = column.numbers
        // Each thread stops at the first row it cannot read; this one also at a row it cannot load.
        if emailOf.count > loaded { emailOf.removeLast(emailOf.count - loaded) }
        for id in column.repeats {
            guard Int(id) < emailOf.count else { break }
            if primary(of: emails.owners[Int(emailOf[Int(id)] - 1)]) != primary(of: id) {
                return LoadError(id: Int(id), reason: Self.emailProblem)
            }
        }
        return nil
    }

    /// A stored row that cannot be indexed.
    struct LoadError: Error {
        var id: Int
        var reason: String
    }

    /// Appends an erased contact read back from the store.
    private mutating func appendTombstone(createdAt created: Int64, updatedAt updated: Int64, deletedAt: Int64) {
        let id = UInt32(emailOf.count)
        emailOf.append(0)
        phoneOf.append(0)
        linkedTo.append(0)
        nextMember.append(0)
        lastMember.append(0)
        createdAt.append(created)
        updatedAt.append(updated)
        erasedAt[id] = deletedAt
    }
}

/// The emails of a rebuild, interned on a thread of their own: the table, for each row (index 0
/// unused) its email's number + 1 or 0, and the rows whose email an earlier row carried (`repeats`, in
/// id order), which ``ContactGraph/adopt(_:)`` checks. Rows come in id order from 1 (the thread stops
/// at the first that does not: a store that is not dense, which the other thread reports).
struct EmailColumn {
    var table: ValueTable
    var numbers: [UInt32]
    var repeats: [UInt32] = []

    init(table: ValueTable, contacts: Int) {
        self.table = table
        numbers = []
        numbers.reserveCapacity(ContactGraph.capacity(contacts: contacts))
        numbers.append(0)
    }

    /// ``ValueTable/prefetch(_:)`` of the column's table; mutating for the reason
    /// ``ContactGraph/prefetchPhone(_:)`` gives.
    mutating func prefetch(_ email: UnsafeRawBufferPointer) -> UInt64 {
        table.prefetch(email)
    }

    /// Adds row `id`, the next, whose email's `hash` was prefetched, or that has none (an erased row
    /// has none to intern).
    mutating func add(id: Int, email: UnsafeRawBufferPointer?, hash: UInt64) {
        guard let email else {
            numbers.append(0)
            return
        }
        let (number, inserted) = table.findOrInsert(email, hash: hash, owner: UInt32(id))
        numbers.append(UInt32(number + 1))
        if !inserted { repeats.append(UInt32(id)) }
    }
}

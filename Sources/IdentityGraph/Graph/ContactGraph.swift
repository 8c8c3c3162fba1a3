/// Every contact in memory, with the index that links them into profiles. Not thread-safe: its one
/// owner, ``IdentityEngine``, serializes access.
///
/// Contacts are numbered by id and kept as parallel arrays (about 36 bytes a contact, plus its
/// values in ``ValueTable``s). The profiles form a union-find structure whose every path is fully
/// compressed: a secondary points straight at its primary (`linkedTo`), because SPEC.md requires
/// exactly that of the stored `linkedId`s, so `find` is one array read. A union relinks the
/// newer profile to the older primary: the cost is the number of rows the merge must rewrite
/// anyway. Each profile also keeps its members as a list sorted by id (`nextMember`, with
/// the tail at `lastMember[primary]`), so that an answer walks its own profile and nothing else.
///
/// Erasure (SPEC.md section 12) makes a contact a tombstone: no values, in no profile. Tombstones
/// are rare, so they live in a dictionary rather than costing every contact a field. Splitting a
/// profile after an erasure or an unmerge regroups that profile's members and nothing else.
struct ContactGraph {
    // Index 0 of every array is unused: ids start at 1, and 0 means "none". The storage is internal
    // rather than private only so that the extensions in `ContactGraph+*.swift` can reach it.
    var emailOf: [UInt32] = [0]  // value number + 1
    var phoneOf: [UInt32] = [0]
    var linkedTo: [UInt32] = [0]  // the primary, or 0 for a primary
    var nextMember: [UInt32] = [0]
    var lastMember: [UInt32] = [0]  // meaningful for primaries only
    var createdAt: [Int64] = [0]
    var updatedAt: [Int64] = [0]
    var emails = ValueTable()
    var phones = ValueTable()
    /// Tombstones: erased contact → the time it was erased.
    var erasedAt: [UInt32: Int64] = [:]
    /// Why profiles were merged without a new row (SPEC.md section 2).
    var links = ValuePairs()
    /// Pairs that identify must never join (SPEC.md section 12).
    var rules = ValuePairs()
    var profileCount = 0

    var contactCount: Int { emailOf.count - 1 }

    /// The primary of the profile holding contact `id`: the union-find `find`.
    @inline(__always)
    func primary(of id: UInt32) -> UInt32 {
        let linked = linkedTo[Int(id)]
        return linked == 0 ? id : linked
    }

    /// The profile whose primary is `primary`.
    func profile(primary: UInt32) -> Profile {
        var profile = Profile(primaryContactId: Int(primary), emails: [], phoneNumbers: [], secondaryContactIds: [])
        var member = primary
        while member != 0 {
            let index = Int(member)
            if member != primary { profile.secondaryContactIds.append(index) }
            let email = emailOf[index]
            if email != 0 && emails.owners[Int(email - 1)] == member {
                profile.emails.append(emails.text(Int(email - 1)))
            }
            let phone = phoneOf[index]
            if phone != 0 && phones.owners[Int(phone - 1)] == member {
                profile.phoneNumbers.append(phones.text(Int(phone - 1)))
            }
            member = nextMember[index]
        }
        return profile
    }

    /// Writes the profile whose primary is `primary` as JSON, straight from the value tables: the
    /// same object as ``profile(primary:)`` encoded, without building it first.
    func writeProfileJSON(primary: UInt32, into writer: inout JSONWriter) {
        ProfileJSON.write(
            primaryContactId: Int(primary), into: &writer,
            emails: { writeOwnedValues(of: primary, values: emailOf, table: emails, into: &$0) },
            phoneNumbers: { writeOwnedValues(of: primary, values: phoneOf, table: phones, into: &$0) },
            secondaryContactIds: { writer in
                var member = nextMember[Int(primary)]
                var first = true
                while member != 0 {
                    if !first { writer.raw(",") }
                    first = false
                    writer.integer(UInt64(member))
                    member = nextMember[Int(member)]
                }
            }
        )
    }

    /// The values a profile's members own (each distinct value once, by first carrier), in id order.
    @inline(__always)
    func writeOwnedValues(
        of primary: UInt32, values: [UInt32], table: ValueTable, into writer: inout JSONWriter
    ) {
        var member = primary
        var first = true
        while member != 0 {
            let value = values[Int(member)]
            if value != 0 && table.owners[Int(value - 1)] == member {
                if !first { writer.raw(",") }
                first = false
                table.withBytes(Int(value - 1)) { writer.string(utf8: $0) }
            }
            member = nextMember[Int(member)]
        }
    }

    /// Whether contact `id` (which must exist) is a tombstone.
    @inline(__always)
    func isErased(_ id: UInt32) -> Bool {
        !erasedAt.isEmpty && erasedAt[id] != nil
    }

    /// Whether `id` names a contact, live or erased.
    func exists(_ id: Int) -> Bool {
        id >= 1 && id <= contactCount
    }

    /// The profile holding contact `id`, or `nil` when there is no such contact or it is erased.
    func profile(containing id: Int) -> Profile? {
        guard exists(id), !isErased(UInt32(id)) else { return nil }
        return profile(primary: primary(of: UInt32(id)))
    }

    /// The record of contact `id`, or `nil` when there is no such contact.
    func contact(id: Int) -> Contact? {
        guard exists(id) else { return nil }
        let email = emailOf[id]
        let phone = phoneOf[id]
        let linked = linkedTo[id]
        return Contact(
            id: id,
            email: email == 0 ? nil : emails.text(Int(email - 1)),
            phoneNumber: phone == 0 ? nil : phones.text(Int(phone - 1)),
            linkedId: linked == 0 ? nil : Int(linked),
            createdAt: Timestamp(millisecondsSince1970: createdAt[id]),
            updatedAt: Timestamp(millisecondsSince1970: updatedAt[id]),
            deletedAt: erasedAt[UInt32(id)].map { Timestamp(millisecondsSince1970: $0) }
        )
    }

    /// Appends the stored form of contact `id` to `batch`, straight from the arrays and arenas.
    func encodeRow(_ id: UInt32, into batch: inout RowBatch) {
        let index = Int(id)
        let linked = linkedTo[index]
        let deletedAt = erasedAt.isEmpty ? nil : erasedAt[id]
        emails.withBytes(ofNumber: emailOf[index]) { email in
            phones.withBytes(ofNumber: phoneOf[index]) { phone in
                batch.append(id: index) { bytes in
                    ContactRecord.encode(
                        linkedId: linked == 0 ? nil : Int(linked), createdAt: createdAt[index],
                        updatedAt: updatedAt[index], deletedAt: deletedAt, email: email, phoneNumber: phone,
                        into: &bytes
                    )
                }
            }
        }
    }

    /// The newest timestamp in the graph, so that a reopened engine never issues an earlier one.
    var latestTimestamp: Int64 {
        var latest = createdAt.last ?? 0
        // Relinks update old rows, so the newest updatedAt can be anywhere.
        for value in updatedAt where value > latest { latest = value }
        return latest
    }

    // MARK: - Changes

    /// Creates contact `contactCount + 1`, interning any value not yet known, and links it.
    mutating func append(
        email: String?, emailValue: Int?, phone: String?, phoneValue: Int?, linkedTo primary: UInt32, now: Int64
    ) -> UInt32 {
        let id = UInt32(emailOf.count)
        var emailNumber: UInt32 = 0
        if let emailValue {
            emailNumber = UInt32(emailValue + 1)
        } else if let email {
            emailNumber = UInt32(emails.insert(email, owner: id) + 1)
        }
        var phoneNumber: UInt32 = 0
        if let phoneValue {
            phoneNumber = UInt32(phoneValue + 1)
        } else if let phone {
            phoneNumber = UInt32(phones.insert(phone, owner: id) + 1)
        }
        emailOf.append(emailNumber)
        phoneOf.append(phoneNumber)
        linkedTo.append(primary)
        nextMember.append(0)
        createdAt.append(now)
        updatedAt.append(now)
        if primary == 0 {
            lastMember.append(id)
            profileCount += 1
        } else {
            lastMember.append(0)
            // The new id is the largest of all, so it goes at the end of its profile's list.
            nextMember[Int(lastMember[Int(primary)])] = id
            lastMember[Int(primary)] = id
        }
        return id
    }

    /// Unions the profile of `loser` into that of the older primary `winner`: every member of the
    /// loser's profile, the loser itself included, is relinked to `winner` and gets `now` as its
    /// `updatedAt`; the two member lists are merged in id order.
    mutating func merge(_ loser: UInt32, into winner: UInt32, now: Int64, changed: inout [UInt32]) {
        var member = loser
        while member != 0 {
            linkedTo[Int(member)] = winner
            updatedAt[Int(member)] = max(now, updatedAt[Int(member)])
            changed.append(member)
            member = nextMember[Int(member)]
        }
        let loserLast = lastMember[Int(loser)]
        lastMember[Int(loser)] = 0
        if loser > lastMember[Int(winner)] {
            // Every member of the loser is newer than every member of the winner: append.
            nextMember[Int(lastMember[Int(winner)])] = loser
            lastMember[Int(winner)] = loserLast
            profileCount -= 1
            return
        }
        var tail = winner
        var left = nextMember[Int(winner)]
        var right = loser
        while left != 0 && right != 0 {
            if left < right {
                nextMember[Int(tail)] = left
                tail = left
                left = nextMember[Int(left)]
            } else {
                nextMember[Int(tail)] = right
                tail = right
                right = nextMember[Int(right)]
            }
        }
        if left != 0 {
            nextMember[Int(tail)] = left  // the winner's tail stays its tail
        } else if right != 0 {
            nextMember[Int(tail)] = right
            lastMember[Int(winner)] = loserLast
        } else {
            lastMember[Int(winner)] = tail
        }
        profileCount -= 1
    }
}

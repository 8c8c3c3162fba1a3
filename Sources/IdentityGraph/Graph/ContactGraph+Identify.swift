/// What one identify does to the graph, decided before anything changes, so that a dry run and the
/// real request take the same decision (SPEC.md sections 4, 9 and 10).
enum IdentifyPlan: Equatable {
    /// Nothing new: answer with this profile and write nothing.
    case existing(primary: UInt32)
    /// Create a contact carrying the request's values, linked to `linkedTo` (0: a new primary).
    /// `emailValue` and `phoneValue` are the numbers of the values that exist already.
    case create(emailValue: Int?, phoneValue: Int?, linkedTo: UInt32)
    /// Merge the profile of `loser` into that of the older `winner`, recording the link
    /// (`emailValue`, `phoneValue`) that joined them. A merge never creates a row.
    case merge(winner: UInt32, loser: UInt32, emailValue: Int, phoneValue: Int)

    /// Whether carrying out the plan writes anything.
    var changes: Bool {
        if case .existing = self { return false }
        return true
    }
}

/// What the graph changed in one operation, for the engine to write to the store.
struct GraphChanges {
    /// Rows created or changed, in the order they changed.
    var rows: [UInt32] = []
    var linksAdded: [UInt64] = []
    var linksRemoved: [UInt64] = []
    var rulesAdded: [UInt64] = []
    var rulesRemoved: [UInt64] = []

    var isEmpty: Bool {
        rows.isEmpty && linksAdded.isEmpty && linksRemoved.isEmpty && rulesAdded.isEmpty && rulesRemoved.isEmpty
    }

    /// Empties every list, keeping its capacity; on every identify's path, so it touches only what
    /// holds something.
    mutating func removeAll() {
        if !rows.isEmpty { rows.removeAll(keepingCapacity: true) }
        if !linksAdded.isEmpty { linksAdded.removeAll(keepingCapacity: true) }
        if !linksRemoved.isEmpty { linksRemoved.removeAll(keepingCapacity: true) }
        if !rulesAdded.isEmpty { rulesAdded.removeAll(keepingCapacity: true) }
        if !rulesRemoved.isEmpty { rulesRemoved.removeAll(keepingCapacity: true) }
    }
}

extension ContactGraph {
    /// Decides what identify of (`email`, `phone`) does under `limits` and the keep-apart rules
    /// (steps 2 and 3 of SPEC.md section 10; the blocklist, step 1, is applied before this). Values
    /// it holds back are appended to `ignored`.
    func plan(email: String?, phone: String?, limits: ProfileLimits, ignored: inout [IgnoredValue]) -> IdentifyPlan {
        let emailValue = email.flatMap { emails.find($0) }
        let phoneValue = phone.flatMap { phones.find($0) }
        let emailPrimary = emailValue.map { primary(of: emails.owners[$0]) }
        let phonePrimary = phoneValue.map { primary(of: phones.owners[$0]) }

        switch (emailPrimary, phonePrimary) {
        case (nil, nil):
            // A new primary is never refused for a limit. Its two values cannot form a keep-apart
            // rule: a rule's values are carried by live contacts, and these are carried by none.
            return .create(emailValue: nil, phoneValue: nil, linkedTo: 0)
        case (let profile?, nil):
            guard phone != nil else { return .existing(primary: profile) }
            if limits.maxPhones > 0, distinctValues(of: profile, phones: true) + 1 > limits.maxPhones {
                ignored.append(Self.limitReached(.phoneNumber, limits.maxPhones))
                return .existing(primary: profile)
            }
            return .create(emailValue: emailValue, phoneValue: nil, linkedTo: profile)
        case (nil, let profile?):
            guard email != nil else { return .existing(primary: profile) }
            if limits.maxEmails > 0, distinctValues(of: profile, phones: false) + 1 > limits.maxEmails {
                ignored.append(Self.limitReached(.email, limits.maxEmails))
                return .existing(primary: profile)
            }
            return .create(emailValue: nil, phoneValue: phoneValue, linkedTo: profile)
        case (let first?, let second?):
            if first == second { return .existing(primary: first) }
            if let refusal = mergeRefusal(first, second, limits: limits) {
                // The email has priority: answer with its profile and leave the phone out.
                ignored.append(refusal)
                return .existing(primary: first)
            }
            return .merge(
                winner: min(first, second), loser: max(first, second), emailValue: emailValue!, phoneValue: phoneValue!
            )
        }
    }

    /// Carries out `plan` (made by ``plan(email:phone:limits:ignored:)`` on this very graph) and
    /// returns the primary of the profile to answer with. Records every change in `changes`.
    mutating func apply(
        _ plan: IdentifyPlan, email: String?, phone: String?, now: Int64, changes: inout GraphChanges
    ) -> UInt32 {
        switch plan {
        case .existing(let primary):
            return primary
        case .create(let emailValue, let phoneValue, let linkedTo):
            let id = append(
                email: email, emailValue: emailValue, phone: phone, phoneValue: phoneValue, linkedTo: linkedTo, now: now
            )
            changes.rows.append(id)
            return linkedTo == 0 ? id : linkedTo
        case .merge(let winner, let loser, let emailValue, let phoneValue):
            merge(loser, into: winner, now: now, changed: &changes.rows)
            changes.linksAdded.append(links.add(email: emailValue, phone: phoneValue, at: now))
            return winner
        }
    }

    /// Why merging the profiles of primaries `first` (the email's) and `second` must not happen, if
    /// it must not: a limit it would exceed, or a keep-apart rule it would break.
    private func mergeRefusal(_ first: UInt32, _ second: UInt32, limits: ProfileLimits) -> IgnoredValue? {
        if limits.maxEmails > 0,
            distinctValues(of: first, phones: false) + distinctValues(of: second, phones: false) > limits.maxEmails
        {
            return Self.limitReached(.phoneNumber, limits.maxEmails, of: .email, merging: "emails")
        }
        if limits.maxPhones > 0,
            distinctValues(of: first, phones: true) + distinctValues(of: second, phones: true) > limits.maxPhones
        {
            return Self.limitReached(.phoneNumber, limits.maxPhones, of: .phoneNumber, merging: "phone numbers")
        }
        // Rules are set by operators one at a time, so there are few; a rule whose values already
        // share a profile refuses nothing.
        for (_, rule) in rules.isEmpty ? [] : rules.ordered {
            let emailSide = primary(of: emails.owners[rule.email])
            let phoneSide = primary(of: phones.owners[rule.phone])
            if (emailSide == first && phoneSide == second) || (emailSide == second && phoneSide == first) {
                return IgnoredValue(
                    field: .phoneNumber, reason: .keptApart,
                    detail: "a keep-apart rule keeps the profiles of this email and this phone number apart"
                )
            }
        }
        return nil
    }

    private static func limitReached(
        _ field: GuardField, _ limit: Int, of limitField: GuardField? = nil, merging kind: String? = nil
    ) -> IgnoredValue {
        let detail = if let kind {
            "merging the two profiles would give one profile more than \(limit) \(kind)"
        } else {
            "the profile already holds the most \(field == .email ? "emails" : "phone numbers") allowed (\(limit))"
        }
        return IgnoredValue(field: field, reason: .limit, detail: detail, limit: limitField ?? field)
    }

    /// How many distinct emails (or phone numbers) the profile of `primary` holds: each value is
    /// counted at its owner, its first carrier.
    func distinctValues(of primary: UInt32, phones countPhones: Bool) -> Int {
        var count = 0
        var member = primary
        while member != 0 {
            let index = Int(member)
            if countPhones {
                let value = phoneOf[index]
                if value != 0 && phones.owners[Int(value - 1)] == member { count += 1 }
            } else {
                let value = emailOf[index]
                if value != 0 && emails.owners[Int(value - 1)] == member { count += 1 }
            }
            member = nextMember[index]
        }
        return count
    }

    // MARK: - Dry runs

    /// Writes the profile that carrying out `plan` would answer with, without carrying it out: the
    /// members of the profile (or of both, for a merge) in id order, then the contact it would
    /// create, which has the largest id of all and brings only its new values.
    func writeProjectedProfileJSON(_ plan: IdentifyPlan, email: String?, phone: String?, into writer: inout JSONWriter) {
        let newId = UInt32(contactCount + 1)
        let primary: UInt32
        var other: UInt32 = 0
        var newEmail: String?
        var newPhone: String?
        var creates = false
        switch plan {
        case .existing(let existing):
            writeProfileJSON(primary: existing, into: &writer)
            return
        case .create(let emailValue, let phoneValue, let linkedTo):
            primary = linkedTo == 0 ? newId : linkedTo
            newEmail = emailValue == nil ? email : nil
            newPhone = phoneValue == nil ? phone : nil
            creates = true
        case .merge(let winner, let loser, _, _):
            primary = winner
            other = loser
        }
        let members = mergedMembers(primary == newId ? 0 : primary, other)
        ProfileJSON.write(
            primaryContactId: Int(primary), into: &writer,
            emails: { writeOwned(by: members, values: emailOf, table: emails, then: newEmail, into: &$0) },
            phoneNumbers: { writeOwned(by: members, values: phoneOf, table: phones, then: newPhone, into: &$0) },
            secondaryContactIds: { writer in
                var first = true
                for member in members where member != primary {
                    if !first { writer.raw(",") }
                    first = false
                    writer.integer(UInt64(member))
                }
                if creates && newId != primary {
                    if !first { writer.raw(",") }
                    writer.integer(UInt64(newId))
                }
            }
        )
    }

    /// The values `members` own (each distinct value once, by first carrier), in their order, then
    /// `extra` (a value no contact carries yet), comma-separated.
    private func writeOwned(
        by members: [UInt32], values: [UInt32], table: ValueTable, then extra: String?, into writer: inout JSONWriter
    ) {
        var first = true
        for member in members {
            let value = values[Int(member)]
            guard value != 0, table.owners[Int(value - 1)] == member else { continue }
            if !first { writer.raw(",") }
            first = false
            table.withBytes(Int(value - 1)) { writer.string(utf8: $0) }
        }
        if let extra {
            if !first { writer.raw(",") }
            writer.string(extra)
        }
    }

    /// The members of the profiles of `first` and `second` (either may be 0: none), in id order.
    func mergedMembers(_ first: UInt32, _ second: UInt32) -> [UInt32] {
        var result: [UInt32] = []
        var left = first
        var right = second
        while left != 0 || right != 0 {
            if right == 0 || (left != 0 && left < right) {
                result.append(left)
                left = nextMember[Int(left)]
            } else {
                result.append(right)
                right = nextMember[Int(right)]
            }
        }
        return result
    }
}

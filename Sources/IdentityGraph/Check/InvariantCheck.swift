/// Verifies a set of Contact rows against the invariants of SPEC.md section 2. Operators run it
/// (`identity-graph check`) after an incident; the tests run it after every scenario they build.
public struct InvariantCheck: Sendable {
    /// What was found, for the summary line.
    public var contacts = 0
    public var profiles = 0
    public var largestProfile = 0
    /// Every broken invariant, one sentence each, naming the contacts (and values) involved.
    public var violations: [String] = []
    /// The same, each with what it is about and a reason that names no email or phone number, for
    /// reports that go to logs (a restore's, which point at the line of a file).
    public var findings: [Finding] = []

    public var isValid: Bool { violations.isEmpty }

    /// One broken invariant.
    public struct Finding: Sendable, Hashable {
        public enum Subject: Sendable, Hashable {
            /// The Contact row with this id.
            case contact(Int)
            /// The link, or keep-apart rule, at this position of the list checked (oldest first).
            case link(Int)
            case keepApart(Int)
        }

        public var subject: Subject
        /// The violation in words, without emails or phone numbers.
        public var reason: String
    }

    private mutating func add(_ subject: Finding.Subject, _ sentence: String, reason: String? = nil) {
        violations.append(sentence)
        findings.append(Finding(subject: subject, reason: reason ?? sentence))
    }

    /// Checks a whole store: its rows (see ``init(contacts:)``), and its links and keep-apart rules
    /// (see ``checkPairs(_:)``).
    public init(contents: StoreContents) {
        self.init(contacts: contents.contacts)
        checkPairs(contents)
    }

    /// Checks that every link and keep-apart rule of `contents` names values carried by live
    /// contacts, that a link's two values share a profile, and that each profile is connected by
    /// shared values and links (SPEC.md section 2). The rows should have passed ``init(contacts:)``.
    public mutating func checkPairs(_ contents: StoreContents) {
        let rows = contents.contacts
        let position = Self.positions(of: rows)
        var primaryRow = [Int](repeating: -1, count: rows.count)
        // Which profile holds each value: needed only to place links and rules.
        let placesPairs = !contents.links.isEmpty || !contents.keepApart.isEmpty
        var emailPrimary: [String: Int] = [:]
        var phonePrimary: [String: Int] = [:]
        if placesPairs {
            emailPrimary.reserveCapacity(rows.count)
            phonePrimary.reserveCapacity(rows.count)
        }
        for (index, row) in rows.enumerated() where row.deletedAt == nil {
            let primary = row.linkedId ?? row.id
            primaryRow[index] = position(primary) ?? -1
            guard placesPairs else { continue }
            if let email = row.email { emailPrimary[email] = primary }
            if let phone = row.phoneNumber { phonePrimary[phone] = primary }
        }
        var linksOfProfile: [Int: [StoredPair]] = [:]
        for (index, link) in contents.links.enumerated() {
            guard let first = emailPrimary[link.email], let second = phonePrimary[link.phoneNumber] else {
                add(.link(index), "a link dated \(link.at) names a value that no live contact carries")
                continue
            }
            if first != second {
                add(.link(index), "a link dated \(link.at) joins values of two profiles, \(first) and \(second)")
            }
            linksOfProfile[first, default: []].append(link)
        }
        for (index, rule) in contents.keepApart.enumerated()
        where emailPrimary[rule.email] == nil || phonePrimary[rule.phoneNumber] == nil {
            add(.keepApart(index), "a keep-apart rule dated \(rule.at) names a value that no live contact carries")
        }
        let grouping = Self.group(primaryRow)
        for (primary, range) in grouping.groups where range.count > 1 {
            let profile = grouping.order[range].map { rows[$0] }
            let primaryId = rows[primary].id
            if !Self.isConnected(profile, links: linksOfProfile[primaryId] ?? []) {
                add(.contact(primaryId), "profile \(primaryId) is not connected by shared values and links")
            }
        }
    }

    /// The position of each row by its id: arithmetic when the ids are dense, as a store's are.
    private static func positions(of rows: [Contact]) -> (Int) -> Int? {
        if rows.indices.allSatisfy({ rows[$0].id == $0 + 1 }) {
            let count = rows.count
            return { id in id >= 1 && id <= count ? id - 1 : nil }
        }
        var byId: [Int: Int] = [:]
        byId.reserveCapacity(rows.count)
        for (index, row) in rows.enumerated() where byId[row.id] == nil { byId[row.id] = index }
        return { byId[$0] }
    }

    /// Rows grouped by the position of their primary (`primaryRow`, -1 for rows in no profile),
    /// without a collection per profile (a store has about as many profiles as rows): `order` lists
    /// row positions group by group, each group in row order, and `groups` each group's primary
    /// position and range in `order`, in primary position order.
    private static func group(_ primaryRow: [Int]) -> (order: [Int], groups: [(primary: Int, range: Range<Int>)]) {
        var start = [Int](repeating: 0, count: primaryRow.count + 1)
        for primary in primaryRow where primary >= 0 { start[primary + 1] += 1 }
        for index in primaryRow.indices { start[index + 1] += start[index] }
        var next = start
        var order = [Int](repeating: 0, count: start[primaryRow.count])
        for (index, primary) in primaryRow.enumerated() where primary >= 0 {
            order[next[primary]] = index
            next[primary] += 1
        }
        var groups: [(primary: Int, range: Range<Int>)] = []
        for primary in primaryRow.indices where start[primary + 1] > start[primary] {
            groups.append((primary, start[primary]..<start[primary + 1]))
        }
        return (order, groups)
    }

    /// Whether shared values and `links` join every member of `profile` into one group.
    private static func isConnected(_ profile: [Contact], links: [StoredPair]) -> Bool {
        var parent = Array(0..<profile.count)
        func find(_ index: Int) -> Int {
            var root = index
            while parent[root] != root { root = parent[root] }
            return root
        }
        func union(_ first: Int, _ second: Int) { parent[find(first)] = find(second) }
        var byEmail: [String: Int] = [:]
        var byPhone: [String: Int] = [:]
        for (index, row) in profile.enumerated() {
            if let email = row.email {
                if let other = byEmail[email] { union(index, other) } else { byEmail[email] = index }
            }
            if let phone = row.phoneNumber {
                if let other = byPhone[phone] { union(index, other) } else { byPhone[phone] = index }
            }
        }
        for link in links {
            if let first = byEmail[link.email], let second = byPhone[link.phoneNumber] { union(first, second) }
        }
        let root = find(0)
        return (1..<profile.count).allSatisfy { find($0) == root }
    }

    /// Checks `contacts`, which must be every row of a store in id order.
    public init(contacts rows: [Contact]) {
        contacts = rows.count
        let position = Self.positions(of: rows)
        for (index, row) in rows.enumerated() {
            if row.id != index + 1 {
                add(.contact(row.id), "contact ids are not dense: found \(row.id) where \(index + 1) was expected")
            }
            if row.updatedAt < row.createdAt {
                add(.contact(row.id), "contact \(row.id): updatedAt \(row.updatedAt) is earlier than createdAt \(row.createdAt)")
            }
            if index > 0, row.createdAt < rows[index - 1].createdAt {
                add(.contact(row.id), "contact \(row.id) was created before the older contact \(rows[index - 1].id)")
            }
            if row.deletedAt != nil {
                if row.email != nil || row.phoneNumber != nil || row.linkedId != nil {
                    add(.contact(row.id), "erased contact \(row.id) still has an email, a phone number or a link")
                }
            } else if row.email == nil && row.phoneNumber == nil {
                add(.contact(row.id), "contact \(row.id) has neither an email nor a phone number")
            }
        }
        // Each live row's profile, by the position of its primary; -1 for rows in none.
        var primaryRow = [Int](repeating: -1, count: rows.count)
        for (index, row) in rows.enumerated() where row.deletedAt == nil {
            guard let linkedId = row.linkedId else {
                primaryRow[index] = index
                continue
            }
            guard let primary = position(linkedId) else {
                add(.contact(row.id), "contact \(row.id) links to contact \(linkedId), which does not exist")
                continue
            }
            guard rows[primary].linkedId == nil, rows[primary].deletedAt == nil else {
                let what = rows[primary].deletedAt == nil ? "is itself a secondary" : "was erased"
                add(.contact(row.id), "contact \(row.id) links to contact \(linkedId), which \(what)")
                continue
            }
            primaryRow[index] = primary
        }
        let grouping = Self.group(primaryRow)
        profiles = grouping.groups.count
        largestProfile = grouping.groups.map(\.range.count).max() ?? 0
        var emailProfile: [String: Int] = [:]
        var phoneProfile: [String: Int] = [:]
        emailProfile.reserveCapacity(rows.count)
        phoneProfile.reserveCapacity(rows.count)
        for (primary, range) in grouping.groups {
            let primaryId = rows[primary].id
            let members = grouping.order[range]
            let oldest = rows[members.min { (rows[$0].createdAt, rows[$0].id) < (rows[$1].createdAt, rows[$1].id) }!]
            if oldest.id != primaryId {
                add(.contact(oldest.id), "profile \(primaryId): its oldest contact \(oldest.id) is not its primary")
            }
            for member in members {
                let row = rows[member]
                if let email = row.email, let other = emailProfile.updateValue(primaryId, forKey: email),
                    other != primaryId
                {
                    add(
                        .contact(row.id), "email \(email) belongs to profiles \(other) and \(primaryId)",
                        reason: "contact \(row.id): its email belongs to profiles \(other) and \(primaryId)"
                    )
                }
                if let phone = row.phoneNumber, let other = phoneProfile.updateValue(primaryId, forKey: phone),
                    other != primaryId
                {
                    add(
                        .contact(row.id), "phone number \(phone) belongs to profiles \(other) and \(primaryId)",
                        reason: "contact \(row.id): its phone number belongs to profiles \(other) and \(primaryId)"
                    )
                }
            }
        }
    }

    /// `N contacts, M profiles, largest profile K contacts, V violations`.
    public var summary: String {
        "\(contacts) contacts, \(profiles) profiles, largest profile \(largestProfile) contacts, "
            + "\(violations.count) violation\(violations.count == 1 ? "" : "s")"
    }
}

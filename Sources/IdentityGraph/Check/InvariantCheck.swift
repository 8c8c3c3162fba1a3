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
        var emailPrimary: [String: Int] = [:]
        var phonePrimary: [String: Int] = [:]
        var members: [Int: [Contact]] = [:]
        for row in contents.contacts where row.deletedAt == nil {
            let primary = row.linkedId ?? row.id
            if let email = row.email { emailPrimary[email] = primary }
            if let phone = row.phoneNumber { phonePrimary[phone] = primary }
            members[primary, default: []].append(row)
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
        for (primary, profile) in members.sorted(by: { $0.key < $1.key }) where profile.count > 1 {
            if !Self.isConnected(profile, links: linksOfProfile[primary] ?? []) {
                add(.contact(primary), "profile \(primary) is not connected by shared values and links")
            }
        }
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
        var byId: [Int: Contact] = [:]
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
            byId[row.id] = row
        }
        var members: [Int: [Contact]] = [:]
        for row in rows where row.deletedAt == nil {
            guard let linkedId = row.linkedId else {
                members[row.id, default: []].append(row)
                continue
            }
            guard let primary = byId[linkedId] else {
                add(.contact(row.id), "contact \(row.id) links to contact \(linkedId), which does not exist")
                continue
            }
            guard primary.linkedId == nil, primary.deletedAt == nil else {
                let what = primary.deletedAt == nil ? "is itself a secondary" : "was erased"
                add(.contact(row.id), "contact \(row.id) links to contact \(linkedId), which \(what)")
                continue
            }
            members[linkedId, default: []].append(row)
        }
        profiles = members.count
        largestProfile = members.values.map(\.count).max() ?? 0
        var emailProfile: [String: Int] = [:]
        var phoneProfile: [String: Int] = [:]
        for (primaryId, profile) in members.sorted(by: { $0.key < $1.key }) {
            let oldest = profile.min { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }!
            if oldest.id != primaryId {
                add(.contact(oldest.id), "profile \(primaryId): its oldest contact \(oldest.id) is not its primary")
            }
            for row in profile {
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

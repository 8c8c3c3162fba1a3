/// Verifies a set of Contact rows against the invariants of SPEC.md section 2. Operators run it
/// (`identity-graph check`) after an incident; the tests run it after every scenario they build.
public struct InvariantCheck: Sendable {
    /// What was found, for the summary line.
    public var contacts = 0
    public var profiles = 0
    public var largestProfile = 0
    /// Every broken invariant, one sentence each, naming the contacts involved.
    public var violations: [String] = []

    public var isValid: Bool { violations.isEmpty }

    /// Checks a whole store: its rows (see ``init(contacts:)``), and that every link and keep-apart
    /// rule names values carried by live contacts, that a link's two values share a profile, and that
    /// each profile is connected by shared values and links (SPEC.md section 2).
    public init(contents: StoreContents) {
        self.init(contacts: contents.contacts)
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
        for link in contents.links {
            guard let first = emailPrimary[link.email], let second = phonePrimary[link.phoneNumber] else {
                violations.append("a link dated \(link.at) names a value that no live contact carries")
                continue
            }
            if first != second {
                violations.append("a link dated \(link.at) joins values of two profiles, \(first) and \(second)")
            }
            linksOfProfile[first, default: []].append(link)
        }
        for rule in contents.keepApart where emailPrimary[rule.email] == nil || phonePrimary[rule.phoneNumber] == nil {
            violations.append("a keep-apart rule dated \(rule.at) names a value that no live contact carries")
        }
        for (primary, profile) in members.sorted(by: { $0.key < $1.key }) where profile.count > 1 {
            if !Self.isConnected(profile, links: linksOfProfile[primary] ?? []) {
                violations.append("profile \(primary) is not connected by shared values and links")
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
                violations.append("contact ids are not dense: found \(row.id) where \(index + 1) was expected")
            }
            if row.updatedAt < row.createdAt {
                violations.append("contact \(row.id): updatedAt \(row.updatedAt) is earlier than createdAt \(row.createdAt)")
            }
            if index > 0, row.createdAt < rows[index - 1].createdAt {
                violations.append("contact \(row.id) was created before the older contact \(rows[index - 1].id)")
            }
            if row.deletedAt != nil {
                if row.email != nil || row.phoneNumber != nil || row.linkedId != nil {
                    violations.append("erased contact \(row.id) still has an email, a phone number or a link")
                }
            } else if row.email == nil && row.phoneNumber == nil {
                violations.append("contact \(row.id) has neither an email nor a phone number")
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
                violations.append("contact \(row.id) links to contact \(linkedId), which does not exist")
                continue
            }
            guard primary.linkedId == nil, primary.deletedAt == nil else {
                let what = primary.deletedAt == nil ? "is itself a secondary" : "was erased"
                violations.append("contact \(row.id) links to contact \(linkedId), which \(what)")
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
                violations.append("profile \(primaryId): its oldest contact \(oldest.id) is not its primary")
            }
            for row in profile {
                if let email = row.email, let other = emailProfile.updateValue(primaryId, forKey: email),
                    other != primaryId
                {
                    violations.append("email \(email) belongs to profiles \(other) and \(primaryId)")
                }
                if let phone = row.phoneNumber, let other = phoneProfile.updateValue(primaryId, forKey: phone),
                    other != primaryId
                {
                    violations.append("phone number \(phone) belongs to profiles \(other) and \(primaryId)")
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

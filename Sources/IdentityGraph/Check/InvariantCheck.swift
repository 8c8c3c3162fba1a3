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
            if row.email == nil && row.phoneNumber == nil {
                violations.append("contact \(row.id) has neither an email nor a phone number")
            }
            byId[row.id] = row
        }
        var members: [Int: [Contact]] = [:]
        for row in rows {
            guard let linkedId = row.linkedId else {
                members[row.id, default: []].append(row)
                continue
            }
            guard let primary = byId[linkedId] else {
                violations.append("contact \(row.id) links to contact \(linkedId), which does not exist")
                continue
            }
            guard primary.linkedId == nil else {
                violations.append("contact \(row.id) links to contact \(linkedId), which is itself a secondary")
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

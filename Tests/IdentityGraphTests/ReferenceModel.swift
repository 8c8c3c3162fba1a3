import ConformanceSupport
@testable import IdentityGraph

/// A deliberately simple identify, written straight from SPEC.md section 4 with a list of rows and
/// linear scans, for the model-based tests to compare the engine against.
struct ReferenceModel {
    struct Row: Hashable {
        var id: Int
        var email: String?
        var phoneNumber: String?
        var linkedId: Int?
    }

    private(set) var rows: [Row] = []

    private func primary(of row: Row) -> Int { row.linkedId ?? row.id }

    mutating func identify(email: String?, phoneNumber: String?) -> Profile {
        let matches = rows.filter { (email != nil && $0.email == email) || (phoneNumber != nil && $0.phoneNumber == phoneNumber) }
        if matches.isEmpty {
            rows.append(Row(id: rows.count + 1, email: email, phoneNumber: phoneNumber, linkedId: nil))
            return profile(primary: rows.count)
        }
        let primaries = Set(matches.map(primary(of:)))
        let winner = primaries.min()!
        for index in rows.indices where primaries.contains(primary(of: rows[index])) && rows[index].id != winner {
            rows[index].linkedId = winner
        }
        let emailIsNew = email != nil && !rows.contains { $0.email == email }
        let phoneIsNew = phoneNumber != nil && !rows.contains { $0.phoneNumber == phoneNumber }
        if emailIsNew || phoneIsNew {
            rows.append(Row(id: rows.count + 1, email: email, phoneNumber: phoneNumber, linkedId: winner))
        }
        return profile(primary: winner)
    }

    func profile(primary: Int) -> Profile {
        let members = rows.filter { self.primary(of: $0) == primary }
        var emails: [String] = []
        var phones: [String] = []
        for row in members {
            if let email = row.email, !emails.contains(email) { emails.append(email) }
            if let phone = row.phoneNumber, !phones.contains(phone) { phones.append(phone) }
        }
        return Profile(
            primaryContactId: primary, emails: emails, phoneNumbers: phones,
            secondaryContactIds: members.map(\.id).filter { $0 != primary }
        )
    }
}

extension ReferenceModel.Row {
    init(_ contact: Contact) {
        self.init(id: contact.id, email: contact.email, phoneNumber: contact.phoneNumber, linkedId: contact.linkedId)
    }
}

/// Random identify requests over small universes of emails and phones, so that links and merges
/// are frequent.
struct RequestGenerator {
    var random: SeededGenerator
    var emails: Int
    var phones: Int

    init(seed: UInt64, emails: Int = 8, phones: Int = 8) {
        random = SeededGenerator(seed: seed)
        self.emails = emails
        self.phones = phones
    }

    mutating func next() -> IdentifyRequest {
        while true {
            let email = Int.random(in: 0..<10, using: &random) < 7 ? "e\(Int.random(in: 0..<emails, using: &random))@x.io" : nil
            let phone = Int.random(in: 0..<10, using: &random) < 7 ? "\(Int.random(in: 0..<phones, using: &random))" : nil
            if let request = try? IdentifyRequest(email: email, phoneNumber: phone) { return request }
        }
    }
}

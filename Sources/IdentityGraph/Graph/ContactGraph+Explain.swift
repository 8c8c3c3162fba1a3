/// Why two contacts are one person (SPEC.md section 11): a shortest chain of live contacts.
public struct Explanation: Sendable, Hashable {
    /// What joins the two contacts of a step.
    public enum Join: Sendable, Hashable {
        case email(String)
        case phoneNumber(String)
        /// A merge without a new row: one contact carries the link's email, the other its phone.
        case link(StoredPair)
    }

    public struct Step: Sendable, Hashable {
        public var from: Int
        public var to: Int
        public var join: Join
    }

    public var linked: Bool
    public var steps: [Step]

    /// `{"linked":true,"steps":[{"from":1,"to":2,"email":"..."}, ...]}`.
    public var json: [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"linked\":")
        writer.raw(linked ? "true" : "false")
        writer.raw(",\"steps\":[")
        for (index, step) in steps.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw("{\"from\":")
            writer.integer(step.from)
            writer.raw(",\"to\":")
            writer.integer(step.to)
            switch step.join {
            case .email(let email):
                writer.raw(",\"email\":")
                writer.string(email)
            case .phoneNumber(let phone):
                writer.raw(",\"phoneNumber\":")
                writer.string(phone)
            case .link(let link):
                writer.raw(",\"link\":")
                link.writeJSON(into: &writer)
            }
            writer.raw("}")
        }
        writer.raw("]}")
        return writer.bytes
    }
}

/// An email and a phone number with a time: a link or a keep-apart rule, as answers and exports
/// show them.
public struct StoredPair: Sendable, Hashable {
    public var email: String
    public var phoneNumber: String
    public var at: Timestamp

    public init(email: String, phoneNumber: String, at: Timestamp) {
        self.email = email
        self.phoneNumber = phoneNumber
        self.at = at
    }

    /// `{"email":...,"phoneNumber":...,"at":...}`.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{\"email\":")
        writer.string(email)
        writer.raw(",\"phoneNumber\":")
        writer.string(phoneNumber)
        writer.raw(",\"at\":")
        writer.string(at.description)
        writer.raw("}")
    }
}

extension ContactGraph {
    /// A link or rule as text.
    func storedPair(_ pair: ValuePairs.Pair) -> StoredPair {
        StoredPair(
            email: emails.text(pair.email), phoneNumber: phones.text(pair.phone),
            at: Timestamp(millisecondsSince1970: pair.at)
        )
    }

    /// The explanation of why `from` and `to` (both existing contacts) are one person, or that they
    /// are not. Searches the members of their one profile only, breadth first from `to`, so its cost
    /// is bounded by the size of that profile.
    func explain(from source: UInt32, to target: UInt32) -> Explanation {
        if isErased(source) || isErased(target) || primary(of: source) != primary(of: target) {
            return Explanation(linked: false, steps: [])
        }
        if source == target { return Explanation(linked: true, steps: []) }
        let members = members(of: primary(of: source))
        var emailCarriers: [UInt32: [UInt32]] = [:]  // value number + 1 → carriers, ascending
        var phoneCarriers: [UInt32: [UInt32]] = [:]
        for member in members {
            if emailOf[Int(member)] != 0 { emailCarriers[emailOf[Int(member)], default: []].append(member) }
            if phoneOf[Int(member)] != 0 { phoneCarriers[phoneOf[Int(member)], default: []].append(member) }
        }
        func neighbours(_ member: UInt32) -> [UInt32] {
            var result: [UInt32] = []
            let email = emailOf[Int(member)]
            let phone = phoneOf[Int(member)]
            if email != 0 {
                result += emailCarriers[email] ?? []
                for number in links.numbers(email: Int(email - 1)) {
                    result += phoneCarriers[UInt32(links[number]!.phone + 1)] ?? []
                }
            }
            if phone != 0 {
                result += phoneCarriers[phone] ?? []
                for number in links.numbers(phone: Int(phone - 1)) {
                    result += emailCarriers[UInt32(links[number]!.email + 1)] ?? []
                }
            }
            return result.filter { $0 != member }
        }
        // Distances to `target`; then from `source`, always step to the smallest id one step closer,
        // which gives the shortest chain whose id sequence is smallest.
        var distance: [UInt32: Int] = [target: 0]
        var queue = [target]
        var head = 0
        while head < queue.count {
            let member = queue[head]
            head += 1
            for next in neighbours(member) where distance[next] == nil {
                distance[next] = distance[member]! + 1
                queue.append(next)
            }
        }
        guard distance[source] != nil else {
            // Unreachable while the invariants hold: a profile is connected.
            return Explanation(linked: false, steps: [])
        }
        var steps: [Explanation.Step] = []
        var current = source
        while current != target {
            let closer = distance[current]! - 1
            let next = neighbours(current).filter { distance[$0] == closer }.min()!
            steps.append(Explanation.Step(from: Int(current), to: Int(next), join: join(current, next)))
            current = next
        }
        return Explanation(linked: true, steps: steps)
    }

    /// What joins two adjacent contacts: a shared email, else a shared phone number, else the
    /// oldest link between them.
    private func join(_ first: UInt32, _ second: UInt32) -> Explanation.Join {
        let (email1, phone1) = (emailOf[Int(first)], phoneOf[Int(first)])
        let (email2, phone2) = (emailOf[Int(second)], phoneOf[Int(second)])
        if email1 != 0 && email1 == email2 { return .email(emails.text(Int(email1 - 1))) }
        if phone1 != 0 && phone1 == phone2 { return .phoneNumber(phones.text(Int(phone1 - 1))) }
        var candidates: [UInt64] = []
        if email1 != 0, phone2 != 0, let number = links.find(email: Int(email1 - 1), phone: Int(phone2 - 1)) {
            candidates.append(number)
        }
        if email2 != 0, phone1 != 0, let number = links.find(email: Int(email2 - 1), phone: Int(phone1 - 1)) {
            candidates.append(number)
        }
        return .link(storedPair(links[candidates.min()!]!))
    }

    // MARK: - Look-ups

    /// The primaries of the profiles holding `email` or `phone`, ascending, each once.
    func primaries(holding email: String?, _ phone: String?) -> [UInt32] {
        var result: [UInt32] = []
        if let email, let value = emails.find(email) { result.append(primary(of: emails.owners[value])) }
        if let phone, let value = phones.find(phone) {
            let other = primary(of: phones.owners[value])
            if !result.contains(other) { result.append(other) }
        }
        return result.sorted()
    }

    /// The number of the email value `email`, if a live contact carries it.
    func emailValue(_ email: String) -> Int? { emails.find(email) }

    /// The number of the phone value `phone`, if a live contact carries it.
    func phoneValue(_ phone: String) -> Int? { phones.find(phone) }

    /// The primary of the profile holding email value `value`.
    func primary(ofEmail value: Int) -> UInt32 { primary(of: emails.owners[value]) }

    /// The primary of the profile holding phone value `value`.
    func primary(ofPhone value: Int) -> UInt32 { primary(of: phones.owners[value]) }
}

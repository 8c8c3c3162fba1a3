/// What an erasure or an unmerge did to the profiles it touched (SPEC.md section 12).
struct SplitOutcome {
    /// The primaries of every piece of every touched profile, changed or not, ascending.
    var pieces: [UInt32] = []
    /// The contacts that became tombstones, ascending.
    var erased: [UInt32] = []
    /// The primaries of the touched profiles as they were before, ascending.
    var previousPrimaries: [UInt32] = []
}

extension ContactGraph {
    /// The live members of the profile of `primary`, in id order.
    func members(of primary: UInt32) -> [UInt32] {
        var result: [UInt32] = []
        var member = primary
        while member != 0 {
            result.append(member)
            member = nextMember[Int(member)]
        }
        return result
    }

    /// Erases the live contacts `ids` (any profiles): each becomes a tombstone, and what is left of
    /// each profile they were in is split again.
    mutating func erase(contacts ids: [UInt32], now: Int64, changes: inout GraphChanges) -> SplitOutcome {
        let previous = Set(ids.map { primary(of: $0) }).sorted()
        let before = previous.flatMap { members(of: $0) }.sorted()
        let carried = values(carriedBy: before)
        var touched = Set<UInt32>()
        for id in ids { makeTombstone(id, now: now, touched: &touched) }
        var outcome = resplit(before, profiles: previous.count, carried: carried, touched: touched, now: now, changes: &changes)
        outcome.erased = ids.sorted()
        outcome.previousPrimaries = previous
        return outcome
    }

    /// Removes email value `emailValue` and phone value `phoneValue` (either may be absent) from
    /// every live contact that carries them; a contact left with neither becomes a tombstone.
    mutating func erase(emailValue: Int?, phoneValue: Int?, now: Int64, changes: inout GraphChanges) -> SplitOutcome {
        var previous = Set<UInt32>()
        if let emailValue { previous.insert(primary(of: emails.owners[emailValue])) }
        if let phoneValue { previous.insert(primary(of: phones.owners[phoneValue])) }
        let before = previous.flatMap { members(of: $0) }.sorted()
        let carried = values(carriedBy: before)
        var touched = Set<UInt32>()
        var erased: [UInt32] = []
        for member in before {
            let index = Int(member)
            if let emailValue, emailOf[index] == UInt32(emailValue + 1) {
                emailOf[index] = 0
                touched.insert(member)
            }
            if let phoneValue, phoneOf[index] == UInt32(phoneValue + 1) {
                phoneOf[index] = 0
                touched.insert(member)
            }
            if emailOf[index] == 0 && phoneOf[index] == 0 {
                makeTombstone(member, now: now, touched: &touched)
                erased.append(member)
            }
        }
        var outcome = resplit(before, profiles: previous.count, carried: carried, touched: touched, now: now, changes: &changes)
        outcome.erased = erased
        outcome.previousPrimaries = previous.sorted()
        return outcome
    }

    /// Deletes link `number` and splits its profile again if the link was what held it together.
    mutating func unmerge(link number: UInt64, now: Int64, changes: inout GraphChanges) -> SplitOutcome {
        let pair = links[number]!
        let previous = primary(of: emails.owners[pair.email])
        let before = members(of: previous)
        let carried = values(carriedBy: before)
        links.remove(number)
        changes.linksRemoved.append(number)
        var outcome = resplit(before, profiles: 1, carried: carried, touched: [], now: now, changes: &changes)
        outcome.previousPrimaries = [previous]
        return outcome
    }

    /// Records a keep-apart rule for email value `email` and phone value `phone`, unless one exists.
    mutating func addRule(email: Int, phone: Int, now: Int64, changes: inout GraphChanges) {
        guard rules.find(email: email, phone: phone) == nil else { return }
        changes.rulesAdded.append(rules.add(email: email, phone: phone, at: now))
    }

    mutating func removeRule(_ number: UInt64, changes: inout GraphChanges) {
        rules.remove(number)
        changes.rulesRemoved.append(number)
    }

    private mutating func makeTombstone(_ id: UInt32, now: Int64, touched: inout Set<UInt32>) {
        let index = Int(id)
        emailOf[index] = 0
        phoneOf[index] = 0
        linkedTo[index] = 0
        nextMember[index] = 0
        lastMember[index] = 0
        erasedAt[id] = now
        touched.insert(id)
    }

    /// The distinct email and phone values the contacts `members` carry.
    private func values(carriedBy members: [UInt32]) -> (emails: Set<Int>, phones: Set<Int>) {
        var result = (emails: Set<Int>(), phones: Set<Int>())
        for member in members {
            let email = emailOf[Int(member)]
            if email != 0 { result.emails.insert(Int(email - 1)) }
            let phone = phoneOf[Int(member)]
            if phone != 0 { result.phones.insert(Int(phone - 1)) }
        }
        return result
    }

    /// Groups the live ones of `before` (every member of the `profiles` touched profiles, in id order)
    /// again by the rule of SPEC.md section 2: chains of shared values and links. Values no live contact
    /// carries any more leave the tables, with their links and rules; every value's owner becomes its
    /// first live carrier; each group's oldest contact becomes its primary. Rows in `touched` and rows
    /// whose link changes get `now` as `updatedAt` and are recorded in `changes`.
    private mutating func resplit(
        _ before: [UInt32], profiles: Int, carried: (emails: Set<Int>, phones: Set<Int>), touched: Set<UInt32>, now: Int64,
        changes: inout GraphChanges
    ) -> SplitOutcome {
        let live = before.filter { !isErased($0) }
        var grouping = groups(of: live)
        for value in carried.emails.sorted() where grouping.firstEmailCarrier[value] == nil {
            forget(links.numbers(email: value), rules.numbers(email: value), &changes)
            emails.remove(value)
        }
        for value in carried.phones.sorted() where grouping.firstPhoneCarrier[value] == nil {
            forget(links.numbers(phone: value), rules.numbers(phone: value), &changes)
            phones.remove(value)
        }
        for (value, position) in grouping.firstEmailCarrier { emails.setOwner(value, live[position]) }
        for (value, position) in grouping.firstPhoneCarrier { phones.setOwner(value, live[position]) }

        // Positions ascend with ids, so the first member met of each group is its oldest contact.
        var touched = touched
        var primaryOfGroup: [Int: UInt32] = [:]
        var tailOfGroup: [Int: UInt32] = [:]
        var pieces: [UInt32] = []
        for (position, member) in live.enumerated() {
            let root = grouping.parts.find(position)
            let index = Int(member)
            nextMember[index] = 0
            let newLink: UInt32
            if let primary = primaryOfGroup[root] {
                newLink = primary
                nextMember[Int(tailOfGroup[root]!)] = member
                lastMember[index] = 0
            } else {
                newLink = 0
                primaryOfGroup[root] = member
                pieces.append(member)
            }
            tailOfGroup[root] = member
            if linkedTo[index] != newLink {
                linkedTo[index] = newLink
                touched.insert(member)
            }
        }
        for (root, primary) in primaryOfGroup { lastMember[Int(primary)] = tailOfGroup[root]! }
        profileCount += pieces.count - profiles
        for member in touched.sorted() {
            updatedAt[Int(member)] = max(now, updatedAt[Int(member)])
            changes.rows.append(member)
        }
        return SplitOutcome(pieces: pieces.sorted())
    }
}

/// Contacts grouped by the rule of SPEC.md section 2 (shared values, and links between their values),
/// with the position of each value's first carrier.
struct ValueGroups {
    /// Email value → position of its first carrier among the grouped contacts.
    var firstEmailCarrier: [Int: Int] = [:]
    var firstPhoneCarrier: [Int: Int] = [:]
    /// The groups, over positions.
    var parts: LocalUnionFind
}

extension ContactGraph {
    /// Groups `members` (in id order) by shared values and by the links whose two values they carry.
    /// Its cost is bounded by the members and their links: it never looks beyond them.
    func groups(of members: [UInt32]) -> ValueGroups {
        var grouping = ValueGroups(parts: LocalUnionFind(count: members.count))
        for (position, member) in members.enumerated() {
            let email = emailOf[Int(member)]
            if email != 0 {
                let first = grouping.firstEmailCarrier[Int(email - 1), default: position]
                grouping.firstEmailCarrier[Int(email - 1)] = first
                grouping.parts.union(position, first)
            }
            let phone = phoneOf[Int(member)]
            if phone != 0 {
                let first = grouping.firstPhoneCarrier[Int(phone - 1), default: position]
                grouping.firstPhoneCarrier[Int(phone - 1)] = first
                grouping.parts.union(position, first)
            }
        }
        for (value, position) in grouping.firstEmailCarrier {
            for number in links.numbers(email: value) {
                if let other = grouping.firstPhoneCarrier[links[number]!.phone] {
                    grouping.parts.union(position, other)
                }
            }
        }
        return grouping
    }

    /// Deletes the links and rules that name a value no live contact carries any more.
    fileprivate mutating func forget(_ linkNumbers: [UInt64], _ ruleNumbers: [UInt64], _ changes: inout GraphChanges) {
        for number in linkNumbers {
            links.remove(number)
            changes.linksRemoved.append(number)
        }
        for number in ruleNumbers { removeRule(number, changes: &changes) }
    }
}

/// A union-find over positions 0..<count, for regrouping one profile.
struct LocalUnionFind {
    private var parent: [Int]

    init(count: Int) {
        parent = Array(0..<count)
    }

    mutating func find(_ position: Int) -> Int {
        var root = position
        while parent[root] != root { root = parent[root] }
        var current = position
        while parent[current] != root {
            let next = parent[current]
            parent[current] = root
            current = next
        }
        return root
    }

    mutating func union(_ first: Int, _ second: Int) {
        let a = find(first)
        let b = find(second)
        // The smaller position (the older contact) stays the root; nothing depends on it, but it
        // keeps the structure easy to read in a debugger.
        if a < b { parent[b] = a } else if b < a { parent[a] = b }
    }
}

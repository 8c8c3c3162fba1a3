/// A deliberately simple model of identify with guards, dry runs, look-ups, erasure, unmerge and the
/// change feed, written straight from SPEC.md sections 2, 4, 9, 10, 12 and 13: a list of rows, a list
/// of links and a list of keep-apart rules, linear scans, and profiles regrouped from scratch over
/// every live row. It shares nothing with the engine but the normalized values it is given.
struct TrustReferenceModel {
    struct Row: Hashable, CustomStringConvertible {
        var id: Int
        var email: String?
        var phoneNumber: String?
        var linkedId: Int?
        var erased = false

        var description: String {
            if erased { return "#\(id) erased" }
            return "#\(id)(\(email ?? "-"), \(phoneNumber ?? "-"))" + (linkedId.map { "→\($0)" } ?? "")
        }
    }

    /// A link or a keep-apart rule.
    struct Pair: Hashable, CustomStringConvertible {
        var email: String
        var phoneNumber: String

        var description: String { "(\(email), \(phoneNumber))" }
    }

    /// The `contact` object of SPEC.md section 4.
    struct ProfileView: Hashable, CustomStringConvertible {
        var primaryContactId: Int
        var emails: [String]
        var phoneNumbers: [String]
        var secondaryContactIds: [Int]

        var description: String {
            "profile #\(primaryContactId) \(emails) \(phoneNumbers) secondaries \(secondaryContactIds)"
        }
    }

    /// An entry of `ignored`, without its `detail` (a sentence for people).
    struct Ignored: Hashable, CustomStringConvertible {
        var field: String
        var reason: String

        var description: String { "\(field):\(reason)" }
    }

    struct DryRun: Hashable, CustomStringConvertible {
        var created: [Int]
        var mergedPrimaryIds: [Int]

        var description: String { "dry run: created \(created), merged \(mergedPrimaryIds)" }
    }

    /// An identify answer; `dryRun` is present exactly for dry runs.
    struct IdentifyAnswer: Hashable, CustomStringConvertible {
        var contact: ProfileView
        var ignored: [Ignored]
        var dryRun: DryRun?

        var description: String {
            "\(contact), ignored \(ignored)" + (dryRun.map { ", \($0)" } ?? "")
        }
    }

    struct ErasureAnswer: Hashable, CustomStringConvertible {
        var erasedContactIds: [Int]
        var profiles: [ProfileView]

        var description: String { "erased \(erasedContactIds), \(profiles)" }
    }

    /// A change event without its time.
    struct Event: Hashable, CustomStringConvertible {
        var seq: Int
        var type: String
        var contactIds: [Int]
        var primaryContactIds: [Int]
        var mergedPrimaryIds: [Int] = []
        var erasedContactIds: [Int] = []
        var previousPrimaryContactIds: [Int] = []

        var description: String {
            "\(seq) \(type) rows \(contactIds) primaries \(primaryContactIds) merged \(mergedPrimaryIds) "
                + "erased \(erasedContactIds) previous \(previousPrimaryContactIds)"
        }
    }

    /// Why a request fails: 422, 404 and 410.
    enum Failure: Error, Hashable {
        case blocked
        case notFound
        case erased
    }

    enum Erasure: Hashable {
        case contact(Int)
        case profile(Int)
        case values(email: String?, phoneNumber: String?)
    }

    let blockedEmails: Set<String>
    let blockedPhones: Set<String>
    /// 0: no limit.
    let maxEmails: Int
    let maxPhones: Int

    private(set) var rows: [Row] = []
    /// Oldest first.
    private(set) var links: [Pair] = []
    /// Oldest first.
    private(set) var keepApart: [Pair] = []
    private(set) var events: [Event] = []

    init(blockedEmails: Set<String> = [], blockedPhones: Set<String> = [], maxEmails: Int = 0, maxPhones: Int = 0) {
        self.blockedEmails = blockedEmails
        self.blockedPhones = blockedPhones
        self.maxEmails = maxEmails
        self.maxPhones = maxPhones
    }

    // MARK: - Profiles

    private var liveRows: [Row] { rows.filter { !$0.erased } }

    private func primary(of row: Row) -> Int { row.linkedId ?? row.id }

    /// The live rows of the profile led by `primary`, in id order.
    private func members(of primary: Int) -> [Row] {
        liveRows.filter { self.primary(of: $0) == primary }
    }

    private func emails(of primary: Int) -> Set<String> { Set(members(of: primary).compactMap(\.email)) }

    private func phones(of primary: Int) -> Set<String> { Set(members(of: primary).compactMap(\.phoneNumber)) }

    /// The primary of the profile that holds `email`, if a live contact carries it.
    private func profile(holdingEmail email: String?) -> Int? {
        guard let email else { return nil }
        return liveRows.first { $0.email == email }.map(primary(of:))
    }

    private func profile(holdingPhone phone: String?) -> Int? {
        guard let phone else { return nil }
        return liveRows.first { $0.phoneNumber == phone }.map(primary(of:))
    }

    /// Whether no live contact carries `value` (an email, or a phone number when `phone`).
    private func isNew(_ value: String?, phone: Bool = false) -> Bool {
        guard let value else { return false }
        return !liveRows.contains { (phone ? $0.phoneNumber : $0.email) == value }
    }

    func view(ofProfile primary: Int) -> ProfileView {
        var emails: [String] = []
        var phones: [String] = []
        let members = members(of: primary)
        for row in members {
            if let email = row.email, !emails.contains(email) { emails.append(email) }
            if let phone = row.phoneNumber, !phones.contains(phone) { phones.append(phone) }
        }
        return ProfileView(
            primaryContactId: primary, emails: emails, phoneNumbers: phones,
            secondaryContactIds: members.map(\.id).filter { $0 != primary }
        )
    }

    // MARK: - identify (sections 4 and 10)

    /// Identify of the normalized `email` and `phoneNumber`; with `dryRun`, what it would answer,
    /// changing nothing (section 9).
    mutating func identify(email: String?, phoneNumber: String?, dryRun: Bool = false)
        -> Result<IdentifyAnswer, Failure>
    {
        if dryRun {
            // A dry run answers exactly what the real request would: run that on a copy.
            var copy = self
            let result = copy.identify(email: email, phoneNumber: phoneNumber)
            return result.map { answer in
                var answer = answer
                let merged = liveRows.filter { $0.linkedId == nil && copy.rows[$0.id - 1].linkedId != nil }
                answer.dryRun = DryRun(
                    created: Array((rows.count + 1)..<(copy.rows.count + 1)), mergedPrimaryIds: merged.map(\.id)
                )
                return answer
            }
        }

        // Section 10 step 1: the blocklist.
        var ignored: [Ignored] = []
        var email = email
        var phone = phoneNumber
        if let value = email, blockedEmails.contains(value) {
            email = nil
            ignored.append(Ignored(field: "email", reason: "blocked"))
        }
        if let value = phone, blockedPhones.contains(value) {
            phone = nil
            ignored.append(Ignored(field: "phoneNumber", reason: "blocked"))
        }
        if email == nil && phone == nil { return .failure(.blocked) }

        let emailProfile = profile(holdingEmail: email)
        let phoneProfile = profile(holdingPhone: phone)

        guard let existing = emailProfile ?? phoneProfile else {
            // Section 4 step 2: a new primary, never refused for a limit; without P when (E, P) is a rule.
            if let email, let phone, keepApart.contains(Pair(email: email, phoneNumber: phone)) {
                ignored.append(Ignored(field: "phoneNumber", reason: "keptApart"))
                return .success(create(email: email, phoneNumber: nil, primary: nil, ignored: ignored))
            }
            return .success(create(email: email, phoneNumber: phone, primary: nil, ignored: ignored))
        }

        if let first = emailProfile, let second = phoneProfile, first != second {
            // Section 10 step 2: may the two profiles be merged? If not, the email's profile answers.
            if let reason = mergeRefusal(first, second) {
                ignored.append(Ignored(field: "phoneNumber", reason: reason))
                return .success(IdentifyAnswer(contact: view(ofProfile: first), ignored: ignored))
            }
            return .success(merge(first, second, email: email!, phoneNumber: phone!, ignored: ignored))
        }

        // One profile. Section 4 step 4 and section 10 step 3: a contact for the new values, if allowed.
        var newEmail = isNew(email) ? email : nil
        var newPhone = isNew(phone, phone: true) ? phone : nil
        let joinedEmails = emails(of: existing).union(email.map { [$0] } ?? [])
        let joinedPhones = phones(of: existing).union(phone.map { [$0] } ?? [])
        if let value = newEmail {
            if maxEmails > 0 && emails(of: existing).count + 1 > maxEmails {
                newEmail = nil
                ignored.append(Ignored(field: "email", reason: "limit"))
            } else if keepApart.contains(where: { $0.email == value && joinedPhones.contains($0.phoneNumber) }) {
                newEmail = nil
                ignored.append(Ignored(field: "email", reason: "keptApart"))
            }
        }
        if let value = newPhone {
            if maxPhones > 0 && phones(of: existing).count + 1 > maxPhones {
                newPhone = nil
                ignored.append(Ignored(field: "phoneNumber", reason: "limit"))
            } else if keepApart.contains(where: { $0.phoneNumber == value && joinedEmails.contains($0.email) }) {
                newPhone = nil
                ignored.append(Ignored(field: "phoneNumber", reason: "keptApart"))
            }
        }
        guard newEmail != nil || newPhone != nil else {
            return .success(IdentifyAnswer(contact: view(ofProfile: existing), ignored: ignored))
        }
        // The contact carries the request's values but a new one that was held back.
        let rowEmail = isNew(email) && newEmail == nil ? nil : email
        let rowPhone = isNew(phone, phone: true) && newPhone == nil ? nil : phone
        return .success(create(email: rowEmail, phoneNumber: rowPhone, primary: existing, ignored: ignored))
    }

    /// The reason merging the profiles of `first` (the email's) and `second` is refused, if it is.
    private func mergeRefusal(_ first: Int, _ second: Int) -> String? {
        if maxEmails > 0 && emails(of: first).union(emails(of: second)).count > maxEmails { return "limit" }
        if maxPhones > 0 && phones(of: first).union(phones(of: second)).count > maxPhones { return "limit" }
        let joins = keepApart.contains { rule in
            (emails(of: first).contains(rule.email) && phones(of: second).contains(rule.phoneNumber))
                || (emails(of: second).contains(rule.email) && phones(of: first).contains(rule.phoneNumber))
        }
        return joins ? "keptApart" : nil
    }

    private mutating func create(email: String?, phoneNumber: String?, primary: Int?, ignored: [Ignored])
        -> IdentifyAnswer
    {
        let id = rows.count + 1
        rows.append(Row(id: id, email: email, phoneNumber: phoneNumber, linkedId: primary))
        record(Event(seq: 0, type: "created", contactIds: [id], primaryContactIds: [primary ?? id]))
        return IdentifyAnswer(contact: view(ofProfile: primary ?? id), ignored: ignored)
    }

    /// Section 4 step 3: the newer primary and its secondaries join the older one; a link records why.
    private mutating func merge(_ first: Int, _ second: Int, email: String, phoneNumber: String, ignored: [Ignored])
        -> IdentifyAnswer
    {
        let winner = min(first, second)
        let loser = max(first, second)
        var written: [Int] = []
        for index in rows.indices where !rows[index].erased && primary(of: rows[index]) == loser {
            rows[index].linkedId = winner
            written.append(rows[index].id)
        }
        links.append(Pair(email: email, phoneNumber: phoneNumber))
        record(
            Event(
                seq: 0, type: "merged", contactIds: written, primaryContactIds: [winner], mergedPrimaryIds: [loser]
            )
        )
        return IdentifyAnswer(contact: view(ofProfile: winner), ignored: ignored)
    }

    private mutating func record(_ event: Event) {
        var event = event
        event.seq = events.count + 1
        events.append(event)
    }

    // MARK: - Look-ups (section 9)

    /// The profiles holding `email` or `phoneNumber`, by primary.
    func lookup(email: String?, phoneNumber: String?) -> [ProfileView] {
        let holders = liveRows.filter {
            (email != nil && $0.email == email) || (phoneNumber != nil && $0.phoneNumber == phoneNumber)
        }
        return Set(holders.map(primary(of:))).sorted().map(view(ofProfile:))
    }

    /// The profile holding live contact `id`.
    func profile(containing id: Int) -> Result<ProfileView, Failure> {
        guard rows.indices.contains(id - 1) else { return .failure(.notFound) }
        let row = rows[id - 1]
        guard !row.erased else { return .failure(.erased) }
        return .success(view(ofProfile: primary(of: row)))
    }

    // MARK: - Erasure and unmerge (section 12)

    mutating func erase(_ erasure: Erasure) -> Result<ErasureAnswer, Failure> {
        let before = rows
        var touched: Set<Int> = []
        switch erasure {
        case .contact(let id), .profile(let id):
            guard rows.indices.contains(id - 1) else { return .failure(.notFound) }
            let target = rows[id - 1]
            guard !target.erased else { return .success(ErasureAnswer(erasedContactIds: [], profiles: [])) }
            let owner = primary(of: target)
            touched = [owner]
            var whole = false
            if case .profile = erasure { whole = true }
            for index in rows.indices where !rows[index].erased {
                if whole ? primary(of: rows[index]) == owner : rows[index].id == id { makeTombstone(at: index) }
            }
        case .values(let email, let phone):
            for holder in lookup(email: email, phoneNumber: phone) { touched.insert(holder.primaryContactId) }
            guard !touched.isEmpty else { return .success(ErasureAnswer(erasedContactIds: [], profiles: [])) }
            for index in rows.indices where !rows[index].erased {
                if email != nil && rows[index].email == email { rows[index].email = nil }
                if phone != nil && rows[index].phoneNumber == phone { rows[index].phoneNumber = nil }
                if rows[index].email == nil && rows[index].phoneNumber == nil { makeTombstone(at: index) }
            }
        }
        dropPairsOfUncarriedValues()
        regroup()
        let erased = rows.filter { $0.erased && !before[$0.id - 1].erased }.map(\.id)
        let pieces = pieces(of: touched, before: before)
        recordSplit("erased", before: before, touched: touched, erased: erased)
        return .success(ErasureAnswer(erasedContactIds: erased, profiles: pieces.map(view(ofProfile:))))
    }

    /// Undoes the merge that the link (`email`, `phoneNumber`) records, and with `keepApart` adds that
    /// pair as a rule: answers every piece of the link's profile.
    mutating func unmerge(email: String, phoneNumber: String, keepApart addRule: Bool)
        -> Result<[ProfileView], Failure>
    {
        let link = Pair(email: email, phoneNumber: phoneNumber)
        guard let position = links.firstIndex(of: link), let owner = profile(holdingEmail: email) else {
            return .failure(.notFound)
        }
        let before = rows
        links.remove(at: position)
        if addRule && !keepApart.contains(link) { keepApart.append(link) }
        regroup()
        let pieces = pieces(of: [owner], before: before)
        recordSplit("unmerged", before: before, touched: [owner], erased: [])
        return .success(pieces.map(view(ofProfile:)))
    }

    /// Deletes the keep-apart rule (`email`, `phoneNumber`), or fails with 404; records no change event,
    /// as no row changes.
    mutating func removeKeepApart(email: String, phoneNumber: String) -> Failure? {
        guard let position = keepApart.firstIndex(of: Pair(email: email, phoneNumber: phoneNumber)) else {
            return .notFound
        }
        keepApart.remove(at: position)
        return nil
    }

    private mutating func makeTombstone(at index: Int) {
        rows[index].email = nil
        rows[index].phoneNumber = nil
        rows[index].linkedId = nil
        rows[index].erased = true
    }

    /// Links and rules are kept only while both of their values are carried by live contacts.
    private mutating func dropPairsOfUncarriedValues() {
        let live = liveRows
        let carried = { (pair: Pair) in
            live.contains { $0.email == pair.email } && live.contains { $0.phoneNumber == pair.phoneNumber }
        }
        links.removeAll { !carried($0) }
        keepApart.removeAll { !carried($0) }
    }

    /// The primaries, after the change, of the live contacts that were in the profiles `touched` before it.
    private func pieces(of touched: Set<Int>, before: [Row]) -> [Int] {
        let formerMembers = before.filter { !$0.erased && touched.contains($0.linkedId ?? $0.id) }
        let live = formerMembers.map { rows[$0.id - 1] }.filter { !$0.erased }
        return Set(live.map(primary(of:))).sorted()
    }

    /// One event for the rows whose fields changed, if any did.
    private mutating func recordSplit(_ type: String, before: [Row], touched: Set<Int>, erased: [Int]) {
        let written = rows.filter { $0 != before[$0.id - 1] }
        guard !written.isEmpty else { return }
        record(
            Event(
                seq: 0, type: type, contactIds: written.map(\.id),
                primaryContactIds: Set(written.filter { !$0.erased }.map(primary(of:))).sorted(),
                erasedContactIds: erased, previousPrimaryContactIds: touched.sorted()
            )
        )
    }

    // MARK: - Connectivity (section 2), from scratch

    /// The groups of live contacts joined by chains of shared emails, shared phone numbers and links:
    /// for each live contact, the smallest id of its group.
    func groups() -> [Int: Int] {
        let live = liveRows
        var parent: [Int: Int] = [:]
        for row in live { parent[row.id] = row.id }
        func find(_ id: Int) -> Int {
            var root = id
            while parent[root]! != root { root = parent[root]! }
            return root
        }
        for first in live {
            for second in live where second.id > first.id {
                let sharesEmail = first.email != nil && first.email == second.email
                let sharesPhone = first.phoneNumber != nil && first.phoneNumber == second.phoneNumber
                let linked = links.contains { link in
                    (first.email == link.email && second.phoneNumber == link.phoneNumber)
                        || (second.email == link.email && first.phoneNumber == link.phoneNumber)
                }
                if sharesEmail || sharesPhone || linked {
                    let (a, b) = (find(first.id), find(second.id))
                    parent[max(a, b)] = min(a, b)
                }
            }
        }
        var result: [Int: Int] = [:]
        for row in live { result[row.id] = find(row.id) }
        return result
    }

    /// Re-split (section 12): each group's oldest (smallest id) contact leads it, the rest link to it.
    private mutating func regroup() {
        let groups = groups()
        for index in rows.indices where !rows[index].erased {
            let leader = groups[rows[index].id]!
            rows[index].linkedId = leader == rows[index].id ? nil : leader
        }
    }

    /// Whether the rows satisfy the invariants of section 2: the profiles are exactly the groups (so no
    /// value is in two profiles), each led by its oldest contact, with no chains. A check of the model.
    var satisfiesInvariants: Bool {
        let groups = groups()
        return liveRows.allSatisfy { row in
            let leader = groups[row.id]!
            return row.linkedId == (leader == row.id ? nil : leader)
        }
    }
}

extension ContactGraph {
    /// Adds a link (`rule` false) or a keep-apart rule read back from the store. Both of its values
    /// must be carried by live contacts.
    mutating func loadPair(
        _ number: UInt64, email: UnsafeRawBufferPointer, phone: UnsafeRawBufferPointer, at: Int64, rule: Bool
    ) throws(LoadError) {
        guard let emailValue = emails.find(email), let phoneValue = phones.find(phone) else {
            let kind = rule ? "keep-apart rule" : "link"
            throw LoadError(id: 0, reason: "\(kind) \(number) names a value that no live contact carries")
        }
        let pair = ValuePairs.Pair(email: emailValue, phone: phoneValue, at: at)
        if rule { rules.insert(number, pair) } else { links.insert(number, pair) }
    }

    /// Writes link or rule `number` in its stored form.
    func encodePair(_ number: UInt64, rule: Bool) -> [UInt8] {
        let pair = (rule ? rules : links)[number]!
        var bytes: [UInt8] = []
        emails.withBytes(pair.email) { email in
            phones.withBytes(pair.phone) { phone in
                PairRecord.encode(at: pair.at, email: email, phone: phone, into: &bytes)
            }
        }
        return bytes
    }

    /// Appends to `batch` the stored form of everything `changes` holds: changed rows, and links and
    /// rules added or deleted. A pair added and deleted again within the batch is only deleted.
    func encode(_ changes: GraphChanges, into batch: inout RowBatch) {
        for id in changes.rows { encodeRow(id, into: &batch) }
        for (added, removed, isRule) in [
            (changes.linksAdded, changes.linksRemoved, false), (changes.rulesAdded, changes.rulesRemoved, true),
        ] {
            let table: RowBatch.Table = isRule ? .rules : .links
            for number in added where (isRule ? rules : links)[number] != nil {
                let bytes = encodePair(number, rule: isRule)
                batch.put(table, key: number) { $0.append(contentsOf: bytes) }
            }
            for number in removed { batch.delete(table, key: number) }
        }
    }

    /// Every link (`rules` false) or keep-apart rule, oldest first.
    func storedPairs(rules wantRules: Bool) -> [StoredPair] {
        (wantRules ? rules : links).ordered.map { storedPair($0.pair) }
    }

    /// For a store written before links were recorded: gives every profile that its rows alone do not
    /// connect the fewest links that connect it, each between an email of one part and a phone
    /// number of another (every real merge had such a pair), dated by the `updatedAt` of the part's
    /// oldest contact (the merged primary, whose row the merge rewrote). Returns how many it added.
    mutating func deriveMissingLinks(now: Int64, changes: inout GraphChanges) -> Int {
        var added = 0
        var id: UInt32 = 1
        while Int(id) <= contactCount {
            defer { id += 1 }
            guard linkedTo[Int(id)] == 0, !isErased(id), nextMember[Int(id)] != 0 else { continue }
            added += connect(profile: id, changes: &changes)
        }
        return added
    }

    private mutating func connect(profile primary: UInt32, changes: inout GraphChanges) -> Int {
        let members = members(of: primary)
        var grouping = groups(of: members)
        // Each part: its oldest member, and the first email and phone it carries.
        var parts: [(oldest: UInt32, email: Int?, phone: Int?)] = []
        var partIndex: [Int: Int] = [:]
        for (position, member) in members.enumerated() {
            let root = grouping.parts.find(position)
            if partIndex[root] == nil {
                partIndex[root] = parts.count
                parts.append((member, nil, nil))
            }
            let index = partIndex[root]!
            if parts[index].email == nil, emailOf[Int(member)] != 0 { parts[index].email = Int(emailOf[Int(member)] - 1) }
            if parts[index].phone == nil, phoneOf[Int(member)] != 0 { parts[index].phone = Int(phoneOf[Int(member)] - 1) }
        }
        guard parts.count > 1 else { return 0 }
        var connected = [0]
        var waiting = Array(1..<parts.count)
        var added = 0
        var progress = true
        while !waiting.isEmpty && progress {
            progress = false
            for (slot, index) in waiting.enumerated() {
                let part = parts[index]
                var pair: (email: Int, phone: Int)?
                for other in connected {
                    if let email = part.email, let phone = parts[other].phone {
                        pair = (email, phone)
                    } else if let phone = part.phone, let email = parts[other].email {
                        pair = (email, phone)
                    }
                    if pair != nil { break }
                }
                guard let pair else { continue }
                let at = updatedAt[Int(part.oldest)]
                changes.linksAdded.append(links.add(email: pair.email, phone: pair.phone, at: at))
                added += 1
                connected.append(index)
                waiting.remove(at: slot)
                progress = true
                break
            }
        }
        return added
    }
}

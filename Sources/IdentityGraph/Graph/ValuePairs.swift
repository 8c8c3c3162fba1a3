/// Pairs of an email and a phone number, each held by its value numbers: the graph keeps its
/// *links* (why two profiles were merged without a new row, SPEC.md section 2) and its
/// *keep-apart rules* (section 12) in one of these each.
///
/// Every pair has a number, issued in creation order and never reused, which is also its key in the
/// store, so "oldest first" is number order. Both values of a pair are carried by live contacts:
/// an erasure that leaves one of them uncarried removes the pair with it.
///
/// A pair is its two value numbers and its time in arrays indexed by its number, with the pairs of
/// each value chained through two more arrays (in number order, from a head and tail kept per value
/// that has pairs): about 60 bytes a pair, where a dictionary of pairs and two dictionaries of arrays
/// cost three times that. A removed pair leaves a hole of 24 bytes, since numbers are never reused;
/// holes are as rare as unmerges and erasures.
struct ValuePairs {
    struct Pair: Hashable {
        var email: Int
        var phone: Int
        /// Milliseconds since 1970.
        var at: Int64
    }

    /// Pair `n` is at index `n - 1`: its email and phone value numbers plus one, 0 for a hole.
    private var emails: [UInt32] = []
    private var phones: [UInt32] = []
    private var times: [Int64] = []
    /// The next pair (by number) with the same email, or phone; 0 at the end of the chain.
    private var nextWithEmail: [UInt32] = []
    private var nextWithPhone: [UInt32] = []
    /// Value number → the first and last pair of its chain, packed as `first << 32 | last`.
    private var emailChains: [UInt32: UInt64] = [:]
    private var phoneChains: [UInt32: UInt64] = [:]
    private(set) var count = 0

    init() {}

    /// The number the next pair gets.
    var nextNumber: UInt64 { UInt64(emails.count) + 1 }
    var isEmpty: Bool { count == 0 }

    /// Pair `number`, if there is one.
    subscript(number: UInt64) -> Pair? {
        guard number >= 1, number <= UInt64(emails.count) else { return nil }
        let index = Int(number - 1)
        guard emails[index] != 0 else { return nil }
        return Pair(email: Int(emails[index] - 1), phone: Int(phones[index] - 1), at: times[index])
    }

    /// Adds a pair; returns its number.
    mutating func add(email: Int, phone: Int, at: Int64) -> UInt64 {
        let number = nextNumber
        insert(number, Pair(email: email, phone: phone, at: at))
        return number
    }

    /// Adds a pair read back from the store under its own number, which must be larger than every
    /// number before it (the store reads pairs in number order).
    mutating func insert(_ number: UInt64, _ pair: Pair) {
        precondition(number >= nextNumber && number <= UInt64(UInt32.max), "pairs are added in number order")
        let holes = Int(number - nextNumber)
        if holes > 0 {
            for array in [\Self.emails, \.phones, \.nextWithEmail, \.nextWithPhone] {
                self[keyPath: array].append(contentsOf: repeatElement(0, count: holes))
            }
            times.append(contentsOf: repeatElement(0, count: holes))
        }
        emails.append(UInt32(pair.email + 1))
        phones.append(UInt32(pair.phone + 1))
        times.append(pair.at)
        nextWithEmail.append(0)
        nextWithPhone.append(0)
        Self.chain(UInt32(number), to: UInt32(pair.email), in: &emailChains, next: &nextWithEmail)
        Self.chain(UInt32(number), to: UInt32(pair.phone), in: &phoneChains, next: &nextWithPhone)
        count += 1
    }

    mutating func remove(_ number: UInt64) {
        guard let pair = self[number] else { return }
        Self.unchain(UInt32(number), from: UInt32(pair.email), in: &emailChains, next: &nextWithEmail)
        Self.unchain(UInt32(number), from: UInt32(pair.phone), in: &phoneChains, next: &nextWithPhone)
        let index = Int(number - 1)
        emails[index] = 0
        phones[index] = 0
        times[index] = 0
        count -= 1
    }

    /// The number of the pair (email, phone), if there is one.
    func find(email: Int, phone: Int) -> UInt64? {
        var number = Self.first(of: UInt32(email), in: emailChains)
        while number != 0 {
            if phones[Int(number - 1)] == UInt32(phone + 1) { return UInt64(number) }
            number = nextWithEmail[Int(number - 1)]
        }
        return nil
    }

    /// The pairs that hold email value `email`, oldest first.
    func numbers(email: Int) -> [UInt64] {
        Self.walk(from: Self.first(of: UInt32(email), in: emailChains), next: nextWithEmail)
    }

    /// The pairs that hold phone value `phone`, oldest first.
    func numbers(phone: Int) -> [UInt64] {
        Self.walk(from: Self.first(of: UInt32(phone), in: phoneChains), next: nextWithPhone)
    }

    /// Every pair, oldest first.
    var ordered: [(number: UInt64, pair: Pair)] {
        var result: [(number: UInt64, pair: Pair)] = []
        result.reserveCapacity(count)
        for index in emails.indices where emails[index] != 0 {
            let pair = Pair(email: Int(emails[index] - 1), phone: Int(phones[index] - 1), at: times[index])
            result.append((UInt64(index + 1), pair))
        }
        return result
    }

    /// Bytes of memory the pairs hold: the arrays, and the chains' tables estimated from their
    /// capacity (a key, a value and a byte of metadata an entry).
    var memoryBytes: Int {
        emails.capacity * 4 + phones.capacity * 4 + times.capacity * 8 + nextWithEmail.capacity * 4
            + nextWithPhone.capacity * 4 + (emailChains.capacity + phoneChains.capacity) * (4 + 8 + 1)
    }

    // MARK: - Chains

    private static func first(of value: UInt32, in chains: [UInt32: UInt64]) -> UInt32 {
        chains[value].map { UInt32(truncatingIfNeeded: $0 >> 32) } ?? 0
    }

    private static func walk(from first: UInt32, next: [UInt32]) -> [UInt64] {
        var result: [UInt64] = []
        var number = first
        while number != 0 {
            result.append(UInt64(number))
            number = next[Int(number - 1)]
        }
        return result
    }

    /// Appends pair `number`, the newest, to the chain of `value`.
    private static func chain(_ number: UInt32, to value: UInt32, in chains: inout [UInt32: UInt64], next: inout [UInt32]) {
        if let ends = chains[value] {
            next[Int(UInt32(truncatingIfNeeded: ends) - 1)] = number
            chains[value] = ends & 0xFFFF_FFFF_0000_0000 | UInt64(number)
        } else {
            chains[value] = UInt64(number) << 32 | UInt64(number)
        }
    }

    /// Takes pair `number` out of the chain of `value`; a chain is short (the pairs of one value), so
    /// finding the pair before it is a short walk.
    private static func unchain(
        _ number: UInt32, from value: UInt32, in chains: inout [UInt32: UInt64], next: inout [UInt32]
    ) {
        guard let ends = chains[value] else { return }
        var first = UInt32(truncatingIfNeeded: ends >> 32)
        var last = UInt32(truncatingIfNeeded: ends)
        let after = next[Int(number - 1)]
        next[Int(number - 1)] = 0
        if first == number {
            first = after
        } else {
            var before = first
            while next[Int(before - 1)] != number { before = next[Int(before - 1)] }
            next[Int(before - 1)] = after
            if last == number { last = before }
        }
        if first == 0 {
            chains[value] = nil
        } else {
            chains[value] = UInt64(first) << 32 | UInt64(last)
        }
    }

    // MARK: - The index image

    /// Writes the pairs to an index image: the arrays as they are (holes included), so that the next
    /// pair's number survives a restart; the chains are rebuilt on reading, from the pairs.
    func writeImage(to writer: inout ImageWriter) throws(StorageError) {
        try writer.section(emails)
        try writer.section(phones)
        try writer.section(times)
    }

    /// The pairs that ``writeImage(to:)`` wrote.
    init(image reader: inout ImageReader) throws(IndexImage.Refusal) {
        let emails: [UInt32] = try reader.section()
        let phones: [UInt32] = try reader.section()
        let times: [Int64] = try reader.section()
        guard phones.count == emails.count, times.count == emails.count, emails.count <= Int(UInt32.max) else {
            throw IndexImage.Refusal(reason: .corrupt)
        }
        self.init()
        self.emails.reserveCapacity(emails.count)
        self.phones.reserveCapacity(emails.count)
        self.times.reserveCapacity(emails.count)
        nextWithEmail.reserveCapacity(emails.count)
        nextWithPhone.reserveCapacity(emails.count)
        for index in emails.indices where emails[index] != 0 {
            guard phones[index] != 0 else { throw IndexImage.Refusal(reason: .corrupt) }
            insert(UInt64(index + 1), Pair(email: Int(emails[index] - 1), phone: Int(phones[index] - 1), at: times[index]))
        }
        // Trailing holes: pairs removed after the newest one still standing keep their numbers.
        let holes = emails.count - self.emails.count
        if holes > 0 {
            for array in [\Self.emails, \.phones, \.nextWithEmail, \.nextWithPhone] {
                self[keyPath: array].append(contentsOf: repeatElement(0, count: holes))
            }
            self.times.append(contentsOf: repeatElement(0, count: holes))
        }
    }
}

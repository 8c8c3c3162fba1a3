/// Pairs of an email and a phone number, each held by its value numbers: the graph keeps its
/// *links* (why two profiles were merged without a new row, SPEC.md section 2) and its
/// *keep-apart rules* (section 12) in one of these each.
///
/// Every pair has a number, issued in creation order and never reused, which is also its key in the
/// store, so "oldest first" is number order. Both values of a pair are carried by live contacts:
/// an erasure that leaves one of them uncarried removes the pair with it.
struct ValuePairs {
    struct Pair: Hashable {
        var email: Int
        var phone: Int
        /// Milliseconds since 1970.
        var at: Int64
    }

    private(set) var pairs: [UInt64: Pair] = [:]
    private var byEmail: [Int: [UInt64]] = [:]
    private var byPhone: [Int: [UInt64]] = [:]
    /// The number the next pair gets.
    private(set) var nextNumber: UInt64 = 1

    /// Bytes of memory the pairs hold, estimated: the table of pairs and the two indexes by value, each
    /// entry of an index an array of its own (about 40 bytes of header and one number).
    var memoryBytes: Int {
        pairs.capacity * (MemoryLayout<UInt64>.stride + MemoryLayout<Pair>.stride + 1)
            + (byEmail.capacity + byPhone.capacity) * (MemoryLayout<Int>.stride + 8 + 1)
            + (byEmail.count + byPhone.count) * 40
    }

    var isEmpty: Bool { pairs.isEmpty }
    var count: Int { pairs.count }

    /// Adds a pair; returns its number.
    mutating func add(email: Int, phone: Int, at: Int64) -> UInt64 {
        let number = nextNumber
        insert(number, Pair(email: email, phone: phone, at: at))
        return number
    }

    /// Adds a pair read back from the store under its own number.
    mutating func insert(_ number: UInt64, _ pair: Pair) {
        pairs[number] = pair
        byEmail[pair.email, default: []].append(number)
        byPhone[pair.phone, default: []].append(number)
        nextNumber = max(nextNumber, number + 1)
    }

    mutating func remove(_ number: UInt64) {
        guard let pair = pairs.removeValue(forKey: number) else { return }
        Self.drop(number, from: &byEmail, key: pair.email)
        Self.drop(number, from: &byPhone, key: pair.phone)
    }

    /// The number of the pair (email, phone), if there is one.
    func find(email: Int, phone: Int) -> UInt64? {
        byEmail[email]?.first { pairs[$0]?.phone == phone }
    }

    /// The pairs that hold email value `email`.
    func numbers(email: Int) -> [UInt64] { byEmail[email] ?? [] }

    /// The pairs that hold phone value `phone`.
    func numbers(phone: Int) -> [UInt64] { byPhone[phone] ?? [] }

    /// Every pair, oldest first.
    var ordered: [(number: UInt64, pair: Pair)] {
        pairs.sorted { $0.key < $1.key }.map { (number: $0.key, pair: $0.value) }
    }

    // MARK: - The index image

    init() {}

    /// Writes the pairs to an index image, oldest first, with the number the next pair gets.
    func writeImage(to writer: inout ImageWriter) throws(StorageError) {
        let ordered = ordered
        try writer.section([nextNumber])
        try writer.section(ordered.map(\.number))
        try writer.section(ordered.map { UInt32($0.pair.email) })
        try writer.section(ordered.map { UInt32($0.pair.phone) })
        try writer.section(ordered.map(\.pair.at))
    }

    /// The pairs that ``writeImage(to:)`` wrote.
    init(image reader: inout ImageReader) throws(IndexImage.Refusal) {
        let next: [UInt64] = try reader.section()
        let numbers: [UInt64] = try reader.section()
        let emails: [UInt32] = try reader.section()
        let phones: [UInt32] = try reader.section()
        let times: [Int64] = try reader.section()
        guard next.count == 1, emails.count == numbers.count, phones.count == numbers.count, times.count == numbers.count
        else { throw IndexImage.Refusal(reason: .corrupt) }
        for index in numbers.indices {
            insert(numbers[index], Pair(email: Int(emails[index]), phone: Int(phones[index]), at: times[index]))
        }
        nextNumber = max(nextNumber, next[0])
    }

    private static func drop(_ number: UInt64, from index: inout [Int: [UInt64]], key: Int) {
        guard var list = index[key] else { return }
        list.removeAll { $0 == number }
        index[key] = list.isEmpty ? nil : list
    }
}

import CPrefetch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A set of distinct normalized values (all emails, or all phone numbers), each numbered in
/// insertion order and remembering the contact that first carried it: its *owner*.
///
/// Values live back to back in one byte arena and are found through an open-addressing table of
/// 64-bit slots, so a value costs its bytes plus about 24 bytes, not a `String` and a dictionary
/// entry each. A slot holds a value's number and the upper half of its hash (its *tag*), so a probe
/// that passes other values compares tags in the slots it reads, never their text: most probes of a
/// large table would otherwise miss the cache twice more for each value passed (its offsets, then
/// its bytes). The tag also gives a value's home slot, so growing the table and removing a value
/// hash no text. Numbers are 32-bit (removed values keep theirs) and the home slot comes from the 32-bit
/// tag: a table numbers fewer than 2^32 - 1 values and holds at most 4 GiB of text.
struct ValueTable {
    private var arena: [UInt8] = []
    /// `starts[i] ..< starts[i + 1]` is value `i` in the arena.
    private var starts: [UInt32] = [0]
    /// The contact that first carried each value. No value belongs to two profiles (SPEC.md
    /// section 2), so a value's profile is its owner's.
    private(set) var owners: [UInt32] = []
    /// 0 for an empty slot, else `tag << 32 | (number + 1)`, where the tag is the upper half of the
    /// value's hash and its home slot is `tag & (slots.count - 1)`. The count is a power of two, at
    /// most 2^32.
    private var slots: [UInt64] = Array(repeating: 0, count: 1024)
    /// The key of ``hash(_:)``, drawn at random for each table (and kept in its index image, whose
    /// slots were placed with it).
    private let hashKey: UInt64

    init() {
        hashKey = UInt64.random(in: .min ... .max)
    }

    /// How many values were ever numbered, removed ones included.
    var count: Int { owners.count }
    /// How many values were removed (see ``remove(_:)``).
    private(set) var removedCount = 0

    /// The number of the value spelled by `key`, if present.
    func find(_ key: UnsafeRawBufferPointer) -> Int? {
        let tag = hash(key) & Self.tagBits
        let mask = slots.count - 1
        var slot = Self.home(tag, mask)
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if entry & Self.tagBits == tag, equals(Self.number(entry), key) { return Self.number(entry) }
            slot = (slot + 1) & mask
        }
    }

    func find(_ key: String) -> Int? {
        var key = key
        return key.withUTF8 { find(UnsafeRawBufferPointer($0)) }
    }

    /// Adds `key`, which must not be present, owned by `owner`; returns its number.
    mutating func insert(_ key: String, owner: UInt32) -> Int {
        var key = key
        return key.withUTF8 { insert(UnsafeRawBufferPointer($0), owner: owner) }
    }

    /// Adds `key`, which must not be present, owned by `owner`; returns its number.
    mutating func insert(_ key: UnsafeRawBufferPointer, owner: UInt32) -> Int {
        let (value, inserted) = findOrInsert(key, owner: owner)
        assert(inserted, "a value was inserted twice")
        return value
    }

    /// The number of `key`, adding it owned by `owner` when absent, with one probe sequence.
    mutating func findOrInsert(_ key: UnsafeRawBufferPointer, owner: UInt32) -> (value: Int, inserted: Bool) {
        findOrInsert(key, hash: hash(key), owner: owner)
    }

    /// ``findOrInsert(_:owner:)`` with `key`'s ``hash(_:)`` computed already (by ``prefetch(_:)``).
    mutating func findOrInsert(
        _ key: UnsafeRawBufferPointer, hash code: UInt64, owner: UInt32
    ) -> (value: Int, inserted: Bool) {
        assert(code == hash(key), "a hash computed by another table, or for another key")
        if Self.overfull(count - removedCount + 1, slots: slots.count) { grow() }
        let tag = code & Self.tagBits
        let mask = slots.count - 1
        var slot = Self.home(tag, mask)
        while true {
            let entry = slots[slot]
            if entry == 0 { break }
            if entry & Self.tagBits == tag, equals(Self.number(entry), key) { return (Self.number(entry), false) }
            slot = (slot + 1) & mask
        }
        let value = count
        // A number would otherwise run into the tag's half of the slot.
        precondition(value < Int(UInt32.max), "a value table numbers fewer than 2^32 - 1 values")
        arena.append(contentsOf: key)
        starts.append(UInt32(arena.count))
        owners.append(owner)
        slots[slot] = tag | UInt64(value + 1)
        return (value, true)
    }

    /// Hashes `key` and asks the CPU for its home slot without waiting for it; returns the hash, for
    /// ``findOrInsert(_:hash:owner:)`` a little later. A rebuild reads rows in id order and their values
    /// land in random slots: hashing a few rows ahead lets those cache misses overlap instead of
    /// each insert waiting for its own.
    func prefetch(_ key: UnsafeRawBufferPointer) -> UInt64 {
        let code = hash(key)
        slots.withUnsafeBufferPointer { slots in
            identity_graph_prefetch(slots.baseAddress! + Self.home(code, slots.count - 1))
        }
        return code
    }

    /// Makes `owner` the owner of `value` (its first live carrier changed: an erasure or a re-split).
    mutating func setOwner(_ value: Int, _ owner: UInt32) {
        owners[value] = owner
    }

    /// Whether `value` is still in the table (it is removed once no live contact carries it).
    func isPresent(_ value: Int) -> Bool {
        owners[value] != 0
    }

    /// Removes `value`, which no live contact carries any more: it can no longer be found, and its
    /// bytes in the arena are overwritten, so an erased value leaves no copy in memory. Its number is
    /// not reused (contacts refer to values by number); the few bytes of bookkeeping it keeps are
    /// the price of not renumbering.
    mutating func remove(_ value: Int) {
        guard owners[value] != 0 else { return }
        let tag = withBytes(value) { hash($0) } & Self.tagBits
        let mask = slots.count - 1
        var slot = Self.home(tag, mask)
        while slots[slot] != tag | UInt64(value + 1) { slot = (slot + 1) & mask }
        // Backward-shift deletion keeps every other value reachable from its home slot without
        // leaving tombstones in the probe sequences.
        var hole = slot
        var next = (hole + 1) & mask
        while slots[next] != 0 {
            let home = Self.home(slots[next], mask)
            // The entry may move into the hole unless its home lies cyclically in (hole, next].
            let distanceToNext = (next - home) & mask
            let distanceToHole = (next - hole) & mask
            if distanceToNext >= distanceToHole {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        let start = Int(starts[value])
        let end = Int(starts[value + 1])
        for index in start..<end { arena[index] = 0 }
        owners[value] = 0
        removedCount += 1
    }

    /// The text of value `value`.
    func text(_ value: Int) -> String {
        let start = Int(starts[value])
        let end = Int(starts[value + 1])
        return arena.withUnsafeBufferPointer { String(decoding: $0[start..<end], as: UTF8.self) }
    }

    /// The UTF-8 bytes of value `value`, valid only during `body`.
    func withBytes<R>(_ value: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = Int(starts[value])
        let end = Int(starts[value + 1])
        return try arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    }

    /// The bytes of a value given as stored in a contact (its number plus one; 0 for none).
    func withBytes<R>(ofNumber number: UInt32, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        number == 0 ? body(nil) : withBytes(Int(number - 1)) { body($0) }
    }

    /// Pre-sizes the table for `values` values (used when loading a store).
    mutating func reserve(values: Int, bytes: Int) {
        arena.reserveCapacity(bytes)
        starts.reserveCapacity(values + 1)
        owners.reserveCapacity(values)
        var size = slots.count
        while Self.overfull(values, slots: size) { size *= 2 }
        if size != slots.count { rehash(to: size) }
    }

    /// Bytes of memory the table holds, for statistics.
    var memoryBytes: Int {
        memoryBreakdown.reduce(0) { $0 + $1.bytes }
    }

    /// Bytes of memory each of the table's arrays holds.
    var memoryBreakdown: [(structure: String, bytes: Int)] {
        [("arena", arena.capacity), ("starts", starts.capacity * 4), ("owners", owners.capacity * 4),
         ("slots", slots.capacity * 8)]
    }

    // MARK: - The index image

    /// Writes the table to an index image as it lies in memory (slots and hash key included), so that
    /// reading it back hashes nothing.
    func writeImage(to writer: inout ImageWriter) throws(StorageError) {
        try writer.section([hashKey, UInt64(removedCount)])
        try writer.section(arena)
        try writer.section(starts)
        try writer.section(owners)
        try writer.section(slots)
    }

    /// The table that ``writeImage(to:)`` wrote, its arrays sized exactly.
    init(image reader: inout ImageReader) throws(IndexImage.Refusal) {
        let scalars: [UInt64] = try reader.section()
        arena = try reader.section()
        starts = try reader.section()
        owners = try reader.section()
        slots = try reader.section()
        guard scalars.count == 2, starts.count == owners.count + 1, Int(starts[owners.count]) == arena.count,
            slots.count > 0, slots.count & (slots.count - 1) == 0, slots.count <= Self.maximumSlots,
            Int(scalars[1]) <= owners.count,
            !Self.overfull(owners.count - Int(scalars[1]), slots: slots.count)
        else { throw IndexImage.Refusal(reason: .corrupt) }
        hashKey = scalars[0]
        removedCount = Int(scalars[1])
    }

    private func equals(_ value: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let start = Int(starts[value])
        let end = Int(starts[value + 1])
        guard end - start == key.count else { return false }
        return arena.withUnsafeBytes { arena in
            memcmpEqual(arena.baseAddress! + start, key.baseAddress, key.count)
        }
    }

    /// Whether `values` values would fill more than three quarters of `slots` slots. Probes that pass
    /// other values compare tags in slots that share a cache line, so a table can be this full; at half
    /// full, as with 32-bit slots that held no tag, the 64-bit slots cost a 10M store 20 bytes a contact.
    @inline(__always)
    private static func overfull(_ values: Int, slots: Int) -> Bool { values * 4 > slots * 3 }

    /// The upper half of a slot: the tag.
    private static let tagBits: UInt64 = 0xFFFF_FFFF_0000_0000
    /// 2^32 slots: every home slot is a tag's.
    private static let maximumSlots = 1 << 32

    /// The value number a slot holds.
    @inline(__always)
    private static func number(_ entry: UInt64) -> Int { Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1 }

    /// The home slot of a tag (or of a slot holding it), with `mask` one less than the slot count.
    @inline(__always)
    private static func home(_ tagged: UInt64, _ mask: Int) -> Int { Int(truncatingIfNeeded: tagged >> 32) & mask }

    private mutating func grow() {
        rehash(to: slots.count * 2)
    }

    /// Moves every slot to a table of `size` slots, placing each by its tag (no text is hashed).
    private mutating func rehash(to size: Int) {
        precondition(size <= Self.maximumSlots, "a value table has at most 2^32 slots")
        let old = slots
        slots = Array(repeating: 0, count: size)
        let mask = size - 1
        for entry in old where entry != 0 {
            var slot = Self.home(entry, mask)
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = entry
        }
    }

    /// A keyed hash, eight bytes at a time (multiply and xor-shift rounds, with a final mix so that
    /// the low bits that pick the slot are well spread). Each table draws its own random key, so
    /// nobody can craft values that collide on purpose and turn linear probing into a scan.
    func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash = hashKey ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        var offset = 0
        while offset + 8 <= bytes.count {
            hash = (hash ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            hash ^= hash >> 32
            offset += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            tail |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        hash = (hash ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        hash ^= hash >> 29
        hash = hash &* 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 32
        return hash
    }
}

/// Byte equality of two regions; a zero-length comparison is always equal.
@inline(__always)
private func memcmpEqual(_ lhs: UnsafeRawPointer, _ rhs: UnsafeRawPointer?, _ count: Int) -> Bool {
    guard count > 0, let rhs else { return true }
    return memcmp(lhs, rhs, count) == 0
}

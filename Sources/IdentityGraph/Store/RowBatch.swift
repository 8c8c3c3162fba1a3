/// Everything one commit writes, already in stored form, back to back: changed Contact rows, links
/// and keep-apart rules added or removed, and change events. Each entry is
///
///     u8 table · u8 operation (0 put, 1 delete) · 8-byte key · u32 length · value
///
/// and entries are applied in the order they were appended, so a link added and removed within one
/// batch ends up absent. Encoding happens when something changes, straight from the graph, so a
/// batch costs no `Contact` values and no `String`s.
struct RowBatch: Sendable {
    enum Table: UInt8, CaseIterable {
        case contacts = 0
        case links = 1
        case rules = 2
        case changes = 3
        /// The store's metadata; cluster mode keeps the position of the log it has applied there.
        case meta = 4
    }

    private(set) var bytes: [UInt8] = []
    /// How many Contact rows the batch writes.
    private(set) var count = 0
    /// How many entries of any kind.
    private(set) var entries = 0

    var isEmpty: Bool { entries == 0 }

    /// Appends the row `id`, whose record `encode` writes.
    mutating func append(id: Int, _ encode: (inout [UInt8]) -> Void) {
        put(.contacts, key: UInt64(id), encode)
        count += 1
    }

    /// Appends a put of the value `encode` writes under `key` in `table`.
    mutating func put(_ table: Table, key: UInt64, _ encode: (inout [UInt8]) -> Void) {
        bytes.append(table.rawValue)
        bytes.append(0)
        withUnsafeBytes(of: key.bigEndian) { bytes.append(contentsOf: $0) }
        let lengthAt = bytes.count
        bytes.append(contentsOf: [0, 0, 0, 0])
        encode(&bytes)
        let length = UInt32(bytes.count - lengthAt - 4)
        withUnsafeBytes(of: length.littleEndian) { raw in
            for index in 0..<4 { bytes[lengthAt + index] = raw[index] }
        }
        entries += 1
    }

    /// Appends a delete of `key` in `table`.
    mutating func delete(_ table: Table, key: UInt64) {
        bytes.append(table.rawValue)
        bytes.append(1)
        withUnsafeBytes(of: key.bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [0, 0, 0, 0])
        entries += 1
    }

    /// Calls `body` with each entry, in the order they were appended; `value` is `nil` for a delete.
    func forEach(
        _ body: (_ table: Table, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer?) throws -> Void
    ) rethrows {
        try bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let table = Table(rawValue: all[offset])!
                let isDelete = all[offset + 1] == 1
                let key = UnsafeRawBufferPointer(rebasing: all[offset + 2..<offset + 10])
                let length = Int(UInt32(littleEndian: all.loadUnaligned(fromByteOffset: offset + 10, as: UInt32.self)))
                let value = UnsafeRawBufferPointer(rebasing: all[offset + 14..<offset + 14 + length])
                try body(table, key, isDelete ? nil : value)
                offset += 14 + length
            }
        }
    }
}

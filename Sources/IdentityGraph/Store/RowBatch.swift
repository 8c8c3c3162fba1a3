/// Changed rows waiting to be committed, already in their stored form, back to back: for each row
/// its key (the id, 8 bytes big-endian), the record's length (2 bytes, little-endian) and the
/// record. Encoding happens when a row changes, straight from the graph, so a batch costs no
/// `Contact` values and no `String`s.
struct RowBatch: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Appends the row `id`, whose record `encode` writes.
    mutating func append(id: Int, _ encode: (inout [UInt8]) -> Void) {
        bytes.append(contentsOf: ContactRecord.key(id))
        let lengthAt = bytes.count
        bytes.append(contentsOf: [0, 0])
        encode(&bytes)
        let length = UInt16(bytes.count - lengthAt - 2)
        bytes[lengthAt] = UInt8(truncatingIfNeeded: length)
        bytes[lengthAt + 1] = UInt8(truncatingIfNeeded: length >> 8)
        count += 1
    }

    /// Calls `body` with each row's key and record, in the order they were appended.
    func forEach(_ body: (_ key: UnsafeRawBufferPointer, _ record: UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let key = UnsafeRawBufferPointer(rebasing: all[offset..<offset + 8])
                let length = Int(all[offset + 8]) | Int(all[offset + 9]) << 8
                let record = UnsafeRawBufferPointer(rebasing: all[offset + 10..<offset + 10 + length])
                try body(key, record)
                offset += 10 + length
            }
        }
    }
}

/// The graph in an index image (see ``IndexImage``): every array as it lies in memory, read back
/// into arrays of exactly the size they need.
extension ContactGraph {
    func writeImage(to writer: inout ImageWriter) throws(StorageError) {
        try writer.section([UInt64(profileCount)])
        try writer.section(emailOf)
        try writer.section(phoneOf)
        try writer.section(linkedTo)
        try writer.section(nextMember)
        try writer.section(lastMember)
        try writer.section(createdAt)
        try writer.section(updatedAt)
        let tombstones = erasedAt.sorted { $0.key < $1.key }
        try writer.section(tombstones.map(\.key))
        try writer.section(tombstones.map(\.value))
        try emails.writeImage(to: &writer)
        try phones.writeImage(to: &writer)
        try links.writeImage(to: &writer)
        try rules.writeImage(to: &writer)
    }

    /// The graph that ``writeImage(to:)`` wrote. Checks that the sections fit together (the checksum,
    /// checked by the caller once every section is read, vouches for their contents).
    init(image reader: inout ImageReader) throws(IndexImage.Refusal) {
        self.init()
        let scalars: [UInt64] = try reader.section()
        emailOf = try reader.section()
        phoneOf = try reader.section()
        linkedTo = try reader.section()
        nextMember = try reader.section()
        lastMember = try reader.section()
        createdAt = try reader.section()
        updatedAt = try reader.section()
        let erasedIds: [UInt32] = try reader.section()
        let erasedTimes: [Int64] = try reader.section()
        emails = try ValueTable(image: &reader)
        phones = try ValueTable(image: &reader)
        links = try ValuePairs(image: &reader)
        rules = try ValuePairs(image: &reader)
        let count = emailOf.count
        guard scalars.count == 1, count >= 1,
            [phoneOf.count, linkedTo.count, nextMember.count, lastMember.count, createdAt.count, updatedAt.count]
                .allSatisfy({ $0 == count }),
            erasedTimes.count == erasedIds.count, erasedIds.allSatisfy({ Int($0) < count })
        else { throw IndexImage.Refusal(reason: .corrupt) }
        profileCount = Int(scalars[0])
        erasedAt.reserveCapacity(erasedIds.count)
        for (id, time) in zip(erasedIds, erasedTimes) { erasedAt[id] = time }
    }
}

extension ContactGraph {
    /// Bytes each structure of the index holds (capacities, not counts: what the process pays), for
    /// reports of where memory goes. Dictionaries are estimated from their capacity and entry size.
    var memoryBreakdown: [(structure: String, bytes: Int)] {
        func bytes<T>(_ array: [T]) -> Int { array.capacity * MemoryLayout<T>.stride }
        return [
            ("emailOf", bytes(emailOf)), ("phoneOf", bytes(phoneOf)), ("linkedTo", bytes(linkedTo)),
            ("nextMember", bytes(nextMember)), ("lastMember", bytes(lastMember)),
            ("createdAt", bytes(createdAt)), ("updatedAt", bytes(updatedAt)),
            ("tombstones", erasedAt.capacity * (MemoryLayout<UInt32>.stride + MemoryLayout<Int64>.stride + 1)),
        ] + emails.memoryBreakdown.map { ("emails." + $0.structure, $0.bytes) }
            + phones.memoryBreakdown.map { ("phones." + $0.structure, $0.bytes) }
            + [("links", links.memoryBytes), ("keepApart", rules.memoryBytes)]
    }
}

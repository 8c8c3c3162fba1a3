import Foundation
import LMDB

/// Bulk export (SPEC.md section 16): every Contact record of a store, tombstones included, in id
/// order; in NDJSON then every link and every keep-apart rule, oldest first.
///
/// It reads in one LMDB read transaction, so the store may be live (a server writing meanwhile)
/// and the export is one consistent moment of it; it never takes the write lock. Rows are streamed
/// with a cursor and written straight from LMDB's memory into an output buffer that is handed to
/// `write` whenever it holds about `chunkBytes`, so memory stays flat whatever the store's size.
///
/// CSV carries the records only (header `id,email,phoneNumber,linkedId,linkPrecedence,createdAt,
/// updatedAt,deletedAt`, null as an empty field): links and rules have no place in it, and an import
/// of it rebuilds each profile from its `linkedId`s instead.
public enum BulkExport {
    /// What an export wrote.
    public struct Counts: Sendable, Hashable {
        public var contacts = 0
        public var links = 0
        public var keepApartRules = 0
    }

    /// Exports the store in `dataDirectory` in `format`, handing the output to `write` in chunks.
    /// Throws a ``StorageError`` when the store cannot be read, and whatever `write` throws.
    public static func run(
        dataDirectory: String, format: BulkImport.Format, chunkBytes: Int = 1 << 20,
        write: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Counts {
        try withoutActuallyEscaping(write) { write in
            var output = OutputBuffer(capacity: max(chunkBytes, 1 << 16) + Self.recordRoom, write: write)
            defer { output.deallocate() }
            do {
                return try ContactStore.withReadOnlyEnvironment(dataDirectory) { environment in
                    try environment.read { transaction in try export(transaction, format: format, into: &output) }
                }
            } catch let error as LMDBError {
                throw StorageError(.unavailable, "cannot read the store in \(dataDirectory): \(error)")
            }
        }
    }

    /// The most one record can take: a 254-byte email escaped six times over, and the rest.
    private static let recordRoom = 4096

    private static func export(
        _ transaction: Transaction, format: BulkImport.Format, into output: inout OutputBuffer
    ) throws -> Counts {
        var counts = Counts()
        let rows = try transaction.openDatabase(named: "contacts")
        if format == .csv { output.raw("id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt\n") }
        try ContactStore.forEachRow(in: transaction, rows) { id, row in
            try output.makeRoom(Self.recordRoom)
            if format == .csv { output.csvRecord(id: id, row) } else { output.jsonRecord(id: id, row) }
            counts.contacts += 1
        }
        guard format == .ndjson else {
            try output.flush()
            return counts
        }
        for (name, member) in [("links", "link"), ("keepApart", "keepApart")] {
            // A v1 store has neither table.
            guard let table = try? transaction.openDatabase(named: name) else { continue }
            try ContactStore.forEachPair(in: transaction, table, rule: member != "link") { _, at, email, phone in
                try output.makeRoom(Self.recordRoom)
                output.raw(member == "link" ? "{\"link\":{\"email\":" : "{\"keepApart\":{\"email\":")
                output.jsonString(email)
                output.raw(",\"phoneNumber\":")
                output.jsonString(phone)
                output.raw(",\"at\":\"")
                output.timestamp(at)
                output.raw("\"}}\n")
                if member == "link" { counts.links += 1 } else { counts.keepApartRules += 1 }
            }
        }
        try output.flush()
        return counts
    }
}

/// A fixed buffer that export writes into without bounds checks, after making room for a record.
private struct OutputBuffer {
    private let storage: UnsafeMutableRawBufferPointer
    private var position = 0
    private let write: (UnsafeRawBufferPointer) throws -> Void
    /// The last timestamp written and its 24 bytes of text: a record's `updatedAt` is usually its
    /// `createdAt`, and rows written in one burst share a millisecond, so formatting is mostly a copy.
    private var lastTimestamp = Int64.min
    private var lastTimestampText: (UInt64, UInt64, UInt64) = (0, 0, 0)

    init(capacity: Int, write: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        storage = .allocate(byteCount: capacity, alignment: 16)
        self.write = write
    }

    func deallocate() { storage.deallocate() }

    /// Flushes first when fewer than `bytes` are free.
    @inline(__always)
    mutating func makeRoom(_ bytes: Int) throws {
        if storage.count - position < bytes { try flush() }
    }

    mutating func flush() throws {
        guard position > 0 else { return }
        try write(UnsafeRawBufferPointer(rebasing: storage[0..<position]))
        position = 0
    }

    @inline(__always)
    private mutating func byte(_ value: UInt8) {
        storage[position] = value
        position += 1
    }

    mutating func raw(_ text: StaticString) {
        let count = text.utf8CodeUnitCount
        storage.baseAddress!.advanced(by: position).copyMemory(from: text.utf8Start, byteCount: count)
        position += count
    }

    private mutating func bytes(_ text: UnsafeRawBufferPointer) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        storage.baseAddress!.advanced(by: position).copyMemory(from: base, byteCount: text.count)
        position += text.count
    }

    mutating func integer(_ value: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var count = 0
        var rest = UInt64(value)
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            bytes(UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }

    private mutating func digits(_ value: Int64, _ width: Int) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            byte(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
            rest %= divisor
            divisor /= 10
        }
    }

    /// RFC 3339 UTC with milliseconds, as ``Timestamp/rfc3339``, without the quotes.
    mutating func timestamp(_ milliseconds: Int64) {
        if milliseconds == lastTimestamp {
            withUnsafeBytes(of: lastTimestampText) { bytes($0) }
            return
        }
        let start = position
        format(milliseconds)
        // Years 0 to 9999 give 24 bytes, the only length kept.
        if position - start == 24 {
            lastTimestamp = milliseconds
            withUnsafeMutableBytes(of: &lastTimestampText) {
                $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[start..<position]))
            }
        }
    }

    private mutating func format(_ milliseconds: Int64) {
        var ms = milliseconds
        var days = ms / 86_400_000
        ms %= 86_400_000
        if ms < 0 {
            ms += 86_400_000
            days -= 1
        }
        let (year, month, day) = Timestamp.civil(fromDays: days)
        digits(year, 4)
        byte(UInt8(ascii: "-"))
        digits(month, 2)
        byte(UInt8(ascii: "-"))
        digits(day, 2)
        byte(UInt8(ascii: "T"))
        digits(ms / 3_600_000, 2)
        byte(UInt8(ascii: ":"))
        digits(ms / 60_000 % 60, 2)
        byte(UInt8(ascii: ":"))
        digits(ms / 1000 % 60, 2)
        byte(UInt8(ascii: "."))
        digits(ms % 1000, 3)
        byte(UInt8(ascii: "Z"))
    }

    /// A JSON string with the escapes RFC 8259 requires (as ``JSONWriter/string(utf8:)``).
    mutating func jsonString(_ text: UnsafeRawBufferPointer) {
        byte(UInt8(ascii: "\""))
        if !text.contains(where: JSONWriter.needsEscape) {
            bytes(text)
        } else {
            var writer = JSONWriter(capacity: text.count * 6 + 2)
            writer.string(utf8: text)
            writer.bytes.withUnsafeBytes { bytes(UnsafeRawBufferPointer(rebasing: $0.dropFirst().dropLast())) }
        }
        byte(UInt8(ascii: "\""))
    }

    private mutating func optionalJSONString(_ text: UnsafeRawBufferPointer?) {
        if let text { jsonString(text) } else { raw("null") }
    }

    /// The Contact record of SPEC.md section 2, exactly as ``Contact/writeJSON(into:)`` writes it.
    mutating func jsonRecord(id: Int, _ row: ContactRecord.Fields) {
        raw("{\"id\":")
        integer(id)
        raw(",\"email\":")
        optionalJSONString(row.email)
        raw(",\"phoneNumber\":")
        optionalJSONString(row.phoneNumber)
        raw(",\"linkedId\":")
        if let linked = row.linkedId { integer(linked) } else { raw("null") }
        raw(row.linkedId == nil ? ",\"linkPrecedence\":\"primary\"" : ",\"linkPrecedence\":\"secondary\"")
        raw(",\"createdAt\":\"")
        timestamp(row.createdAt)
        raw("\",\"updatedAt\":\"")
        timestamp(row.updatedAt)
        if let deletedAt = row.deletedAt {
            raw("\",\"deletedAt\":\"")
            timestamp(deletedAt)
            raw("\"}\n")
        } else {
            raw("\",\"deletedAt\":null}\n")
        }
    }

    /// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
    private mutating func csvField(_ text: UnsafeRawBufferPointer?) {
        guard let text else { return }
        let needsQuotes = text.contains {
            $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D
        }
        guard needsQuotes else { return bytes(text) }
        byte(UInt8(ascii: "\""))
        for value in text {
            if value == UInt8(ascii: "\"") { byte(value) }
            byte(value)
        }
        byte(UInt8(ascii: "\""))
    }

    mutating func csvRecord(id: Int, _ row: ContactRecord.Fields) {
        integer(id)
        byte(UInt8(ascii: ","))
        csvField(row.email)
        byte(UInt8(ascii: ","))
        csvField(row.phoneNumber)
        byte(UInt8(ascii: ","))
        if let linked = row.linkedId { integer(linked) }
        raw(row.linkedId == nil ? ",primary," : ",secondary,")
        timestamp(row.createdAt)
        byte(UInt8(ascii: ","))
        timestamp(row.updatedAt)
        byte(UInt8(ascii: ","))
        if let deletedAt = row.deletedAt { timestamp(deletedAt) }
        byte(UInt8(ascii: "\n"))
    }
}

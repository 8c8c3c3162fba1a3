/// The on-disk form of a Contact row: the key is the id as 8 big-endian bytes (so LMDB's byte
/// order is id order), the value a small binary record:
///
///     u8 format (1) · u8 flags (1: email, 2: phone, 4: deletedAt) · u32 linkedId (0: none)
///     i64 createdAt · i64 updatedAt · [i64 deletedAt] · [u8 length, email] · [u8 length, phone]
///
/// Integers are little-endian; timestamps are milliseconds since 1970. Emails are at most 254 bytes
/// and phone numbers 21, so one length byte is enough.
enum ContactRecord {
    static let format: UInt8 = 1

    static func key(_ id: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(id).bigEndian) { Array($0) }
    }

    static func id(fromKey key: UnsafeRawBufferPointer) -> Int? {
        guard key.count == 8 else { return nil }
        return Int(UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)))
    }

    static func encode(_ contact: Contact, into bytes: inout [UInt8]) {
        withUTF8(contact.email) { email in
            withUTF8(contact.phoneNumber) { phone in
                encode(
                    linkedId: contact.linkedId, createdAt: contact.createdAt.millisecondsSince1970,
                    updatedAt: contact.updatedAt.millisecondsSince1970,
                    deletedAt: contact.deletedAt?.millisecondsSince1970, email: email, phoneNumber: phone, into: &bytes
                )
            }
        }
    }

    /// The record of a row given by its fields; text as UTF-8 bytes.
    static func encode(
        linkedId: Int?, createdAt: Int64, updatedAt: Int64, deletedAt: Int64?,
        email: UnsafeRawBufferPointer?, phoneNumber: UnsafeRawBufferPointer?, into bytes: inout [UInt8]
    ) {
        var flags: UInt8 = 0
        if email != nil { flags |= 1 }
        if phoneNumber != nil { flags |= 2 }
        if deletedAt != nil { flags |= 4 }
        bytes.append(format)
        bytes.append(flags)
        append(UInt32(linkedId ?? 0), to: &bytes)
        append(createdAt, to: &bytes)
        append(updatedAt, to: &bytes)
        if let deletedAt { append(deletedAt, to: &bytes) }
        if let email {
            bytes.append(UInt8(email.count))
            bytes.append(contentsOf: email)
        }
        if let phoneNumber {
            bytes.append(UInt8(phoneNumber.count))
            bytes.append(contentsOf: phoneNumber)
        }
    }

    private static func withUTF8<R>(_ text: String?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard var text else { return body(nil) }
        return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }

    /// A row's fields without copying its text: `email` and `phoneNumber` point into LMDB's
    /// memory and are valid only as long as the bytes given to ``decodeFields(_:)``.
    struct Fields {
        var linkedId: Int?
        var createdAt: Int64
        var updatedAt: Int64
        var deletedAt: Int64?
        var email: UnsafeRawBufferPointer?
        var phoneNumber: UnsafeRawBufferPointer?
    }

    static func decodeFields(_ bytes: UnsafeRawBufferPointer) -> Fields? {
        var reader = Reader(bytes: bytes)
        guard reader.byte() == format, let flags = reader.byte(), flags & ~7 == 0,
            let linked = reader.integer(UInt32.self),
            let created = reader.integer(Int64.self),
            let updated = reader.integer(Int64.self)
        else { return nil }
        var fields = Fields(linkedId: linked == 0 ? nil : Int(linked), createdAt: created, updatedAt: updated)
        if flags & 4 != 0 {
            guard let deleted = reader.integer(Int64.self) else { return nil }
            fields.deletedAt = deleted
        }
        if flags & 1 != 0 {
            guard let email = reader.text() else { return nil }
            fields.email = email
        }
        if flags & 2 != 0 {
            guard let phone = reader.text() else { return nil }
            fields.phoneNumber = phone
        }
        guard reader.isAtEnd else { return nil }
        return fields
    }

    static func decode(id: Int, _ bytes: UnsafeRawBufferPointer) -> Contact? {
        decodeFields(bytes).flatMap { contact(id: id, $0) }
    }

    /// The Contact of row `id`; `nil` when its text is not UTF-8.
    static func contact(id: Int, _ fields: Fields) -> Contact? {
        var contact = Contact(
            id: id, email: nil, phoneNumber: nil, linkedId: fields.linkedId,
            createdAt: Timestamp(millisecondsSince1970: fields.createdAt),
            updatedAt: Timestamp(millisecondsSince1970: fields.updatedAt),
            deletedAt: fields.deletedAt.map { Timestamp(millisecondsSince1970: $0) }
        )
        if let email = fields.email {
            guard let text = String(validating: email, as: UTF8.self) else { return nil }
            contact.email = text
        }
        if let phone = fields.phoneNumber {
            guard let text = String(validating: phone, as: UTF8.self) else { return nil }
            contact.phoneNumber = text
        }
        return contact
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var isAtEnd: Bool { offset == bytes.count }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            let size = MemoryLayout<T>.size
            guard offset + size <= bytes.count else { return nil }
            defer { offset += size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }

        mutating func text() -> UnsafeRawBufferPointer? {
            guard let length = byte(), offset + Int(length) <= bytes.count else { return nil }
            defer { offset += Int(length) }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(length)])
        }
    }
}

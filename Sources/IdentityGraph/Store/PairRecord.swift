/// The stored form of a link or a keep-apart rule: the key is its number (8 bytes, big-endian, so
/// key order is age order), the value
///
///     i64 at · u8 length, email · u8 length, phone
///
/// with `at` in milliseconds since 1970, little-endian.
enum PairRecord {
    static func encode(
        at: Int64, email: UnsafeRawBufferPointer, phone: UnsafeRawBufferPointer, into bytes: inout [UInt8]
    ) {
        withUnsafeBytes(of: at.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(email.count))
        bytes.append(contentsOf: email)
        bytes.append(UInt8(phone.count))
        bytes.append(contentsOf: phone)
    }

    /// The fields of a stored pair, pointing into `bytes`; `nil` when malformed.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> (at: Int64, email: UnsafeRawBufferPointer,
                                                            phone: UnsafeRawBufferPointer)? {
        guard bytes.count >= 10 else { return nil }
        let at = Int64(littleEndian: bytes.loadUnaligned(as: Int64.self))
        let emailLength = Int(bytes[8])
        guard 9 + emailLength < bytes.count else { return nil }
        let email = UnsafeRawBufferPointer(rebasing: bytes[9..<9 + emailLength])
        let phoneLength = Int(bytes[9 + emailLength])
        guard 10 + emailLength + phoneLength == bytes.count else { return nil }
        let phone = UnsafeRawBufferPointer(rebasing: bytes[(10 + emailLength)...])
        return (at, email, phone)
    }
}

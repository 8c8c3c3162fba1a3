/// The normalization and validation rules of SPEC.md section 3, in one place for every transport.
public enum Normalization {
    /// The longest accepted email, in UTF-8 bytes.
    public static let maximumEmailBytes = 254
    /// The most digits a phone number may have.
    public static let maximumPhoneDigits = 20

    /// Trims and lowercases `raw`; `nil` when nothing is left. Throws when the result is not an
    /// address: exactly one `@` with text on both sides, no whitespace or control characters,
    /// at most 254 bytes.
    public static func email(_ raw: String) throws(RequestError) -> String? {
        if let ascii = try asciiEmail(raw) { return ascii.isEmpty ? nil : ascii }
        return try unicodeEmail(raw)
    }

    /// ``email(_:)`` for text known to be ASCII, as bytes (the request decoder's plain strings).
    static func email(ascii bytes: UnsafeRawBufferPointer) throws(RequestError) -> String? {
        let email = try asciiEmail(bytes.assumingMemoryBound(to: UInt8.self))
        return email.isEmpty ? nil : email
    }

    /// ``phoneNumber(_:)`` for text known to be ASCII, as bytes.
    static func phoneNumber(ascii bytes: UnsafeRawBufferPointer) throws(RequestError) -> String? {
        try phoneNumber(bytes.lazy.map(UInt32.init)) { isASCIIWhitespace(UInt8($0)) }
    }

    /// ``email(_:)`` for any text, with Unicode's tables (the ASCII path must agree with it).
    static func unicodeEmail(_ raw: String) throws(RequestError) -> String? {
        let trimmed = trimmingWhitespace(raw)
        if trimmed.isEmpty { return nil }
        let email = trimmed.lowercased()
        var atSigns = 0
        for scalar in email.unicodeScalars {
            if scalar == "@" {
                atSigns += 1
            } else if scalar.properties.isWhitespace || scalar.properties.generalCategory == .control {
                throw RequestError(field: "email", reason: "must not contain whitespace or control characters")
            }
        }
        // Scalars, not Characters: a combining mark after the `@` would hide it inside one Character.
        guard atSigns == 1, email.unicodeScalars.first != "@", email.unicodeScalars.last != "@" else {
            throw RequestError(field: "email", reason: "must contain exactly one @ with text on both sides")
        }
        guard email.utf8.count <= maximumEmailBytes else {
            throw RequestError(field: "email", reason: "must be at most \(maximumEmailBytes) bytes long")
        }
        return email
    }

    /// Trims `raw` and removes spaces, `-`, `.`, `(` and `)`; `nil` when nothing is left. Throws
    /// unless what remains is an optional leading `+` and 1 to 20 digits. Leading zeros are kept.
    public static func phoneNumber(_ raw: String) throws(RequestError) -> String? {
        if raw.utf8.allSatisfy({ $0 < 0x80 }) {
            // The common case: the same rule, byte by byte, without Unicode's tables.
            return try phoneNumber(raw.utf8.lazy.map(UInt32.init)) { isASCIIWhitespace(UInt8($0)) }
        }
        return try unicodePhoneNumber(raw)
    }

    /// ``phoneNumber(_:)`` with Unicode's whitespace for any text (the ASCII path must agree with it).
    static func unicodePhoneNumber(_ raw: String) throws(RequestError) -> String? {
        try phoneNumber(raw.unicodeScalars.lazy.map(\.value)) { Unicode.Scalar($0)?.properties.isWhitespace ?? false }
    }

    /// The phone rule over code points. Whitespace anywhere is dropped, so trimming needs no step
    /// of its own; text that is only whitespace is absent.
    private static func phoneNumber(
        _ codePoints: some Sequence<UInt32>, isWhitespace: (UInt32) -> Bool
    ) throws(RequestError) -> String? {
        var result = [UInt8]()
        var digits = 0
        var blank = true
        for codePoint in codePoints {
            if isWhitespace(codePoint) { continue }
            blank = false
            switch codePoint {
            case 0x30...0x39:  // 0-9
                result.append(UInt8(codePoint))
                digits += 1
            case 0x2B where result.isEmpty:  // a leading +
                result.append(UInt8(codePoint))
            case 0x2D, 0x2E, 0x28, 0x29:  // - . ( )
                continue
            case 0x2B:
                throw RequestError(field: "phoneNumber", reason: "may have a + only at its start")
            default:
                throw RequestError(
                    field: "phoneNumber",
                    reason: "may contain only digits, a leading +, spaces, and the separators - . ( )"
                )
            }
        }
        if blank { return nil }
        guard digits >= 1, digits <= maximumPhoneDigits else {
            throw RequestError(field: "phoneNumber", reason: "must have 1 to \(maximumPhoneDigits) digits")
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// ``email(_:)`` for ASCII input, byte by byte: `nil` when `raw` is not ASCII, `""` when blank.
    private static func asciiEmail(_ raw: String) throws(RequestError) -> String? {
        var raw = raw
        guard raw.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        return try raw.withUTF8 { bytes in Result { () throws(RequestError) in try asciiEmail(bytes) } }.get()
    }

    private static func asciiEmail(_ bytes: UnsafeBufferPointer<UInt8>) throws(RequestError) -> String {
        var start = 0
        var end = bytes.count
        while start < end, isASCIIWhitespace(bytes[start]) { start += 1 }
        while end > start, isASCIIWhitespace(bytes[end - 1]) { end -= 1 }
        if start == end { return "" }
        var atSigns = 0
        for byte in bytes[start..<end] {
            if byte == UInt8(ascii: "@") {
                atSigns += 1
            } else if byte <= 0x20 || byte == 0x7F {
                throw RequestError(field: "email", reason: "must not contain whitespace or control characters")
            }
        }
        guard atSigns == 1, bytes[start] != UInt8(ascii: "@"), bytes[end - 1] != UInt8(ascii: "@") else {
            throw RequestError(field: "email", reason: "must contain exactly one @ with text on both sides")
        }
        guard end - start <= maximumEmailBytes else {
            throw RequestError(field: "email", reason: "must be at most \(maximumEmailBytes) bytes long")
        }
        return String(unsafeUninitializedCapacity: end - start) { buffer in
            for (offset, byte) in bytes[start..<end].enumerated() {
                let isUpper = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")
                buffer[offset] = isUpper ? byte + 32 : byte
            }
            return end - start
        }
    }

    /// The ASCII characters with Unicode's White_Space property, as `isWhitespace` sees them: space,
    /// tab, line feed, vertical tab, form feed, carriage return.
    private static func isASCIIWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }

    static func trimmingWhitespace(_ text: String) -> Substring {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return Substring(scalars[first...last])
    }
}

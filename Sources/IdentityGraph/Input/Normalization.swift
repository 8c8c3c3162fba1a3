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
        let trimmed = trimmingWhitespace(raw)
        if trimmed.isEmpty { return nil }
        var result = [UInt8]()
        result.reserveCapacity(trimmed.utf8.count)
        var digits = 0
        for scalar in trimmed.unicodeScalars {
            switch scalar {
            case "0"..."9":
                result.append(UInt8(scalar.value))
                digits += 1
            case "+" where result.isEmpty:
                result.append(UInt8(ascii: "+"))
            case "-", ".", "(", ")":
                continue
            case _ where scalar.properties.isWhitespace:
                continue
            case "+":
                throw RequestError(field: "phoneNumber", reason: "may have a + only at its start")
            default:
                throw RequestError(
                    field: "phoneNumber",
                    reason: "may contain only digits, a leading +, spaces, and the separators - . ( )"
                )
            }
        }
        guard digits >= 1, digits <= maximumPhoneDigits else {
            throw RequestError(field: "phoneNumber", reason: "must have 1 to \(maximumPhoneDigits) digits")
        }
        return String(decoding: result, as: UTF8.self)
    }

    static func trimmingWhitespace(_ text: String) -> Substring {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return Substring(scalars[first...last])
    }
}

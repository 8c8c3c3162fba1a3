/// A validated, normalized identify request: at least one of the two is present.
public struct IdentifyRequest: Sendable, Hashable {
    public let email: String?
    public let phoneNumber: String?

    /// Normalizes and validates text values (for callers that hold them outside JSON, such as tests
    /// and workload replays). Throws when both end up absent or either fails its rule.
    public init(email: String?, phoneNumber: String?) throws(RequestError) {
        let email = try email.flatMap { (value) throws(RequestError) in try Normalization.email(value) }
        let phone = try phoneNumber.flatMap { (value) throws(RequestError) in try Normalization.phoneNumber(value) }
        try self.init(normalizedEmail: email, normalizedPhoneNumber: phone)
    }

    init(normalizedEmail: String?, normalizedPhoneNumber: String?) throws(RequestError) {
        guard normalizedEmail != nil || normalizedPhoneNumber != nil else {
            throw RequestError(field: nil, reason: "at least one of email and phoneNumber must be given and not blank")
        }
        self.email = normalizedEmail
        self.phoneNumber = normalizedPhoneNumber
    }

    /// The `email` rule of SPEC.md section 3 over a JSON value: a string or null.
    static func email(_ value: JSONValue?) throws(RequestError) -> String? {
        switch value {
        case nil, .null?:
            return nil
        case .string(let text)?:
            return try Normalization.email(text)
        case let other?:
            throw RequestError(field: "email", reason: "must be a string or null, not \(other.kindDescription)")
        }
    }

    /// The `phoneNumber` rule of SPEC.md section 3 over a JSON value: a string, null, or an integer
    /// made of digits only.
    static func phoneNumber(_ value: JSONValue?) throws(RequestError) -> String? {
        switch value {
        case nil, .null?:
            return nil
        case .string(let text)?:
            return try Normalization.phoneNumber(text)
        case .number(let literal)? where literal.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }):
            return try Normalization.phoneNumber(literal)
        case .number?:
            throw RequestError(
                field: "phoneNumber",
                reason: "a number must be a whole number written with digits only (no sign, fraction or exponent)"
            )
        case let other?:
            throw RequestError(field: "phoneNumber", reason: "must be a string, a number or null, not \(other.kindDescription)")
        }
    }
}

extension IdentifyRequest {
    /// Decodes and validates a request body (SPEC.md section 3): a JSON object whose `email` and
    /// `phoneNumber` members are read; other members are ignored. A field given twice is rejected,
    /// since either reading of it could link the wrong person.
    public init(json: UnsafeRawBufferPointer) throws(RequestError) {
        self = try Self.decode(json: json) { (_, _) throws(RequestError) in }.get()
    }

    /// ``init(json:)`` over an array of bytes.
    public init(json: [UInt8]) throws(RequestError) {
        let result = json.withUnsafeBytes { buffer in
            Result { () throws(RequestError) in try IdentifyRequest(json: buffer) }
        }
        self = try result.get()
    }

    /// Reads a request object for transports that read further members of it (the line protocol's
    /// `op` and `id`): `email` and `phoneNumber` are read as identify needs them, every other member
    /// goes to `otherMember` as it is read. Malformed JSON, a duplicate identify field and whatever
    /// `otherMember` throws are thrown; a request that is well-formed JSON but not a valid identify
    /// request comes back as a failure, for callers whose operation does not need one.
    ///
    /// The hot path of every transport: values are read in place, and plain ASCII strings go to
    /// normalization as bytes, so decoding costs no intermediate `String`.
    ///
    /// With `members`, the request is one of a transport (SPEC.md section 6: a typo never writes): only
    /// those members go to `otherMember`; an unknown member that matches `email`, `phoneNumber` or one
    /// of `members` when case, `_` and `-` are ignored (`"Email"`, `"phone_number"`, `"dryrun"`) is
    /// rejected, naming the member meant; other unknown members are ignored. Without it (import's
    /// records, which carry a record's other fields) every other member goes to `otherMember`.
    public static func decode(
        json: UnsafeRawBufferPointer, members: [String]? = nil,
        otherMember: (_ key: String, _ value: JSONValue) throws(RequestError) -> Void
    ) throws(RequestError) -> Result<IdentifyRequest, RequestError> {
        var email: JSONObjectReader.RawValue?
        var phone: JSONObjectReader.RawValue?
        try JSONObjectReader.readRawObject(json) { (key, value) throws(RequestError) in
            if key.equals("email") {
                guard email == nil else { throw RequestError.duplicate("email") }
                email = value
            } else if key.equals("phoneNumber") {
                guard phone == nil else { throw RequestError.duplicate("phoneNumber") }
                phone = value
            } else if let members {
                let name = key.string
                if members.contains(name) {
                    try otherMember(name, value.jsonValue)
                } else if let meant = MemberName.nearMiss(name, of: members) {
                    throw RequestError(field: name, reason: "is not a member of this request; did you mean \"\(meant)\"?")
                }
            } else {
                try otherMember(key.string, value.jsonValue)
            }
        }
        return Result { () throws(RequestError) in
            let normalizedEmail: String?
            if case .text(.plain(let bytes))? = email {
                normalizedEmail = try Normalization.email(ascii: bytes)
            } else {
                normalizedEmail = try Self.email(email?.jsonValue)
            }
            let normalizedPhone: String?
            switch phone {
            case .text(.plain(let bytes))?:
                normalizedPhone = try Normalization.phoneNumber(ascii: bytes)
            case .number(let literal)? where literal.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }):
                normalizedPhone = try Normalization.phoneNumber(ascii: literal)
            default:
                normalizedPhone = try Self.phoneNumber(phone?.jsonValue)
            }
            return try IdentifyRequest(normalizedEmail: normalizedEmail, normalizedPhoneNumber: normalizedPhone)
        }
    }
}

extension RequestError {
    /// A member given twice in one request object.
    public static func duplicate(_ field: String) -> RequestError {
        RequestError(field: field, reason: "is given more than once")
    }
}

/// Member names as a typo would spell them: the same letters in another case, with `_` or `-`.
enum MemberName {
    /// The member of `email`, `phoneNumber` and `members` that `name` differs from only in case, `_`
    /// and `-`, or `nil` when there is none (or `name` is exactly one of them).
    static func nearMiss(_ name: String, of members: [String]) -> String? {
        let folded = fold(name)
        for member in ["email", "phoneNumber"] + members where member != name && fold(member) == folded {
            return member
        }
        return nil
    }

    private static func fold(_ name: String) -> [UInt8] {
        name.utf8.compactMap { byte in
            switch byte {
            case UInt8(ascii: "_"), UInt8(ascii: "-"): nil
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte + 32
            default: byte
            }
        }
    }
}

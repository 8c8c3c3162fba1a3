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
    public static func decode(
        json: UnsafeRawBufferPointer,
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

extension IdentifyRequest {
    /// Decodes and validates a request body (SPEC.md section 3): a JSON object whose `email` and
    /// `phoneNumber` members are read; other members are ignored. A field given twice is rejected,
    /// since either reading of it could link the wrong person.
    public init(json: UnsafeRawBufferPointer) throws(RequestError) {
        var fields = IdentifyRequest.Fields()
        try JSONObjectReader.readObject(json) { (key, value) throws(RequestError) in
            _ = try fields.take(key, value)
        }
        try self.init(email: fields.email, phoneNumber: fields.phoneNumber)
    }

    /// ``init(json:)`` over an array of bytes.
    public init(json: [UInt8]) throws(RequestError) {
        let result = json.withUnsafeBytes { buffer in
            Result { () throws(RequestError) in try IdentifyRequest(json: buffer) }
        }
        self = try result.get()
    }

    /// The two identify fields of a request object, collected while reading it, for transports
    /// that read further members of the same object (the line protocol's `op` and `id`).
    public struct Fields: Sendable {
        public var email: JSONValue?
        public var phoneNumber: JSONValue?

        public init() {}

        /// Keeps `value` when `key` is an identify field and returns `true`; `false` for any other key.
        /// Throws when the field was already given.
        public mutating func take(_ key: String, _ value: JSONValue) throws(RequestError) -> Bool {
            switch key {
            case "email":
                guard email == nil else { throw RequestError.duplicate(key) }
                email = value
            case "phoneNumber":
                guard phoneNumber == nil else { throw RequestError.duplicate(key) }
                phoneNumber = value
            default:
                return false
            }
            return true
        }
    }
}

extension RequestError {
    /// A member given twice in one request object.
    public static func duplicate(_ field: String) -> RequestError {
        RequestError(field: field, reason: "is given more than once")
    }
}

import Foundation

extension IdentityGraphClient {
    /// A person's profile (SPEC.md section 4): the `contact` object of an identify answer, or one
    /// of the `profiles` of a look-up.
    public struct Profile: Sendable, Hashable {
        public var primaryContactId: Int
        /// Each distinct email of the profile once, the primary's first.
        public var emails: [String]
        /// Each distinct phone number of the profile once, the primary's first.
        public var phoneNumbers: [String]
        /// Ascending.
        public var secondaryContactIds: [Int]

        public init(primaryContactId: Int, emails: [String], phoneNumbers: [String], secondaryContactIds: [Int]) {
            self.primaryContactId = primaryContactId
            self.emails = emails
            self.phoneNumbers = phoneNumbers
            self.secondaryContactIds = secondaryContactIds
        }
    }

    /// A value of the request that the server's guards held back (SPEC.md section 10).
    public struct IgnoredValue: Sendable, Hashable {
        /// `email` or `phoneNumber`.
        public var field: String
        /// `blocked`, `limit` or `keptApart`.
        public var reason: String
        public var detail: String

        public init(field: String, reason: String, detail: String) {
            self.field = field
            self.reason = reason
            self.detail = detail
        }
    }

    /// What a dry run would have written (SPEC.md section 9).
    public struct DryRunOutcome: Sendable, Hashable {
        /// The id the new contact would get: none or one.
        public var created: [Int]
        /// The primaries that would become secondaries.
        public var mergedPrimaryIds: [Int]

        public init(created: [Int], mergedPrimaryIds: [Int]) {
            self.created = created
            self.mergedPrimaryIds = mergedPrimaryIds
        }
    }

    /// The answer to identify.
    public struct IdentifyAnswer: Sendable, Hashable {
        /// The profile the request belongs to, after it (or, for a dry run, as it would be).
        public var profile: Profile
        /// The values the guards held back, in the server's order; empty when none was.
        public var ignored: [IgnoredValue]
        /// Present for a dry run, which wrote nothing.
        public var dryRun: DryRunOutcome?
        /// In cluster mode, the `seq` of the change event that holds the answer's change (or the
        /// newest one it reflects); `nil` from a server that does not say.
        public var seq: Int?

        public init(profile: Profile, ignored: [IgnoredValue] = [], dryRun: DryRunOutcome? = nil, seq: Int? = nil) {
            self.profile = profile
            self.ignored = ignored
            self.dryRun = dryRun
            self.seq = seq
        }
    }

    /// A Contact record (SPEC.md section 2), as `get` answers it.
    public struct Contact: Sendable, Hashable {
        public var id: Int
        public var email: String?
        public var phoneNumber: String?
        /// For a secondary, its primary's id.
        public var linkedId: Int?
        /// `primary` or `secondary`.
        public var linkPrecedence: String
        /// RFC 3339 UTC with milliseconds, as the server writes it (`2026-11-27T05:33:28.123Z`).
        public var createdAt: String
        public var updatedAt: String
        /// Set once the contact was erased; such a contact carries no email or phone number.
        public var deletedAt: String?

        public init(
            id: Int, email: String?, phoneNumber: String?, linkedId: Int?, linkPrecedence: String,
            createdAt: String, updatedAt: String, deletedAt: String?
        ) {
            self.id = id
            self.email = email
            self.phoneNumber = phoneNumber
            self.linkedId = linkedId
            self.linkPrecedence = linkPrecedence
            self.createdAt = createdAt
            self.updatedAt = updatedAt
            self.deletedAt = deletedAt
        }
    }
}

/// One answer line, decoded with Foundation: its error, when it is one, thrown as the typed error.
struct AnswerLine {
    let object: [String: Any]

    init(_ bytes: [UInt8]) throws {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            throw Self.unexpected("an answer line that is not a JSON object")
        }
        if let error = object["error"] as? [String: Any] {
            throw IdentityGraphClient.ServerError(
                status: Self.int(error["status"]) ?? 0,
                title: error["title"] as? String ?? "",
                detail: error["detail"] as? String ?? "",
                // Inside the error, as SPEC.md section 17 puts it; beside it is read too.
                retryAfter: Self.int(error["retryAfter"]) ?? Self.int(object["retryAfter"])
            )
        }
        self.object = object
    }

    /// The member every successful answer of the op carries.
    func member<T>(_ name: String, as decode: (Any) -> T?) throws -> T {
        guard let value = object[name], let decoded = decode(value) else {
            throw Self.unexpected("an answer without a well-formed \"\(name)\" member")
        }
        return decoded
    }

    var seq: Int? { Self.int(object["seq"]) }

    static func unexpected(_ what: String) -> IdentityGraphClient.ConnectionError {
        IdentityGraphClient.ConnectionError(.unexpectedAnswer, "the server sent \(what)")
    }

    static func int(_ value: Any?) -> Int? {
        // Foundation gives an NSNumber (or an Int); the members read here are never booleans.
        if let int = value as? Int { return int }
        if let number = value as? NSNumber, number.doubleValue == number.doubleValue.rounded() { return number.intValue }
        return nil
    }

    static func ints(_ value: Any) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        let ints = array.compactMap(int)
        return ints.count == array.count ? ints : nil
    }

    static func strings(_ value: Any) -> [String]? {
        value as? [String]
    }

    /// `null` (or absent) is `.some(nil)`; anything else but a string is `nil`.
    static func optionalString(_ value: Any?) -> String?? {
        switch value {
        case nil, is NSNull: .some(nil)
        case let string as String: .some(string)
        default: nil
        }
    }
}

extension IdentityGraphClient.Profile {
    init?(json: Any) {
        guard let object = json as? [String: Any],
            let primary = AnswerLine.int(object["primaryContactId"]),
            let emails = object["emails"].flatMap(AnswerLine.strings),
            let phones = object["phoneNumbers"].flatMap(AnswerLine.strings),
            let secondaries = object["secondaryContactIds"].flatMap(AnswerLine.ints)
        else { return nil }
        self.init(primaryContactId: primary, emails: emails, phoneNumbers: phones, secondaryContactIds: secondaries)
    }
}

extension IdentityGraphClient.IdentifyAnswer {
    init(_ line: AnswerLine) throws {
        let profile = try line.member("contact", as: IdentityGraphClient.Profile.init(json:))
        var ignored: [IdentityGraphClient.IgnoredValue] = []
        if line.object["ignored"] != nil {
            ignored = try line.member("ignored") { value -> [IdentityGraphClient.IgnoredValue]? in
                guard let array = value as? [[String: Any]] else { return nil }
                let values = array.compactMap { item -> IdentityGraphClient.IgnoredValue? in
                    guard let field = item["field"] as? String, let reason = item["reason"] as? String else { return nil }
                    return IdentityGraphClient.IgnoredValue(field: field, reason: reason, detail: item["detail"] as? String ?? "")
                }
                return values.count == array.count ? values : nil
            }
        }
        var dryRun: IdentityGraphClient.DryRunOutcome?
        if line.object["dryRun"] != nil {
            dryRun = try line.member("dryRun") { value -> IdentityGraphClient.DryRunOutcome? in
                guard let object = value as? [String: Any],
                    let created = object["created"].flatMap(AnswerLine.ints),
                    let merged = object["mergedPrimaryIds"].flatMap(AnswerLine.ints)
                else { return nil }
                return IdentityGraphClient.DryRunOutcome(created: created, mergedPrimaryIds: merged)
            }
        }
        self.init(profile: profile, ignored: ignored, dryRun: dryRun, seq: line.seq)
    }
}

extension IdentityGraphClient.Contact {
    init?(json: Any) {
        guard let object = json as? [String: Any],
            let id = AnswerLine.int(object["id"]),
            let email = AnswerLine.optionalString(object["email"]),
            let phoneNumber = AnswerLine.optionalString(object["phoneNumber"]),
            let precedence = object["linkPrecedence"] as? String,
            let createdAt = object["createdAt"] as? String,
            let updatedAt = object["updatedAt"] as? String,
            let deletedAt = AnswerLine.optionalString(object["deletedAt"])
        else { return nil }
        let linkedId = AnswerLine.int(object["linkedId"])
        guard linkedId != nil || object["linkedId"] == nil || object["linkedId"] is NSNull else { return nil }
        self.init(
            id: id, email: email, phoneNumber: phoneNumber, linkedId: linkedId, linkPrecedence: precedence,
            createdAt: createdAt, updatedAt: updatedAt, deletedAt: deletedAt
        )
    }
}

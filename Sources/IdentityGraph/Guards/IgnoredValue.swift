/// A value that identify held back instead of acting on it (SPEC.md section 10, step 4): listed in
/// the answer's `ignored` member.
public struct IgnoredValue: Sendable, Hashable {
    public enum Reason: String, Sendable, Hashable {
        /// The blocklist names the value.
        case blocked
        /// Taking the value would exceed `--max-emails-per-profile` or `--max-phones-per-profile`.
        case limit
        /// Taking the value would join the two values of a keep-apart rule.
        case keptApart
    }

    public var field: GuardField
    public var reason: Reason
    /// A sentence for people; it names no value, so answers and logs never echo it back.
    public var detail: String
    /// For ``Reason/limit``: which limit refused, the emails' or the phone numbers'. A merge refused
    /// for the email limit drops the phone number, so `field` alone does not say.
    public var limit: GuardField?

    public init(field: GuardField, reason: Reason, detail: String, limit: GuardField? = nil) {
        self.field = field
        self.reason = reason
        self.detail = detail
        self.limit = limit
    }

    /// The reason as metrics count it: `blocked`, `keptApart`, or the limit that refused,
    /// `emailLimit` or `phoneLimit`.
    public var metricReason: String {
        switch reason {
        case .limit: (limit ?? field) == .email ? "emailLimit" : "phoneLimit"
        case .blocked, .keptApart: reason.rawValue
        }
    }

    func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{\"field\":")
        writer.string(field.rawValue)
        writer.raw(",\"reason\":")
        writer.string(reason.rawValue)
        writer.raw(",\"detail\":")
        writer.string(detail)
        writer.raw("}")
    }
}

/// The per-profile limits of SPEC.md section 10; 0 means no limit.
public struct ProfileLimits: Sendable, Hashable {
    public var maxEmails: Int
    public var maxPhones: Int

    public init(maxEmails: Int = 0, maxPhones: Int = 0) {
        self.maxEmails = maxEmails
        self.maxPhones = maxPhones
    }

    public static let none = ProfileLimits()

    var isEmpty: Bool { maxEmails == 0 && maxPhones == 0 }
}

/// Why a request was rejected: the field at fault (when one is) and a reason a caller can act on.
///
/// Transports render it as a 400 problem document; nothing is written for a rejected request.
public struct RequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The request field at fault, `nil` when the request as a whole is (malformed JSON, no fields).
    public var field: String?
    /// A sentence saying what is wrong, without the field's name.
    public var reason: String

    public init(field: String?, reason: String) {
        self.field = field
        self.reason = reason
    }

    /// `field: reason`, or the reason alone when no single field is at fault.
    public var detail: String {
        if let field { return "\(field): \(reason)" }
        return reason
    }

    public var description: String { detail }
}

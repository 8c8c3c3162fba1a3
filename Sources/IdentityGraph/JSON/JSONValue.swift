/// A member value of a request object, as ``JSONObjectReader`` read it.
///
/// Requests are flat: the fields that matter are scalars, so nested objects and arrays are checked
/// for well-formedness and kept only as their kind.
public enum JSONValue: Sendable, Hashable {
    case string(String)
    /// A number, kept as its literal text so that no digit is lost (`12345678901234567890`).
    case number(String)
    case bool(Bool)
    case null
    case object
    case array

    /// "a string", "a number", ...: for error messages.
    public var kindDescription: String {
        switch self {
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        case .object: "an object"
        case .array: "an array"
        }
    }
}

/// Why the engine did not carry out an operation. Transports map each case to a status.
public enum EngineError: Error, Sendable, CustomStringConvertible {
    /// Every usable value of an identify request is on the blocklist (422); nothing was written.
    case blocked(RequestError)
    /// The contact, link or rule named does not exist (404).
    case notFound(String)
    /// The contact named was erased (410).
    case erased(String)
    /// The store cannot take the operation now, or the engine is closed (503).
    case storage(StorageError)

    public var description: String {
        switch self {
        case .blocked(let error): error.detail
        case .notFound(let detail), .erased(let detail): detail
        case .storage(let error): error.message
        }
    }
}

/// Guards against over-merging (SPEC.md section 10), as one value the engine swaps whole on reload.
public struct Guards: Sendable {
    public var blocklist: Blocklist
    public var limits: ProfileLimits

    public init(blocklist: Blocklist = .empty, limits: ProfileLimits = .none) {
        self.blocklist = blocklist
        self.limits = limits
    }

    public static let none = Guards()
}

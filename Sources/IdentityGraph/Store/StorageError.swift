/// Why the store could not be opened, read or written.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The data directory cannot be created, opened or copied to.
        case cannotOpen
        /// The stored data breaks the format or the invariants; `identity-graph check` says more.
        case corrupt
        /// A write failed (a full disk, an I/O error); the engine accepts no writes until a retry succeeds.
        case unavailable
        /// The engine has been closed.
        case closed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// What a token may do (SPEC.md section 14); each role includes the ones before it.
public enum Role: Int, Sendable, Comparable, CustomStringConvertible {
    case read = 1
    case write = 2
    case admin = 3

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .admin: "admin"
        }
    }

    init?(name: String) {
        switch name {
        case "read": self = .read
        case "write": self = .write
        case "admin": self = .admin
        default: return nil
        }
    }
}

/// An invalid token file: names the file and, when one line is at fault, its number. Never quotes
/// the line itself, which may hold a token.
public struct TokenFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var line: Int?
    public var reason: String

    public var description: String {
        if let line { return "\(path) line \(line): \(reason)" }
        return "\(path): \(reason)"
    }
}

/// The bearer tokens of `--auth-tokens` and the roles they grant.
public struct TokenTable: Sendable {
    /// Tokens as bytes with their roles; few, so checked one by one in constant time.
    fileprivate var entries: [(token: [UInt8], role: Role)] = []

    public var count: Int { entries.count }

    /// Parses a token file: one `ROLE TOKEN` a line; blank lines and lines starting with `#` are ignored.
    public init(parsing text: String, path: String) throws(TokenFileError) {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else {
                throw TokenFileError(path: path, line: index + 1, reason: "expected 'ROLE TOKEN' (two words)")
            }
            guard let role = Role(name: String(parts[0])) else {
                throw TokenFileError(
                    path: path, line: index + 1, reason: "unknown role; use read, write or admin"
                )
            }
            let token = Array(parts[1].utf8)
            guard token.count >= 8 else {
                throw TokenFileError(path: path, line: index + 1, reason: "a token must be at least 8 characters")
            }
            guard !entries.contains(where: { $0.token == token }) else {
                throw TokenFileError(path: path, line: index + 1, reason: "this token is given twice")
            }
            entries.append((token, role))
        }
        guard !entries.isEmpty else { throw TokenFileError(path: path, line: nil, reason: "holds no token") }
    }

    /// Reads and parses the file at `path`.
    public init(contentsOfFile path: String) throws(TokenFileError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenFileError(path: path, line: nil, reason: "cannot be read: \(Self.readFailure(error))")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw TokenFileError(path: path, line: nil, reason: "is not UTF-8 text")
        }
        try self.init(parsing: text, path: path)
    }

    /// The system's reason (`No such file or directory`), as the blocklist reports it: Foundation
    /// wraps it in words of its own ("The operation could not be completed") that tell an operator nothing.
    private static func readFailure(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error {
            let posix = underlying as NSError
            if posix.domain == NSPOSIXErrorDomain, let message = strerror(Int32(posix.code)) {
                return String(cString: message)
            }
        }
        return error.localizedDescription
    }

    /// The role of `token`, comparing against every entry in time that does not depend on where the
    /// bytes differ, so that response times do not leak a token byte by byte.
    func role(of token: some Collection<UInt8>) -> Role? {
        let presented = Array(token)
        var found: Role?
        for entry in entries {
            var difference = UInt8(truncatingIfNeeded: entry.token.count ^ presented.count)
            for index in 0..<entry.token.count {
                difference |= entry.token[index] ^ (index < presented.count ? presented[index] : 0)
            }
            if difference == 0 { found = entry.role }
        }
        return found
    }
}

/// Who may do what, for both transports: the token table in force (replaced whole on reload) and the
/// line-protocol connections authenticated with each token, so that a reload that removes a token
/// closes them.
public final class AccessControl: Sendable {
    private struct State {
        var table: TokenTable?
        var connections: [ObjectIdentifier: (token: [UInt8], role: Role, channel: any Channel)] = [:]
    }

    private let state: NIOLockedValueBox<State>

    /// `nil`: no `--auth-tokens`, everything is open.
    public init(tokens: TokenTable?) {
        state = NIOLockedValueBox(State(table: tokens))
    }

    /// Whether tokens are required at all.
    public var isEnabled: Bool { state.withLockedValue { $0.table != nil } }

    /// The outcome of checking a request against the role it needs.
    enum Verdict: Equatable {
        case allowed
        /// No token: 401.
        case missingToken
        /// A token nobody holds: 401, saying so (as the line protocol does), so that a client with a
        /// stale or mistyped token does not look for a missing header.
        case unknownToken
        /// A known token whose role is too low: 403.
        case forbidden(has: Role)
    }

    /// Checks `token` (the bytes after `Bearer `, or `nil`) against `needed` (`nil`: open to all).
    func check(token: [UInt8]?, needs needed: Role?) -> Verdict {
        guard let needed else { return .allowed }
        return state.withLockedValue { state in
            guard let table = state.table else { return .allowed }
            guard let token else { return .missingToken }
            guard let role = table.role(of: token) else { return .unknownToken }
            return role >= needed ? .allowed : .forbidden(has: role)
        }
    }

    /// The role of `token`, when tokens are enabled; `.admin` for anyone when they are not.
    func role(of token: [UInt8]) -> Role? {
        state.withLockedValue { state in
            guard let table = state.table else { return .admin }
            return table.role(of: token)
        }
    }

    /// Remembers that `channel` authenticated with `token` for `role`, to close it if a reload removes
    /// the token or changes its role.
    func register(_ channel: any Channel, token: [UInt8], role: Role) {
        state.withLockedValue { $0.connections[ObjectIdentifier(channel)] = (token, role, channel) }
    }

    func unregister(_ channel: any Channel) {
        _ = state.withLockedValue { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Puts `tokens` in force; closes the line connections whose token is no longer there or now has
    /// another role (they may authenticate again). Returns how many it closed.
    @discardableResult
    public func reload(_ tokens: TokenTable) -> Int {
        let closing = state.withLockedValue { state -> [any Channel] in
            state.table = tokens
            let gone = state.connections.filter { tokens.role(of: $0.value.token) != $0.value.role }
            for key in gone.keys { state.connections.removeValue(forKey: key) }
            return gone.values.map(\.channel)
        }
        for channel in closing { channel.close(promise: nil) }
        return closing.count
    }
}

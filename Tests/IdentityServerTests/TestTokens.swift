import Foundation
import IdentityServer

/// The bearer tokens of every access-control test, one per role, written in one place: as a token
/// table for in-process tests and as a `--auth-tokens` file for real servers.
enum TestTokens {
    static let byRole: [Role: String] = [
        .read: "reader-token-1111", .write: "writer-token-2222", .admin: "admin-token-3333",
    ]

    static var read: String { byRole[.read]! }
    static var write: String { byRole[.write]! }
    static var admin: String { byRole[.admin]! }

    /// The tokens of `roles` as a token file's text, one `ROLE TOKEN` a line.
    static func fileText(_ roles: [Role] = [.read, .write, .admin]) -> String {
        roles.map { "\($0) \(byRole[$0]!)\n" }.joined()
    }

    /// Every token, as the server reads it from a file.
    static let table = try! TokenTable(parsing: fileText(), path: "tokens")

    /// Writes the tokens of `roles` to `path`, for `serve --auth-tokens`.
    static func write(_ roles: [Role] = [.read, .write, .admin], to path: String) throws {
        try fileText(roles).write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// One change as cluster mode ships it (SPEC.md section 17): the request that made it, reduced to what
/// decides its outcome, and the time the leader gave it. A follower that runs the same commands, in the
/// same order, on the same state, writes the same rows, ids, links, rules and change events: the
/// engine is deterministic once the clock is given.
///
/// Guards are configuration, which two servers may not share at every moment (a SIGHUP reaches them
/// at different times), so an identify carries its values as the leader's guards left them: a blocked
/// value is already gone. Limits need nothing: a request that a limit cut short writes either what it
/// would write without the limit, or nothing (and then it is not shipped). Keep-apart rules are part of
/// the graph and apply on every server alike.
public enum ReplicatedCommand: Sendable, Equatable {
    case identify(email: String?, phoneNumber: String?, at: Int64)
    case erase(IdentityEngine.Erasure, at: Int64)
    case unmerge(email: String, phoneNumber: String, keepApart: Bool, at: Int64)
    case removeKeepApart(email: String, phoneNumber: String)

    /// Appends the command in the log's binary form: a kind byte, then its fields.
    func encode(into bytes: inout [UInt8]) {
        switch self {
        case .identify(let email, let phone, let at):
            bytes.append(1)
            Self.append(at, to: &bytes)
            Self.append(email, to: &bytes)
            Self.append(phone, to: &bytes)
        case .erase(let erasure, let at):
            switch erasure {
            case .contact(let id):
                bytes.append(2)
                Self.append(at, to: &bytes)
                Self.append(Int64(id), to: &bytes)
            case .profile(let id):
                bytes.append(3)
                Self.append(at, to: &bytes)
                Self.append(Int64(id), to: &bytes)
            case .values(let email, let phone):
                bytes.append(4)
                Self.append(at, to: &bytes)
                Self.append(email, to: &bytes)
                Self.append(phone, to: &bytes)
            }
        case .unmerge(let email, let phone, let keepApart, let at):
            bytes.append(keepApart ? 6 : 5)
            Self.append(at, to: &bytes)
            Self.append(email, to: &bytes)
            Self.append(phone, to: &bytes)
        case .removeKeepApart(let email, let phone):
            bytes.append(7)
            Self.append(email, to: &bytes)
            Self.append(phone, to: &bytes)
        }
    }

    /// The commands of one batch, as ``encode(into:)`` wrote them back to back.
    public static func decodeAll(_ bytes: [UInt8]) throws(StorageError) -> [ReplicatedCommand] {
        var reader = Reader(bytes: bytes)
        var commands: [ReplicatedCommand] = []
        while !reader.atEnd {
            commands.append(try reader.command())
        }
        return commands
    }

    private static func append(_ value: Int64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// A string as a u32 length and its UTF-8 bytes; absent as the length 0xFFFFFFFF.
    private static func append(_ text: String?, to bytes: inout [UInt8]) {
        guard let text else {
            bytes.append(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF])
            return
        }
        withUnsafeBytes(of: UInt32(text.utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: text.utf8)
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var atEnd: Bool { offset >= bytes.count }

        static let malformed = StorageError(.corrupt, "a replicated command is malformed")

        mutating func command() throws(StorageError) -> ReplicatedCommand {
            switch try byte() {
            case 1:
                let at = try integer()
                return .identify(email: try text(), phoneNumber: try text(), at: at)
            case 2:
                let at = try integer()
                return .erase(.contact(Int(try integer())), at: at)
            case 3:
                let at = try integer()
                return .erase(.profile(Int(try integer())), at: at)
            case 4:
                let at = try integer()
                return .erase(.values(email: try text(), phoneNumber: try text()), at: at)
            case let kind where kind == 5 || kind == 6:
                let at = try integer()
                guard let email = try text(), let phone = try text() else { throw Self.malformed }
                return .unmerge(email: email, phoneNumber: phone, keepApart: kind == 6, at: at)
            case 7:
                guard let email = try text(), let phone = try text() else { throw Self.malformed }
                return .removeKeepApart(email: email, phoneNumber: phone)
            default:
                throw Self.malformed
            }
        }

        mutating func byte() throws(StorageError) -> UInt8 {
            guard offset < bytes.count else { throw Self.malformed }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func integer() throws(StorageError) -> Int64 {
            guard offset + 8 <= bytes.count else { throw Self.malformed }
            var value: Int64 = 0
            for index in offset..<offset + 8 { value = value << 8 | Int64(bytes[index]) }
            offset += 8
            return value
        }

        mutating func text() throws(StorageError) -> String? {
            guard offset + 4 <= bytes.count else { throw Self.malformed }
            var length: UInt32 = 0
            for index in offset..<offset + 4 { length = length << 8 | UInt32(bytes[index]) }
            offset += 4
            if length == 0xFFFF_FFFF { return nil }
            let end = offset + Int(length)
            guard end <= bytes.count, let text = String(validating: bytes[offset..<end], as: UTF8.self) else {
                throw Self.malformed
            }
            offset = end
            return text
        }
    }
}

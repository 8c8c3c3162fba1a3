import Foundation

/// The top-level members of one JSON object, found as byte ranges of its text without decoding
/// their values.
///
/// ``IdentityGraphClient/send(line:)`` replaces a request's `id` with the client's own and puts the
/// caller's back into the answer; copying every other member's bytes as they are keeps what JSON
/// numbers cannot survive a decode and encode (a 20-digit phone number, say) and the members' order.
/// It checks the object's outline only; the server judges the values.
struct JSONObjectMembers {
    struct Member {
        /// The member's name, unescaped.
        var key: String
        /// From the opening quote of the name to the end of the value.
        var text: Range<Int>
        var value: Range<Int>
    }

    var members: [Member]

    /// `nil` when `bytes` is not one JSON object (surrounding whitespace aside).
    init?(_ bytes: [UInt8]) {
        var scanner = Scanner(bytes: bytes)
        guard let members = scanner.object() else { return nil }
        self.members = members
    }

    func member(_ key: String) -> Member? {
        members.first { $0.key == key }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        mutating func object() -> [Member]? {
            skipWhitespace()
            guard take(UInt8(ascii: "{")) else { return nil }
            var members: [Member] = []
            skipWhitespace()
            if !take(UInt8(ascii: "}")) {
                while true {
                    let keyStart = index
                    guard string() else { return nil }
                    let keyEnd = index
                    skipWhitespace()
                    guard take(UInt8(ascii: ":")) else { return nil }
                    skipWhitespace()
                    let valueStart = index
                    guard value() else { return nil }
                    guard let key = Self.decodeKey(bytes[keyStart..<keyEnd]) else { return nil }
                    members.append(Member(key: key, text: keyStart..<index, value: valueStart..<index))
                    skipWhitespace()
                    if take(UInt8(ascii: ",")) {
                        skipWhitespace()
                        continue
                    }
                    guard take(UInt8(ascii: "}")) else { return nil }
                    break
                }
            }
            skipWhitespace()
            return index == bytes.count ? members : nil
        }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        private mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        /// A string from its opening quote; a raw control character (a line break among them) is not JSON.
        private mutating func string() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    index += 1
                    return true
                case ..<0x20: return false
                default: index += 1
                }
            }
            return false
        }

        private mutating func value() -> Bool {
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                return string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while index < bytes.count {
                    switch bytes[index] {
                    case UInt8(ascii: "\""):
                        guard string() else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 {
                            index += 1
                            return true
                        }
                    default:
                        break
                    }
                    index += 1
                }
                return false
            default:
                // A number, true, false or null.
                let start = index
                while index < bytes.count, Self.isLiteralByte(bytes[index]) { index += 1 }
                return index > start
            }
        }

        private static func isLiteralByte(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."):
                true
            default:
                false
            }
        }

        /// A quoted name; one with escapes (`"\u0069d"` is `id`) goes through Foundation's decoder.
        private static func decodeKey(_ quoted: ArraySlice<UInt8>) -> String? {
            let inner = quoted.dropFirst().dropLast()
            guard inner.contains(UInt8(ascii: "\\")) else { return String(decoding: inner, as: UTF8.self) }
            return (try? JSONSerialization.jsonObject(with: Data(quoted), options: .fragmentsAllowed)) as? String
        }
    }
}

/// Request members as JSON text: `,"name":value` each, ready to follow the client's `{"id":N`.
struct RequestMembers {
    private(set) var bytes: [UInt8] = []

    init() {}

    mutating func add(_ name: String, string value: String) {
        addName(name)
        Self.appendString(value, to: &bytes)
    }

    mutating func add(_ name: String, raw value: String) {
        addName(name)
        bytes.append(contentsOf: value.utf8)
    }

    private mutating func addName(_ name: String) {
        bytes.append(UInt8(ascii: ","))
        Self.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// A JSON string: quotes, backslashes and control characters escaped, everything else as UTF-8.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case ..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

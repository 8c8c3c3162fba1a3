/// Reads one JSON object (RFC 8259) from UTF-8 bytes and reports its members in order.
///
/// Hand-written because requests sit on the hot path: it makes no allocation for skipped values,
/// validates UTF-8 inside strings, rejects raw control characters, and walks nested containers
/// without recursion, so no input (100,000 levels of `[`, say) can exhaust the stack.
public struct JSONObjectReader {
    /// The deepest nesting accepted inside a member value.
    public static let maximumDepth = 512

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    private init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Calls `member` with each key and value of the object in `bytes`, which must hold exactly one
    /// JSON object (surrounding whitespace allowed). Throws a ``RequestError`` naming no field for
    /// malformed JSON, and whatever `member` throws.
    public static func readObject(
        _ bytes: UnsafeRawBufferPointer,
        member: (_ key: String, _ value: JSONValue) throws(RequestError) -> Void
    ) throws(RequestError) {
        try readRawObject(bytes) { (key, value) throws(RequestError) in try member(key.string, value.jsonValue) }
    }

    /// ``readObject(_:member:)`` without copying: plain strings and numbers come as slices of
    /// `bytes`, valid as long as `bytes` is. For the request decoder, where every allocation shows.
    static func readRawObject(
        _ bytes: UnsafeRawBufferPointer,
        member: (_ key: RawText, _ value: RawValue) throws(RequestError) -> Void
    ) throws(RequestError) {
        var reader = JSONObjectReader(bytes: bytes)
        try reader.readTopLevel(member)
    }

    /// A string as read: its bytes when they are its text (ASCII, no escapes), else decoded.
    enum RawText {
        case plain(UnsafeRawBufferPointer)
        case decoded(String)

        var string: String {
            switch self {
            case .plain(let bytes): String(decoding: bytes, as: UTF8.self)
            case .decoded(let text): text
            }
        }

        func equals(_ name: StaticString) -> Bool {
            switch self {
            case .plain(let bytes):
                guard bytes.count == name.utf8CodeUnitCount else { return false }
                for offset in 0..<bytes.count where bytes[offset] != name.utf8Start[offset] { return false }
                return true
            case .decoded(let text):
                return text == name.description
            }
        }
    }

    /// A member value as read, slices of the input where possible.
    enum RawValue {
        case text(RawText)
        case number(UnsafeRawBufferPointer)
        case bool(Bool)
        case null
        /// A nested object, as the slice of the input that holds it (braces included).
        case object(UnsafeRawBufferPointer)
        case array

        var jsonValue: JSONValue {
            switch self {
            case .text(let text): .string(text.string)
            case .number(let literal): .number(String(decoding: literal, as: UTF8.self))
            case .bool(let value): .bool(value)
            case .null: .null
            case .object: .object
            case .array: .array
            }
        }
    }

    /// ``readObject(_:member:)`` over an array of bytes.
    public static func readObject(
        _ bytes: [UInt8],
        member: (_ key: String, _ value: JSONValue) throws(RequestError) -> Void
    ) throws(RequestError) {
        // `withUnsafeBytes` rethrows untyped errors, so the typed one is carried out in a Result.
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(RequestError) in try readObject(buffer, member: member) }
        }
        try result.get()
    }

    // MARK: - Grammar

    private mutating func readTopLevel(
        _ member: (RawText, RawValue) throws(RequestError) -> Void
    ) throws(RequestError) {
        skipWhitespace()
        guard let first = peek() else { throw malformed("the body is empty; expected a JSON object") }
        guard first == UInt8(ascii: "{") else {
            throw malformed("expected a JSON object at byte \(index), found \(describe(first))")
        }
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw unexpected("a member name in quotes") }
                let key = try readString()
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { throw unexpected("':' after a member name") }
                index += 1
                skipWhitespace()
                let value = try readValue()
                try member(key, value)
                skipWhitespace()
                guard let next = peek() else { throw unexpected("',' or '}'") }
                index += 1
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else {
                    index -= 1
                    throw unexpected("',' or '}'")
                }
            }
        }
        skipWhitespace()
        if index != bytes.count { throw malformed("unexpected data after the JSON object at byte \(index)") }
    }

    private mutating func readValue() throws(RequestError) -> RawValue {
        guard let byte = peek() else { throw unexpected("a value") }
        switch byte {
        case UInt8(ascii: "\""):
            return .text(try readString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try readNumber())
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try readLiteral("null")
            return .null
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let start = index
            try skipContainer()
            return byte == UInt8(ascii: "{") ? .object(UnsafeRawBufferPointer(rebasing: bytes[start..<index])) : .array
        default:
            throw unexpected("a value")
        }
    }

    /// Skips one object or array, checking its grammar with an explicit stack instead of recursion.
    private mutating func skipContainer() throws(RequestError) {
        // true: inside an object; false: inside an array.
        var stack: [Bool] = []
        var expectValue = false  // inside an array after '[' or ',', or in an object after ':'
        repeat {
            skipWhitespace()
            guard let byte = peek() else { throw unexpected("the rest of a nested value") }
            if stack.isEmpty || expectValue {
                // A value is due (the container itself at the start).
                if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                    guard stack.count < Self.maximumDepth else {
                        throw malformed("nested deeper than \(Self.maximumDepth) levels")
                    }
                    stack.append(byte == UInt8(ascii: "{"))
                    index += 1
                    skipWhitespace()
                    let close = byte == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    if peek() == close {
                        index += 1
                        stack.removeLast()
                        expectValue = false
                    } else if byte == UInt8(ascii: "{") {
                        try readMemberName()
                        expectValue = true
                    } else {
                        expectValue = true
                    }
                    continue
                }
                _ = try readValue()
                expectValue = false
                continue
            }
            // After a value inside a container: ',' or the closing bracket.
            let inObject = stack[stack.count - 1]
            index += 1
            if byte == UInt8(ascii: ",") {
                if inObject {
                    skipWhitespace()
                    try readMemberName()
                }
                expectValue = true
            } else if byte == (inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                stack.removeLast()
            } else {
                index -= 1
                throw unexpected(inObject ? "',' or '}'" : "',' or ']'")
            }
        } while !stack.isEmpty
    }

    private mutating func readMemberName() throws(RequestError) {
        guard peek() == UInt8(ascii: "\"") else { throw unexpected("a member name in quotes") }
        _ = try readString()
        skipWhitespace()
        guard peek() == UInt8(ascii: ":") else { throw unexpected("':' after a member name") }
        index += 1
    }

    private mutating func readLiteral(_ word: StaticString) throws(RequestError) {
        let length = word.utf8CodeUnitCount
        let start = index
        guard bytes.count - index >= length else { throw unexpected("a value") }
        for offset in 0..<length where bytes[start + offset] != word.utf8Start[offset] {
            throw unexpected("a value")
        }
        index += length
    }

    private mutating func readNumber() throws(RequestError) -> UnsafeRawBufferPointer {
        let start = index
        func digits(_ reader: inout JSONObjectReader) -> Int {
            let from = reader.index
            while let byte = reader.peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { reader.index += 1 }
            return reader.index - from
        }
        if peek() == UInt8(ascii: "-") { index += 1 }
        if peek() == UInt8(ascii: "0") {
            index += 1
        } else if digits(&self) == 0 {
            throw malformed("invalid number at byte \(start)")
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            if digits(&self) == 0 { throw malformed("invalid number at byte \(start)") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            if digits(&self) == 0 { throw malformed("invalid number at byte \(start)") }
        }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<index])
    }

    /// Reads a string starting at its opening quote: its bytes when they are its text, else decoded.
    private mutating func readString() throws(RequestError) -> RawText {
        let start = index
        index += 1
        let contentStart = index
        var plain = true  // no escapes and only ASCII: the bytes are the text
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let content = UnsafeRawBufferPointer(rebasing: bytes[contentStart..<index])
                index += 1
                if plain { return .plain(content) }
                return .decoded(try decodeString(content, at: start))
            }
            if byte < 0x20 {
                throw malformed("a control character must be escaped inside a string (byte \(index))")
            }
            if byte == UInt8(ascii: "\\") {
                plain = false
                index += 2
                continue
            }
            if byte >= 0x80 { plain = false }
            index += 1
        }
        throw malformed("unterminated string starting at byte \(start)")
    }

    private func decodeString(_ content: UnsafeRawBufferPointer, at start: Int) throws(RequestError) -> String {
        var out = [UInt8]()
        out.reserveCapacity(content.count)
        var i = 0
        while i < content.count {
            let byte = content[i]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                i += 1
                continue
            }
            guard i + 1 < content.count else { throw malformed("invalid escape in the string at byte \(start)") }
            let escaped = content[i + 1]
            i += 2
            switch escaped {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex4(content, at: i) else {
                    throw malformed("invalid \\u escape in the string at byte \(start)")
                }
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard i + 6 <= content.count, content[i] == UInt8(ascii: "\\"), content[i + 1] == UInt8(ascii: "u"),
                        let low = hex4(content, at: i + 2), low >= 0xDC00, low < 0xE000
                    else { throw malformed("unpaired surrogate in \\u escape in the string at byte \(start)") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw malformed("unpaired surrogate in \\u escape in the string at byte \(start)")
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                throw malformed("invalid escape \\\(describe(escaped)) in the string at byte \(start)")
            }
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw malformed("invalid UTF-8 in the string at byte \(start)")
        }
        return text
    }

    private func hex4(_ content: UnsafeRawBufferPointer, at i: Int) -> UInt32? {
        guard i + 4 <= content.count else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = content[i + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    // MARK: - Bytes

    @inline(__always)
    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16, uppercase: true)
    }

    private func unexpected(_ expected: String) -> RequestError {
        guard let byte = peek() else { return malformed("unexpected end of input; expected \(expected)") }
        return malformed("expected \(expected) at byte \(index), found \(describe(byte))")
    }

    private func malformed(_ reason: String) -> RequestError {
        RequestError(field: nil, reason: "malformed JSON: \(reason)")
    }
}

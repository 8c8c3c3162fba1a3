/// Appends JSON text to a byte buffer. The two response shapes are fixed, so they are written
/// directly instead of going through a general encoder.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]
    /// Profile objects written through this writer also carry `"primaryContatctId"`, the misspelling
    /// in the original Bitespeed task that many clients read (`serve --bitespeed-compat`, SPEC.md
    /// section 6). Set on identify answers only.
    public var bitespeedCompat = false

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends text that is already JSON (punctuation, literals, member names without escapes).
    @inline(__always)
    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Appends bytes that are already JSON.
    public mutating func raw(_ json: some Sequence<UInt8>) {
        bytes.append(contentsOf: json)
    }

    public mutating func integer(_ value: Int) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            integer(UInt64(value.magnitude))
        } else {
            integer(UInt64(value))
        }
    }

    public mutating func integer(_ value: UInt64) {
        var digitCount = 1
        var rest = value / 10
        while rest > 0 {
            digitCount += 1
            rest /= 10
        }
        var position = bytes.count + digitCount - 1
        bytes.append(contentsOf: repeatElement(0, count: digitCount))
        var remaining = value
        repeat {
            bytes[position] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
            position -= 1
        } while remaining > 0
    }

    /// Appends `text` as a JSON string with the escapes RFC 8259 requires.
    public mutating func string(_ text: String) {
        string(utf8: text.utf8)
    }

    /// Makes room for `count` more bytes in one allocation; a writer copied from a shared head gets
    /// a buffer of its own here rather than growing it a few bytes at a time.
    public mutating func reserve(_ count: Int) {
        bytes.reserveCapacity(bytes.count + count)
    }

    /// Appends stored UTF-8 text (a value read from the index) as a JSON string: the common case, no
    /// escape needed, is one scan and one copy.
    public mutating func string(utf8 text: UnsafeRawBufferPointer) {
        for byte in text where Self.needsEscape(byte) { return escaped(text) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: text)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends UTF-8 text as a JSON string with the escapes RFC 8259 requires.
    public mutating func string(utf8 text: some Collection<UInt8>) {
        // Most values need no escape: copy them whole.
        if text.contains(where: Self.needsEscape) { return escaped(text) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: text)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Whether RFC 8259 requires `byte` to be escaped in a string (or this writer escapes it: DEL).
    @inline(__always)
    static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == 0x7F
    }

    private mutating func escaped(_ text: some Collection<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text {
            switch byte {
            case UInt8(ascii: "\""):
                raw("\\\"")
            case UInt8(ascii: "\\"):
                raw("\\\\")
            case 0x0A:
                raw("\\n")
            case 0x0D:
                raw("\\r")
            case 0x09:
                raw("\\t")
            case 0..<0x20, 0x7F:
                raw("\\u00")
                bytes.append(Self.hexDigit(byte >> 4))
                bytes.append(Self.hexDigit(byte & 0xF))
            default:
                bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }

    public mutating func optionalString(_ text: String?) {
        if let text { string(text) } else { raw("null") }
    }

    public mutating func optionalInteger(_ value: Int?) {
        if let value { integer(value) } else { raw("null") }
    }
}

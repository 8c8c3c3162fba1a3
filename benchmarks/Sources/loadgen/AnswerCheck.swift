import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks identify answers. A full JSON parse of every answer would cost the client more CPU than the server
/// spends on some requests and skew the numbers on a 2-core machine, so every answer gets a byte-level check of
/// the keys that must be there and only a sample gets a real parse.
enum AnswerCheck {
    /// One answer in this many is parsed with JSONSerialization.
    static let fullParseEvery = 100

    /// nil when the answer looks right, else why not. `expectedID` is the id the line protocol must echo;
    /// nil for HTTP, which carries none.
    static func check(_ bytes: UnsafeRawBufferPointer, expectedID: Int?, fullParse: Bool) -> String? {
        if let reason = quickCheck(bytes, expectedID: expectedID) { return reason }
        if fullParse { return parseCheck(Data(bytes), expectedID: expectedID) }
        return nil
    }

    private static func quickCheck(_ bytes: UnsafeRawBufferPointer, expectedID: Int?) -> String? {
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else {
            return "not a JSON object: \(excerpt(bytes))"
        }
        if let expectedID {
            guard let echoed = integer(after: Keys.id, in: bytes) else {
                return "no numeric id in answer: \(excerpt(bytes))"
            }
            guard echoed == expectedID else { return "id \(echoed) answered where \(expectedID) was due" }
        }
        // A `ping` workload measures the protocol's floor: its answer is `{"id":N,"ok":true}`.
        if bytes.count < 40, bytes.reversed().starts(with: #""ok":true}"#.utf8.reversed()) { return nil }
        guard value(after: Keys.contact, in: bytes, startsWith: UInt8(ascii: "{")) else {
            return "no contact object: \(excerpt(bytes))"
        }
        guard integer(after: Keys.primaryContactId, in: bytes) != nil else {
            return "no integer primaryContactId: \(excerpt(bytes))"
        }
        for key in [Keys.emails, Keys.phoneNumbers, Keys.secondaryContactIds] {
            guard value(after: key, in: bytes, startsWith: UInt8(ascii: "[")) else {
                return "no array \(String(decoding: key, as: UTF8.self)): \(excerpt(bytes))"
            }
        }
        return nil
    }

    private static func parseCheck(_ data: Data, expectedID: Int?) -> String? {
        let excerptText = String(decoding: data.prefix(200), as: UTF8.self)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return "answer does not parse as a JSON object: \(excerptText)"
        }
        if let expectedID {
            guard isInteger(object["id"]), (object["id"] as? Int) == expectedID else {
                return "parsed id is not \(expectedID): \(excerptText)"
            }
        }
        if object["ok"] as? Bool == true, object.count == 2 { return nil }  // a ping's answer
        guard let contact = object["contact"] as? [String: Any] else { return "parsed: no contact: \(excerptText)" }
        guard isInteger(contact["primaryContactId"]) else {
            return "parsed: primaryContactId is not an integer: \(excerptText)"
        }
        guard contact["emails"] is [String], contact["phoneNumbers"] is [String] else {
            return "parsed: emails or phoneNumbers is not an array of strings: \(excerptText)"
        }
        guard let secondaries = contact["secondaryContactIds"] as? [Any], secondaries.allSatisfy(isInteger) else {
            return "parsed: secondaryContactIds is not an array of integers: \(excerptText)"
        }
        return nil
    }

    /// True for a JSON integer. JSONSerialization gives NSNumber for numbers and booleans alike, and on Linux
    /// `is Bool` holds for the numbers 0 and 1 too, so the boxed type code tells them apart: `c` is a boolean,
    /// `d` or `f` a number written with a fraction or exponent.
    private static func isInteger(_ value: Any?) -> Bool {
        guard let number = value as? NSNumber else { return false }
        switch UInt8(bitPattern: number.objCType.pointee) {
        case UInt8(ascii: "c"), UInt8(ascii: "C"), UInt8(ascii: "B"), UInt8(ascii: "d"), UInt8(ascii: "f"):
            return false
        default:
            return true
        }
    }

    private enum Keys {
        static let id = Array(#""id""#.utf8)
        static let contact = Array(#""contact""#.utf8)
        static let primaryContactId = Array(#""primaryContactId""#.utf8)
        static let emails = Array(#""emails""#.utf8)
        static let phoneNumbers = Array(#""phoneNumbers""#.utf8)
        static let secondaryContactIds = Array(#""secondaryContactIds""#.utf8)
    }

    /// Offset just past `key` and the colon after it, or nil. A quoted key cannot match inside a string value,
    /// where its quotes would be escaped.
    private static func valueOffset(after key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, bytes.count >= key.count else { return nil }
        var from = 0
        while from + key.count <= bytes.count {
            guard let hit = memchr(base + from, Int32(key[0]), bytes.count - from - key.count + 1) else { return nil }
            let offset = base.distance(to: UnsafeRawPointer(hit))
            let matches = key.withUnsafeBytes { keyBytes in
                memcmp(base + offset, keyBytes.baseAddress!, key.count) == 0
            }
            if matches {
                var index = skipWhitespace(bytes, from: offset + key.count)
                if index < bytes.count && bytes[index] == UInt8(ascii: ":") {
                    index = skipWhitespace(bytes, from: index + 1)
                    return index
                }
            }
            from = offset + 1
        }
        return nil
    }

    private static func value(after key: [UInt8], in bytes: UnsafeRawBufferPointer, startsWith byte: UInt8) -> Bool {
        guard let offset = valueOffset(after: key, in: bytes) else { return false }
        return offset < bytes.count && bytes[offset] == byte
    }

    /// The non-negative integer value of `key`, or nil if it is missing, not an integer or too long to be an id.
    private static func integer(after key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard var index = valueOffset(after: key, in: bytes) else { return nil }
        var value = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            guard digits < 18 else { return nil }
            value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        guard digits > 0 else { return nil }
        // A fraction or exponent would make it a non-integer number.
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") || bytes[index] | 0x20 == UInt8(ascii: "e") {
            return nil
        }
        return value
    }

    private static func skipWhitespace(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D else { break }
            index += 1
        }
        return index
    }

    static func excerpt(_ bytes: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: bytes.prefix(200), as: UTF8.self)
        return bytes.count > 200 ? text + "…" : text
    }
}

import IdentityGraph

/// The query string of a request, decoded as SPEC.md section 9 asks: percent escapes are decoded and
/// `+` stays a plus sign (phone numbers start with one), unlike HTML form decoding.
struct QueryParameters: Sendable {
    private var values: [String: String] = [:]
    /// The parameter names, in the order the query gives them.
    private(set) var names: [String] = []

    /// Parses `query` (without the `?`); a malformed escape or a name given twice is a 400.
    init(_ query: String) throws(RequestError) {
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = String(pieces[0]).removingPercentEncodingStrictly,
                let value = (pieces.count > 1 ? String(pieces[1]) : "").removingPercentEncodingStrictly
            else {
                throw RequestError(field: nil, reason: "the query string has a malformed percent escape")
            }
            guard values.updateValue(value, forKey: name) == nil else {
                throw RequestError(field: name, reason: "is given more than once")
            }
            names.append(name)
        }
    }

    subscript(_ name: String) -> String? { values[name] }

    /// A normalized email from parameter `name`, or `nil` when absent or blank.
    func email(_ name: String = "email") throws(RequestError) -> String? {
        guard let text = values[name] else { return nil }
        return try Normalization.email(text)
    }

    /// A normalized phone number from parameter `name`, or `nil` when absent or blank.
    func phoneNumber(_ name: String = "phoneNumber") throws(RequestError) -> String? {
        guard let text = values[name] else { return nil }
        return try Normalization.phoneNumber(text)
    }

    /// A positive whole number from parameter `name`, or `nil` when absent.
    func positiveInteger(_ name: String) throws(RequestError) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), value >= 1, text.first != "+" else {
            throw RequestError(field: name, reason: "must be a positive whole number, not \"\(text)\"")
        }
        return value
    }

    /// A whole number in `range` from parameter `name`, or `nil` when absent.
    func integer(_ name: String, in range: ClosedRange<Int>) throws(RequestError) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value), text.first != "+" else {
            throw RequestError(field: name, reason: "must be a whole number from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"")
        }
        return value
    }
}

extension String {
    /// The text with `%XX` escapes decoded as UTF-8; `nil` for a malformed escape or invalid UTF-8.
    /// `+` is left alone.
    fileprivate var removingPercentEncodingStrictly: String? {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

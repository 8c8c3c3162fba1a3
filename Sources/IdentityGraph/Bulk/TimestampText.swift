extension Timestamp {
    /// Reads a timestamp as a restore finds it in a file (SPEC.md section 16): RFC 3339, as `export`
    /// writes it (`2026-11-27T05:33:28.123Z`), and the forms a database dump of the Bitespeed table
    /// has: a space for the `T` (`2023-04-01 00:00:00.374+00`), an offset of hours only or with
    /// minutes, a fraction of any length (cut to milliseconds), seconds left out, or a date alone
    /// (midnight). Without an offset the time is UTC. `nil` for anything else, or a field out of
    /// range.
    init?(parsing text: String) {
        var text = text
        guard let milliseconds = text.withUTF8({ Self.parse($0) }) else { return nil }
        self.init(millisecondsSince1970: milliseconds)
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        if let milliseconds = parseExportForm(bytes) { return milliseconds }
        var index = 0
        func digits(_ count: Int) -> Int64? {
            guard index + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<count {
                let byte = bytes[index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
        func skip(_ character: Unicode.Scalar) -> Bool {
            guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), skip("-"), let month = digits(2), skip("-"), let day = digits(2),
            (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month)
        else { return nil }
        var milliseconds = daysFromCivil(year: year, month: month, day: day) * 86_400_000
        guard index < bytes.count else { return milliseconds }
        guard skip("T") || skip("t") || skip(" "), let hour = digits(2), skip(":"), let minute = digits(2),
            hour < 24, minute < 60
        else { return nil }
        milliseconds += hour * 3_600_000 + minute * 60_000
        if skip(":") {
            guard let second = digits(2), second < 60 else { return nil }
            milliseconds += second * 1000
            if skip(".") || skip(",") {
                var scale: Int64 = 100
                var count = 0
                while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                    milliseconds += Int64(bytes[index] - UInt8(ascii: "0")) * scale
                    scale /= 10
                    index += 1
                    count += 1
                }
                guard count > 0 else { return nil }
            }
        }
        if index == bytes.count || skip("Z") || skip("z") {
            return index == bytes.count ? milliseconds : nil
        }
        let sign: Int64
        if skip("+") {
            sign = 1
        } else if skip("-") {
            sign = -1
        } else {
            return nil
        }
        guard let offsetHours = digits(2), offsetHours < 24 else { return nil }
        var offsetMinutes: Int64 = 0
        if index < bytes.count {
            _ = skip(":")
            guard let value = digits(2), value < 60 else { return nil }
            offsetMinutes = value
        }
        guard index == bytes.count else { return nil }
        return milliseconds - sign * (offsetHours * 3_600_000 + offsetMinutes * 60_000)
    }

    /// `2026-11-27T05:33:28.123Z`, the one form export writes (every timestamp of a restore of an
    /// export), read by position; `nil` for anything else, which the general reader then tries.
    private static func parseExportForm(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard bytes.count == 24, bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54, bytes[13] == 0x3A,
            bytes[16] == 0x3A, bytes[19] == 0x2E, bytes[23] == 0x5A
        else { return nil }
        func number(_ start: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for offset in start..<start + count {
                let digit = bytes[offset] &- 0x30
                guard digit < 10 else { return nil }
                value = value * 10 + Int64(digit)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
            let minute = number(14, 2), let second = number(17, 2), let milli = number(20, 3),
            (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month), hour < 24,
            minute < 60, second < 60
        else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400_000 + hour * 3_600_000 + minute * 60_000
            + second * 1000 + milli
    }

    private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the inverse
    /// of ``civil(fromDays:)``).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

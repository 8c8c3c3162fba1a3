import Foundation

/// Which columns of a CSV file hold what the import reads.
struct CSVColumns {
    var email: Int?
    var phone: Int?
    var id: Int?
    var linkedId: Int?
    var deletedAt: Int?
    var count: Int

    /// Whether the rows are Contact records (an export, or the Bitespeed `Contact` table).
    var contactRecords: Bool { id != nil && (linkedId != nil || deletedAt != nil) }

    init(email: Int?, phone: Int?, id: Int?, linkedId: Int?, deletedAt: Int?, count: Int) {
        (self.email, self.phone, self.id, self.linkedId, self.deletedAt) = (email, phone, id, linkedId, deletedAt)
        self.count = count
    }

    init(header: [String], path: String, line: Int) throws(LineReader.ReadError) {
        func column(_ name: String) -> Int? {
            header.firstIndex { $0.trimmingCharacters(in: .whitespaces).lowercased() == name.lowercased() }
        }
        self.init(
            email: column("email"), phone: column("phoneNumber"), id: column("id"), linkedId: column("linkedId"),
            deletedAt: column("deletedAt"), count: header.count
        )
        guard email != nil || phone != nil else {
            throw LineReader.ReadError(
                message: "\(path):\(line): the header row names neither an email nor a phoneNumber column"
            )
        }
    }

    /// The fields of a header row (quotes removed; a header holds no line breaks).
    static func split(_ text: String) -> [String] {
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var previousQuote = false
        for character in text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text {
            if character == "\"" {
                if inQuotes {
                    inQuotes = false
                    previousQuote = true
                } else {
                    if previousQuote { field.append("\"") }
                    inQuotes = true
                    previousQuote = false
                }
            } else if character == "," && !inQuotes {
                fields.append(field)
                field = ""
                previousQuote = false
            } else {
                field.append(character)
                previousQuote = false
            }
        }
        fields.append(field)
        return fields
    }
}

extension CSVColumns {
    /// Reads the header row of the CSV file `path` from `reader`.
    init(reading reader: inout LineReader, path: String, maximumRecordBytes: Int) throws(LineReader.ReadError) {
        var header: [String] = []
        var headerLine = 1
        while let line = try reader.next() {
            switch line {
            case .tooLong(let number):
                throw LineReader.ReadError(message: "\(path):\(number): the header row is longer than \(maximumRecordBytes) bytes")
            case .text(let number, let bytes):
                if bytes.isEmpty { continue }
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw LineReader.ReadError(message: "\(path):\(number): the header row is not valid UTF-8")
                }
                header = Self.split(text)
                headerLine = number
            }
            break
        }
        if header.isEmpty {
            // An empty file: no records, and nothing to complain about.
            self.init(email: nil, phone: nil, id: nil, linkedId: nil, deletedAt: nil, count: 0)
            return
        }
        try self.init(header: header, path: path, line: headerLine)
    }
}

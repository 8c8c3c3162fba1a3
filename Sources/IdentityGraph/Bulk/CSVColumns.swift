import Foundation

/// Which columns of a CSV file hold what the import reads.
struct CSVColumns {
    var email: Int?
    var phone: Int?
    var id: Int?
    var linkedId: Int?
    var linkPrecedence: Int?
    var createdAt: Int?
    var updatedAt: Int?
    var deletedAt: Int?
    var count: Int
    /// The header's names, for the summary's list of columns not used.
    var names: [String] = []

    /// Whether the rows are Contact records (an export, or the Bitespeed `Contact` table).
    var contactRecords: Bool { id != nil && (linkedId != nil || deletedAt != nil) }

    /// The names of the columns the import does not read (every column but email and phone number
    /// when the rows are identify bodies), in header order.
    var unused: [String] {
        let used = contactRecords
            ? [email, phone, id, linkedId, linkPrecedence, createdAt, updatedAt, deletedAt]
            : [email, phone]
        return names.indices.filter { !used.contains($0) }.map { names[$0] }
    }

    /// The columns the command line names instead of `email` and `phoneNumber`.
    struct Choice: Sendable, Hashable {
        var email: String?
        var phone: String?

        init(email: String? = nil, phone: String? = nil) {
            (self.email, self.phone) = (email, phone)
        }
    }

    init(count: Int) {
        self.count = count
    }

    /// Reads a header row. `email` and `phoneNumber` are found by their exact names (or those of
    /// `choice`); the other columns of Contact records ignoring case and surrounding spaces. A column
    /// that looks like the email or phone number while that field has none is a usage error naming
    /// the flag to use, so that no column of values is dropped silently (SPEC.md section 16).
    init(header: [String], path: String, line: Int, choice: Choice = Choice()) throws(LineReader.ReadError) {
        self.init(count: header.count)
        names = header
        func loose(_ name: String) -> Int? {
            header.firstIndex { $0.trimmingCharacters(in: .whitespaces).lowercased() == name.lowercased() }
        }
        func exact(_ name: String, flag: String?) throws(LineReader.ReadError) -> Int? {
            if let index = header.firstIndex(of: name) { return index }
            guard let flag else { return nil }
            throw LineReader.ReadError(
                message: "\(path):\(line): \(flag) \(name): the header has no such column; its columns: "
                    + Self.list(header),
                isUsage: true
            )
        }
        email = try exact(choice.email ?? "email", flag: choice.email == nil ? nil : "--email-column")
        phone = try exact(choice.phone ?? "phoneNumber", flag: choice.phone == nil ? nil : "--phone-column")
        id = loose("id")
        linkedId = loose("linkedId")
        linkPrecedence = loose("linkPrecedence")
        createdAt = loose("createdAt")
        updatedAt = loose("updatedAt")
        deletedAt = loose("deletedAt")
        for (index, name) in header.enumerated() where index != email && index != phone {
            let key = Self.key(name)
            if email == nil, Self.emailNames.contains(key) {
                throw Self.nearMiss(name, field: "email", flag: "--email-column", path: path, line: line)
            }
            if phone == nil, Self.phoneNames.contains(key) {
                throw Self.nearMiss(name, field: "phoneNumber", flag: "--phone-column", path: path, line: line)
            }
        }
        guard email != nil || phone != nil else {
            throw LineReader.ReadError(
                message: "\(path):\(line): the header row names neither an email nor a phoneNumber column "
                    + "(its columns: \(Self.list(header))); name them with --email-column and --phone-column",
                isUsage: true
            )
        }
    }

    /// A header name without case, spaces, `_`, `-` and `.`: how near misses are recognized.
    private static func key(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { !" _-.\t".unicodeScalars.contains($0) })
    }

    /// Names (as ``key(_:)`` leaves them) that hold an email or a phone number in files people have.
    private static let emailNames: Set<String> = [
        "email", "mail", "emailaddress", "mailaddress", "emailid", "emails", "useremail", "contactemail",
    ]
    private static let phoneNames: Set<String> = [
        "phonenumber", "phone", "phoneno", "phonenr", "phones", "mobile", "mobilenumber", "mobilephone", "mobileno",
        "telephone", "telephonenumber", "tel", "telno", "cell", "cellphone", "cellnumber", "msisdn", "contactnumber",
        "userphone", "contactphone",
    ]

    private static func nearMiss(
        _ name: String, field: String, flag: String, path: String, line: Int
    ) -> LineReader.ReadError {
        LineReader.ReadError(
            message: "\(path):\(line): the header has no \(field) column, but a column \"\(name)\" that looks like "
                + "one; pass \(flag) \"\(name)\" to read it (or rename the column \(field)), so that it is not dropped",
            isUsage: true
        )
    }

    private static func list(_ header: [String]) -> String {
        header.map { "\"\($0)\"" }.joined(separator: ", ")
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
    init(
        reading reader: inout LineReader, path: String, maximumRecordBytes: Int, choice: Choice = Choice()
    ) throws(LineReader.ReadError) {
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
            self.init(count: 0)
            return
        }
        try self.init(header: header, path: path, line: headerLine, choice: choice)
    }
}

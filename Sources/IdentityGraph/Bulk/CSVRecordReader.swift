/// Reads RFC 4180 CSV records from a ``LineReader``: fields separated by commas, a field in double
/// quotes may hold commas, line breaks and `""` for a quote. Each record comes with the number of
/// the line it starts on.
///
/// Written here rather than taken from a CSV package: the import needs line numbers for its
/// reports, a bound on the size of one record that holds even when a quote is never closed, and
/// the same chunked reading as NDJSON so that a 10 MB line is skipped without being held. The
/// packages at hand (yaslab/CSV.swift, SwiftCSV) give neither line numbers nor such a bound, and
/// SwiftCSV reads the whole file into one `String` first.
struct CSVRecordReader: ~Copyable {
    enum Record {
        /// The record's fields (slices of `bytes`), as ranges.
        case fields(line: Int, fields: [Range<Int>])
        /// The record could not be read: too long, or a quote not closed before the end of the file.
        case bad(line: Int, reason: String)
    }

    private var lines: LineReader
    private let maximumRecordBytes: Int
    /// The text of the fields of the record handed out last.
    private(set) var bytes: [UInt8] = []
    private var fields: [Range<Int>] = []

    init(_ lines: consuming LineReader, maximumRecordBytes: Int = 1 << 20) {
        self.lines = lines
        self.maximumRecordBytes = maximumRecordBytes
    }

    var bytesRead: Int { lines.bytesRead }

    /// The next record, or `nil` at the end of the file. Blank lines are skipped.
    mutating func next() throws(LineReader.ReadError) -> Record? {
        bytes.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        var fieldStart = 0
        var inQuotes = false
        var afterQuote = false
        var firstLine = 0
        var tooLong = false
        while let line = try lines.next() {
            guard case .text(let number, let text) = line else {
                if case .tooLong(let number) = line {
                    // A line over the limit ends this record as a bad one, wherever it began.
                    return .bad(line: firstLine == 0 ? number : firstLine, reason: "the record is longer than \(maximumRecordBytes) bytes")
                }
                continue
            }
            if firstLine == 0 {
                if text.isEmpty { continue }
                firstLine = number
            } else {
                // The previous line ended inside quotes: the line break belongs to the field.
                if !tooLong { bytes.append(0x0A) }
            }
            for byte in text {
                if inQuotes {
                    if byte == UInt8(ascii: "\"") {
                        inQuotes = false
                        afterQuote = true
                    } else if !tooLong {
                        bytes.append(byte)
                    }
                } else if byte == UInt8(ascii: "\"") {
                    if afterQuote {
                        // `""` inside a quoted field: one quote.
                        if !tooLong { bytes.append(byte) }
                        inQuotes = true
                        afterQuote = false
                    } else {
                        inQuotes = true
                    }
                } else if byte == UInt8(ascii: ",") {
                    fields.append(fieldStart..<bytes.count)
                    fieldStart = bytes.count
                    afterQuote = false
                } else {
                    afterQuote = false
                    if !tooLong { bytes.append(byte) }
                }
            }
            if bytes.count > maximumRecordBytes { tooLong = true }
            if !inQuotes {
                fields.append(fieldStart..<bytes.count)
                if tooLong { return .bad(line: firstLine, reason: "the record is longer than \(maximumRecordBytes) bytes") }
                return .fields(line: firstLine, fields: fields)
            }
        }
        guard firstLine != 0 else { return nil }
        return .bad(line: firstLine, reason: "a quoted field is not closed before the end of the file")
    }

    /// The text of `field` of the record handed out last.
    func text(_ field: Range<Int>) -> String? {
        bytes[field].withUnsafeBytes { String(validating: $0, as: UTF8.self) }
    }
}

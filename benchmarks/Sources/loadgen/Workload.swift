import Foundation

struct WorkloadError: Error, CustomStringConvertible {
    let description: String
}

/// The workload, read once and turned into ready-to-send bytes so that the worker threads only copy memory.
/// Immutable after init and shared by every thread.
struct Workload: Sendable {
    /// TCP: each line without its opening `{`, so that `{"id":N,` can be put in front of it while sending.
    let tcpTails: [[UInt8]]
    /// TCP: whether the object is `{}`, which takes `{"id":N}` rather than `{"id":N,}`.
    let tcpEmpty: [Bool]
    /// HTTP: the whole request (head and body) for each line.
    let httpRequests: [[UInt8]]

    let count: Int

    init(contentsOf file: String, wireProtocol: WireProtocol, host: String, port: Int, path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw WorkloadError(description: "cannot read workload \(file): \(error.localizedDescription)")
        }
        let lines = try Self.splitObjects(data, file: file)
        guard !lines.isEmpty else { throw WorkloadError(description: "workload \(file) has no lines") }
        count = lines.count

        switch wireProtocol {
        case .tcp:
            tcpTails = lines.map { Array($0.dropFirst()) }
            tcpEmpty = lines.map { line in line.dropFirst().dropLast().allSatisfy(Self.isJSONWhitespace) }
            httpRequests = []
        case .http:
            tcpTails = []
            tcpEmpty = []
            // IPv6 literals need brackets in Host; a name or an IPv4 address goes as is.
            let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            httpRequests = lines.map { body in
                let head = "POST \(path) HTTP/1.1\r\nHost: \(authority)\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.count)\r\n\r\n"
                return Array(head.utf8) + body
            }
        }
    }

    /// Splits on `\n`, trims each line, skips blank ones and insists on something that looks like an object:
    /// the id is spliced in after the `{` without parsing, so anything else would send garbage.
    private static func splitObjects(_ data: Data, file: String) throws -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var lineNumber = 0
        for rawLine in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var slice = rawLine[...]
            while let first = slice.first, isJSONWhitespace(first) { slice = slice.dropFirst() }
            while let last = slice.last, isJSONWhitespace(last) { slice = slice.dropLast() }
            if slice.isEmpty { continue }
            guard slice.first == UInt8(ascii: "{"), slice.last == UInt8(ascii: "}") else {
                throw WorkloadError(description: "\(file):\(lineNumber): not a JSON object on one line")
            }
            lines.append(Array(slice))
        }
        return lines
    }

    private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// Appends the line-protocol request for request number `id` (using line `id % count`), newline included.
    func appendTCPRequest(id: Int, into out: inout [UInt8]) {
        let line = id % count
        out.append(contentsOf: Self.idPrefix)
        appendDecimal(id, into: &out)
        if !tcpEmpty[line] { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: tcpTails[line])
        out.append(UInt8(ascii: "\n"))
    }

    private static let idPrefix = Array(#"{"id":"#.utf8)
}

/// Writes a non-negative integer in decimal without going through String, which would allocate per request.
func appendDecimal(_ value: Int, into out: inout [UInt8]) {
    precondition(value >= 0)
    if value < 10 {
        out.append(UInt8(ascii: "0") + UInt8(value))
        return
    }
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var length = 0
    var rest = value
    withUnsafeMutableBytes(of: &digits) { buffer in
        while rest > 0 {
            buffer[length] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            length += 1
        }
        for index in stride(from: length - 1, through: 0, by: -1) {
            out.append(buffer[index])
        }
    }
}

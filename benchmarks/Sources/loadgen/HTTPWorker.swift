import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One HTTP/1.1 keep-alive connection with one request in flight.
struct HTTPWorker {
    let plan: WorkerPlan
    let coordinator: RunCoordinator

    struct Response {
        var status = 0
        var closeAfter = false
    }

    func run() -> WorkerResult {
        var result = WorkerResult(connectionIndex: plan.connectionIndex)
        var connection: Connection?
        do {
            connection = try Connection(plan.endpoint)
        } catch {
            result.connectionFailures += 1
            result.note("connection \(plan.connectionIndex): \(error)")
        }
        coordinator.arriveAndWaitForStart()
        if connection == nil {
            result.unanswered = plan.requestCount
        } else {
            exchange(over: &connection, into: &result)
        }
        result.finishedAt = MonotonicClock.nanoseconds()
        return result
    }

    private func exchange(over connection: inout Connection?, into result: inout WorkerResult) {
        let count = plan.requestCount
        var input = InputBuffer()
        var body: [UInt8] = []
        var done = 0
        let start = MonotonicClock.nanoseconds()

        do {
            while done < count {
                // A server may end keep-alive with `Connection: close`; that is allowed, so reconnect quietly.
                if connection == nil {
                    connection = try Connection(plan.endpoint)
                    input = InputBuffer()
                }
                guard let current = connection else { break }
                let id = plan.requestID(done)
                let request = plan.workload.httpRequests[id % plan.workload.count]
                plan.waitUntilDue(done, start: start)
                let sentAt = MonotonicClock.nanoseconds()
                try current.writeAll(request)
                let response = try Self.readResponse(from: current, input: &input, body: &body)
                result.recordLatency(sentAt: sentAt, answeredAt: input.lastFillNanos)
                result.answered += 1

                if response.status != 200 {
                    result.badStatus += 1
                    let text = body.withUnsafeBytes { AnswerCheck.excerpt($0) }
                    result.note("connection \(plan.connectionIndex): request \(id): status \(response.status): \(text)")
                } else {
                    let reason = body.withUnsafeBytes { bytes in
                        AnswerCheck.check(
                            bytes, expectedID: nil, fullParse: done % AnswerCheck.fullParseEvery == 0
                        )
                    }
                    if let reason {
                        result.invalidAnswers += 1
                        result.note("connection \(plan.connectionIndex): request \(id): \(reason)")
                    } else {
                        result.succeeded += 1
                    }
                }
                done += 1
                if response.closeAfter { connection = nil }
            }
        } catch {
            result.connectionFailures += 1
            result.unanswered += count - done
            result.note("connection \(plan.connectionIndex): \(error) after \(done) answers")
        }
    }

    /// Reads one response: status line, headers, then a Content-Length or chunked body into `body`.
    static func readResponse(
        from connection: Connection,
        input: inout InputBuffer,
        body: inout [UInt8]
    ) throws -> Response {
        var response = Response()
        let statusLine = try input.readLine(from: connection)
        response.status = input.storage.withUnsafeBytes { bytes in
            Self.parseStatus(UnsafeRawBufferPointer(rebasing: bytes[statusLine]))
        }
        guard response.status > 0 else {
            throw ConnectionError(description: "malformed status line")
        }

        var contentLength: Int?
        var chunked = false
        while true {
            let line = try input.readLine(from: connection)
            if line.isEmpty { break }
            input.storage.withUnsafeBytes { bytes in
                let header = UnsafeRawBufferPointer(rebasing: bytes[line])
                if let value = Self.headerValue(header, name: Self.contentLength) {
                    contentLength = Int(String(decoding: value, as: UTF8.self).trimmingCharacters(in: .whitespaces))
                } else if let value = Self.headerValue(header, name: Self.transferEncoding) {
                    chunked = String(decoding: value, as: UTF8.self).lowercased().contains("chunked")
                } else if let value = Self.headerValue(header, name: Self.connectionHeader) {
                    response.closeAfter = String(decoding: value, as: UTF8.self).lowercased().contains("close")
                }
            }
        }

        body.removeAll(keepingCapacity: true)
        if chunked {
            while true {
                let sizeLine = try input.readLine(from: connection)
                let size = input.storage.withUnsafeBytes { bytes in
                    // The size is hex, optionally followed by `;extensions`.
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[sizeLine]), as: UTF8.self)
                    return Int(text.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16)
                }
                guard let size else { throw ConnectionError(description: "malformed chunk size") }
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    while try !input.readLine(from: connection).isEmpty {}
                    break
                }
                let chunk = try input.read(size, from: connection)
                body.append(contentsOf: input.storage[chunk])
                guard try input.readLine(from: connection).isEmpty else {
                    throw ConnectionError(description: "chunk not followed by CRLF")
                }
            }
        } else if let contentLength {
            let bytes = try input.read(contentLength, from: connection)
            body.append(contentsOf: input.storage[bytes])
        } else {
            // Without a length the body would run to the close, which keep-alive load cannot use.
            throw ConnectionError(description: "response without Content-Length or chunked encoding")
        }
        return response
    }

    private static let contentLength = Array("content-length".utf8)
    private static let transferEncoding = Array("transfer-encoding".utf8)
    private static let connectionHeader = Array("connection".utf8)

    /// `HTTP/1.1 200 OK` gives 200; anything malformed gives 0.
    private static func parseStatus(_ line: UnsafeRawBufferPointer) -> Int {
        guard line.count >= 12, line.starts(with: "HTTP/1.".utf8), line[8] == UInt8(ascii: " ") else { return 0 }
        var status = 0
        for index in 9..<12 {
            let byte = line[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return 0 }
            status = status * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return status
    }

    /// The value of a header line if its name is `name` (given in lowercase; header names are case-insensitive).
    private static func headerValue(_ line: UnsafeRawBufferPointer, name: [UInt8]) -> UnsafeRawBufferPointer? {
        guard line.count > name.count, line[name.count] == UInt8(ascii: ":") else { return nil }
        for index in 0..<name.count where line[index] | 0x20 != name[index] {
            // `| 0x20` lowercases letters; `-` (0x2D) already has that bit set, so it compares as itself.
            return nil
        }
        return UnsafeRawBufferPointer(rebasing: line[(name.count + 1)...])
    }
}

import Foundation

/// A plain blocking TCP client on 127.0.0.1, so tests control every byte on the wire (malformed
/// requests, lying lengths, pipelining) and see exactly what the server sends back.
///
/// `@unchecked Sendable`: a socket is used by one thread at a time, except `shutdownBoth()`, which
/// another thread may call to wake a blocked sender (the kernel makes that safe).
final class TestSocket: @unchecked Sendable {
    private var descriptor: Int32
    private var pending: [UInt8] = []

    struct SocketError: Error, CustomStringConvertible {
        var description: String
    }

    init(port: Int, timeout: Double = 10) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw SocketError(description: "socket() failed: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            // Closed here and marked, so that deinit, which runs for a class whose init throws once
            // every property is set, does not close the number again: by then another thread's new
            // socket may hold it, and closing that one makes its requests and answers cross.
            let failure = errno
            close(descriptor)
            descriptor = -1
            errno = failure
            throw SocketError(description: "connect to port \(port) failed: \(errno)")
        }
        var interval = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Foundation.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { throw SocketError(description: "send failed: \(errno)") }
            offset += sent
        }
    }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Closes the sending side: the server sees end of input, as after `nc -q1`.
    func shutdownWrite() {
        shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Closes both directions, which also wakes a thread blocked sending on this socket.
    func shutdownBoth() {
        shutdown(descriptor, Int32(SHUT_RDWR))
    }

    /// Reads what is available; an empty array means the server closed the connection.
    private func receive() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            if errno == ECONNRESET { return [] }
            throw SocketError(description: "no answer in time (errno \(errno))")
        }
        return Array(buffer[0..<count])
    }

    /// Reads one line (without its `\n`); `nil` when the server closed the connection first.
    func readLine() throws -> String? {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let chunk = try receive()
            if chunk.isEmpty { return nil }
            pending += chunk
        }
    }

    /// Reads exactly `count` bytes; `nil` when the server closed the connection first.
    func read(count: Int) throws -> [UInt8]? {
        while pending.count < count {
            let chunk = try receive()
            if chunk.isEmpty { return nil }
            pending += chunk
        }
        defer { pending.removeFirst(count) }
        return Array(pending[..<count])
    }

    /// Reads until the server closes the connection.
    func readToEnd() throws -> [UInt8] {
        var all = pending
        pending = []
        while true {
            let chunk = try receive()
            if chunk.isEmpty { return all }
            all += chunk
        }
    }

    /// The local port of this connection.
    var localPort: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Waits until the server's end of this connection holds no unread bytes (per `/proc/net/tcp`):
    /// the server has read everything sent so far. Gives up after `seconds`; returns whether it came.
    func waitUntilPeerHasRead(serverPort: Int, seconds: Double = 30) -> Bool {
        // The server's end: local address 127.0.0.1:serverPort, remote 127.0.0.1:localPort, in hex.
        let local = String(format: "0100007F:%04X", serverPort)
        let remote = String(format: "0100007F:%04X", localPort)
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            // Read to the end: `String(contentsOfFile:)` stops after the first block of a /proc file.
            let file = FileHandle(forReadingAtPath: "/proc/net/tcp")
            let table = String(decoding: file?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
            try? file?.close()
            for line in table.split(separator: "\n") {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st tx_queue:rx_queue ...
                guard fields.count > 4, fields[1] == local, fields[2] == remote else { continue }
                if fields[4].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) == 0 { return true }
            }
            if Date() >= deadline { return false }
            usleep(2000)
        }
    }

    /// Whether the server has closed the connection (reads end of stream within the timeout).
    func isClosedByServer() -> Bool {
        (try? receive().isEmpty) ?? false
    }
}

/// One HTTP/1.1 exchange over a ``TestSocket``, `Connection: close`, read to the end.
struct HTTPExchange {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    static func send(
        port: Int, method: String, path: String, headers: [String: String] = [:], body: [UInt8] = []
    ) throws -> HTTPExchange {
        let socket = try TestSocket(port: port)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        var allHeaders = headers
        if allHeaders["Content-Length"] == nil, !body.isEmpty || method == "POST" {
            allHeaders["Content-Length"] = "\(body.count)"
        }
        for (name, value) in allHeaders.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        try socket.send(Array(head.utf8) + body)
        return try parse(socket.readToEnd())
    }

    /// A JSON POST.
    static func post(port: Int, path: String = "/identify", json: [UInt8]) throws -> HTTPExchange {
        try send(port: port, method: "POST", path: path, headers: ["Content-Type": "application/json"], body: json)
    }

    static func post(port: Int, path: String = "/identify", json: String) throws -> HTTPExchange {
        try post(port: port, path: path, json: Array(json.utf8))
    }

    static func get(port: Int, path: String) throws -> HTTPExchange {
        try send(port: port, method: "GET", path: path)
    }

    private static func parse(_ bytes: [UInt8]) throws -> HTTPExchange {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = bytes.firstRange(of: separator) else {
            throw TestSocket.SocketError(description: "no HTTP response: \(String(decoding: bytes, as: UTF8.self))")
        }
        let lines = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1])!
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[end.upperBound...])
        if let length = headers["content-length"].flatMap(Int.init) { body = Array(body.prefix(length)) }
        return HTTPExchange(status: status, headers: headers, body: body)
    }
}

extension TestSocket {
    /// Opens `count` connections, each of which then sends `request`, back to back, so that they
    /// reach the server at nearly the same instant; returns each connection's first answer line.
    static func sameInstant(port: Int, count: Int, request: String) throws -> [String?] {
        let sockets = try (0..<count).map { _ in try TestSocket(port: port) }
        for socket in sockets { try socket.send(request) }
        return try sockets.map { try $0.readLine() }
    }
}

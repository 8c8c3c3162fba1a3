import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum MonotonicClock {
    /// CLOCK_MONOTONIC in nanoseconds: immune to wall-clock steps, and cheap (a vDSO call on Linux).
    @inline(__always)
    static func nanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// Sleeps until `deadline` (a `nanoseconds()` value); returns at once if it has passed.
    static func sleep(until deadline: UInt64) {
        while true {
            let now = nanoseconds()
            guard now < deadline else { return }
            let rest = deadline - now
            var request = timespec(tv_sec: Int(rest / 1_000_000_000), tv_nsec: Int(rest % 1_000_000_000))
            _ = nanosleep(&request, nil)
        }
    }
}

struct Endpoint: Sendable {
    let host: String
    let port: Int
    let timeoutSeconds: Int
}

struct ConnectionError: Error, CustomStringConvertible {
    let description: String

    /// The failure of a system call, described by the current errno.
    static func system(_ what: String) -> ConnectionError {
        ConnectionError(description: "\(what): \(String(cString: strerror(errno)))")
    }
}

/// A blocking TCP socket owned by exactly one worker thread.
final class Connection {
    let fd: Int32

    init(_ endpoint: Endpoint) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard status == 0, let first = list else {
            let reason = String(cString: gai_strerror(status))
            throw ConnectionError(description: "cannot resolve \(endpoint.host): \(reason)")
        }
        defer { freeaddrinfo(list) }

        var lastError = ConnectionError(description: "no address for \(endpoint.host)")
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let socketFD = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if socketFD < 0 {
                lastError = .system("socket")
                continue
            }
            if connect(socketFD, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
                lastError = .system("connect to \(endpoint.host):\(endpoint.port)")
                close(socketFD)
                continue
            }
            do {
                try Self.configure(socketFD, timeoutSeconds: endpoint.timeoutSeconds)
            } catch {
                close(socketFD)
                throw error
            }
            fd = socketFD
            return
        }
        throw lastError
    }

    private static func configure(_ fd: Int32, timeoutSeconds: Int) throws {
        // Small requests must leave at once rather than wait for Nagle to coalesce them with the next one.
        var one: Int32 = 1
        guard setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw ConnectionError.system("setsockopt TCP_NODELAY")
        }
        // Timeouts bound the run: a server that stops answering fails the connection instead of hanging us.
        var limit = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        let size = socklen_t(MemoryLayout<timeval>.size)
        guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, size) == 0,
              setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, size) == 0
        else {
            throw ConnectionError.system("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")
        }
    }

    deinit {
        close(fd)
    }

    func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK {
                        throw ConnectionError(description: "write timed out")
                    }
                    throw ConnectionError.system("write")
                }
                offset += written
            }
        }
    }

    /// Whether bytes (or a close) can be read within `nanoseconds` (rounded up to a millisecond).
    func waitReadable(nanoseconds: UInt64) throws -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(min((nanoseconds + 999_999) / 1_000_000, 60_000))
        while true {
            let ready = poll(&entry, 1, milliseconds)
            if ready >= 0 { return ready > 0 }
            if errno == EINTR { continue }
            throw ConnectionError.system("poll")
        }
    }

    /// Reads what is available (at least one byte); 0 means the peer closed.
    func receive(into pointer: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        while true {
            let count = read(fd, pointer, capacity)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw ConnectionError(description: "read timed out")
            }
            throw ConnectionError.system("read")
        }
    }
}

/// Bytes received but not yet consumed. Ranges handed out index `storage` and stay valid only until the next
/// `fill`, which may compact or grow it; callers use each range before reading more.
struct InputBuffer {
    private(set) var storage: [UInt8]
    private var start = 0
    private var end = 0
    /// Where the search for the next `\n` resumes, so a long line arriving in pieces is not rescanned.
    private var scanned = 0
    /// When the last `fill` returned: the arrival time of every answer completed by those bytes.
    private(set) var lastFillNanos: UInt64 = 0

    /// Answers grow with the profile (one email per linked contact), so the buffer grows on demand up to this.
    private static let maxCapacity = 64 << 20

    init(capacity: Int = 64 << 10) {
        storage = [UInt8](repeating: 0, count: capacity)
    }

    var isEmpty: Bool { start == end }

    /// Reads more bytes from the connection; throws when the peer closes.
    mutating func fill(from connection: Connection) throws {
        if start == end {
            start = 0
            end = 0
            scanned = 0
        } else if end == storage.count {
            if start > 0 {
                storage.withUnsafeMutableBytes { bytes in
                    _ = memmove(bytes.baseAddress!, bytes.baseAddress! + start, end - start)
                }
                end -= start
                scanned -= start
                start = 0
            } else {
                guard storage.count < Self.maxCapacity else {
                    throw ConnectionError(description: "an answer longer than \(Self.maxCapacity) bytes")
                }
                storage.append(contentsOf: repeatElement(0, count: storage.count))
            }
        }
        let received = try storage.withUnsafeMutableBytes { bytes in
            try connection.receive(into: bytes.baseAddress! + end, capacity: bytes.count - end)
        }
        guard received > 0 else { throw ConnectionError(description: "connection closed by the server") }
        end += received
        lastFillNanos = MonotonicClock.nanoseconds()
    }

    /// The next complete line (without `\n` or `\r\n`), or nil when more bytes are needed.
    mutating func takeLine() -> Range<Int>? {
        let from = Swift.max(start, scanned)
        guard from < end else { return nil }
        let newline: Int? = storage.withUnsafeBytes { bytes in
            guard let found = memchr(bytes.baseAddress! + from, 0x0A, end - from) else { return nil }
            return bytes.baseAddress!.distance(to: UnsafeRawPointer(found))
        }
        guard let newline else {
            scanned = end
            return nil
        }
        var lineEnd = newline
        if lineEnd > start && storage[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        let line = start..<lineEnd
        start = newline + 1
        scanned = start
        return line
    }

    /// The next `count` bytes, or nil when more are needed.
    mutating func take(_ count: Int) -> Range<Int>? {
        guard end - start >= count else { return nil }
        let taken = start..<(start + count)
        start += count
        scanned = Swift.max(scanned, start)
        return taken
    }

    /// Like `takeLine`, reading from the connection until a line is complete.
    mutating func readLine(from connection: Connection) throws -> Range<Int> {
        while true {
            if let line = takeLine() { return line }
            try fill(from: connection)
        }
    }

    /// Like `take`, reading from the connection until enough bytes are there.
    mutating func read(_ count: Int, from connection: Connection) throws -> Range<Int> {
        while true {
            if let bytes = take(count) { return bytes }
            try fill(from: connection)
        }
    }
}

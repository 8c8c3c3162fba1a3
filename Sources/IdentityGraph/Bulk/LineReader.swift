import Foundation

/// Reads a file line by line in large chunks (`read(2)` into one buffer), for bulk import.
///
/// A line is handed out as a slice of the buffer, without its `\n` or `\r\n`, valid until the next
/// call. A line longer than `maximumLineBytes` is never held whole: once the buffer holds that many
/// bytes without a line break, the reader drops them and skips to the next `\n`, then reports the
/// line as ``Line/tooLong(number:)``. So a 10 MB line costs at most the buffer, not 10 MB.
struct LineReader: ~Copyable {
    enum Line {
        case text(number: Int, bytes: UnsafeRawBufferPointer)
        case tooLong(number: Int)
    }

    /// A file that cannot be read, or (`isUsage`) whose header the command line must settle; the
    /// message names it.
    struct ReadError: Error {
        var message: String
        var isUsage = false
    }

    private let descriptor: Int32
    private let path: String
    private let maximumLineBytes: Int
    private let chunkBytes: Int
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var atEnd = false
    /// The number of the line handed out last.
    private(set) var lineNumber = 0
    /// Bytes read from the file so far (for progress).
    private(set) var bytesRead = 0

    /// Opens `path` for reading.
    init(path: String, maximumLineBytes: Int = 1 << 20, chunkBytes: Int = 1 << 20) throws(ReadError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ReadError(message: "\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        self.descriptor = descriptor
        self.path = path
        self.maximumLineBytes = maximumLineBytes
        self.chunkBytes = chunkBytes
        // Room for one whole line at the limit plus a chunk read after it.
        buffer = .allocate(byteCount: maximumLineBytes + chunkBytes + 1, alignment: 16)
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    /// The next line, or `nil` at the end of the file. A last line without a line break counts.
    mutating func next() throws(ReadError) -> Line? {
        while true {
            if let newline = findNewline(from: start) {
                lineNumber += 1
                let line = trimmed(start, newline)
                start = newline + 1
                return .text(number: lineNumber, bytes: line)
            }
            if atEnd {
                guard start < end else { return nil }
                lineNumber += 1
                let line = trimmed(start, end)
                start = end
                return .text(number: lineNumber, bytes: line)
            }
            if end - start > maximumLineBytes {
                return try skipRestOfLine()
            }
            try fill()
        }
    }

    /// Drops the line in the buffer, which is over the limit, and everything up to its `\n`.
    private mutating func skipRestOfLine() throws(ReadError) -> Line {
        lineNumber += 1
        let number = lineNumber
        start = 0
        end = 0
        while true {
            try fill()
            if let newline = findNewline(from: start) {
                start = newline + 1
                return .tooLong(number: number)
            }
            start = 0
            end = 0
            if atEnd { return .tooLong(number: number) }
        }
    }

    private func findNewline(from offset: Int) -> Int? {
        guard offset < end, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + offset, 0x0A, end - offset) else { return nil }
        return base.distance(to: found)
    }

    private func trimmed(_ from: Int, _ to: Int) -> UnsafeRawBufferPointer {
        var to = to
        if to > from, buffer[to - 1] == 0x0D { to -= 1 }
        return UnsafeRawBufferPointer(rebasing: buffer[from..<to])
    }

    /// Moves what is left to the front and reads one more chunk after it.
    private mutating func fill() throws(ReadError) {
        if start > 0 {
            if end > start { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: end - start) }
            end -= start
            start = 0
        }
        let room = min(chunkBytes, buffer.count - end)
        while true {
            let count = read(descriptor, buffer.baseAddress! + end, room)
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(message: "\(path): cannot read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { atEnd = true }
            end += count
            bytesRead += count
            return
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Whether the bytes are valid UTF-8; ASCII, the common case, is checked eight bytes at a time.
    var isValidUTF8: Bool {
        var offset = 0
        var allASCII = true
        while offset + 8 <= count {
            if loadUnaligned(fromByteOffset: offset, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 {
                allASCII = false
                break
            }
            offset += 8
        }
        if allASCII {
            while offset < count {
                if self[offset] >= 0x80 {
                    allASCII = false
                    break
                }
                offset += 1
            }
        }
        if allASCII { return true }
        return String(validating: self, as: UTF8.self) != nil
    }
}

import CZstd
import NIOCore

/// Zstandard's one-shot calls (Debian's libzstd), for the parts of a checkpoint: each part is one frame
/// that records its own length, so that a part is checked to give back exactly the bytes it was made of.
enum Zstd {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `bytes` as one frame, at `level` (1, the fastest, already shrinks a store file about six times).
    static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = 1) throws -> ByteBuffer {
        let bound = ZSTD_compressBound(bytes.count)
        var buffer = ByteBufferAllocator().buffer(capacity: bound)
        var failure: String?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { output in
            let written = ZSTD_compress(output.baseAddress, output.count, bytes.baseAddress, bytes.count, level)
            if ZSTD_isError(written) != 0 {
                failure = String(cString: ZSTD_getErrorName(written))
                return 0
            }
            return written
        }
        if let failure { throw Failure(description: "cannot compress: \(failure)") }
        return buffer
    }

    /// Decompresses the single frame `frame` into `output`, which it must fill exactly.
    static func decompress(_ frame: ByteBuffer, into output: UnsafeMutableRawBufferPointer) throws {
        try frame.withUnsafeReadableBytes { input in
            let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
            guard size == UInt64(output.count) else {
                throw Failure(description: "the frame holds \(Int64(bitPattern: size)) bytes, not \(output.count)")
            }
            let written = ZSTD_decompress(output.baseAddress, output.count, input.baseAddress, input.count)
            if ZSTD_isError(written) != 0 {
                throw Failure(description: "cannot decompress: \(String(cString: ZSTD_getErrorName(written)))")
            }
            guard written == output.count else {
                throw Failure(description: "the frame gave \(written) bytes, not \(output.count)")
            }
        }
    }
}

import CLZ4
import NIOCore

/// LZ4's block calls (Debian's liblz4), for the parts of a checkpoint: each part is one block, whose
/// length before compression the checkpoint's layout gives, so that a part is checked to give back exactly
/// the bytes it was made of. LZ4 rather than a tighter codec: a join decompresses every byte of a store and
/// its image while it waits, and LZ4 does that at several gigabytes a second on one core.
enum LZ4 {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `bytes` as one block.
    static func compress(_ bytes: UnsafeRawBufferPointer) throws -> ByteBuffer {
        guard bytes.count <= Int(LZ4_MAX_INPUT_SIZE) else {
            throw Failure(description: "cannot compress \(bytes.count) bytes in one block")
        }
        let bound = Int(LZ4_compressBound(Int32(bytes.count)))
        var buffer = ByteBufferAllocator().buffer(capacity: bound)
        let written = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { output in
            let source = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
            let target = output.baseAddress?.assumingMemoryBound(to: CChar.self)
            return Int(LZ4_compress_default(source, target, Int32(bytes.count), Int32(output.count)))
        }
        guard written > 0 || bytes.isEmpty else { throw Failure(description: "cannot compress") }
        return buffer
    }

    /// Decompresses the block `block` into `output`, which it must fill exactly.
    static func decompress(_ block: ByteBuffer, into output: UnsafeMutableRawBufferPointer) throws {
        let written = block.withUnsafeReadableBytes { input in
            LZ4_decompress_safe(
                input.baseAddress?.assumingMemoryBound(to: CChar.self),
                output.baseAddress?.assumingMemoryBound(to: CChar.self),
                Int32(input.count), Int32(output.count)
            )
        }
        guard written == output.count else {
            throw Failure(description: written < 0 ? "not a whole LZ4 block" : "the block gave \(written) bytes, not \(output.count)")
        }
    }
}

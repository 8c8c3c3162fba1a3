import ConformanceSupport
import NIOCore
import Testing
@testable import IdentityCluster

/// The LZ4 blocks of a checkpoint's parts (``LZ4``): a part gives back exactly its bytes, and one that
/// was cut, altered or is of another length is refused rather than written with holes.
@Suite struct LZ4Tests {
    /// Bytes like a store page's: runs that compress, among random ones that do not.
    static func sample(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = SeededGenerator(seed: seed)
        var bytes: [UInt8] = []
        while bytes.count < count {
            let run = Int(random.next() % 300) + 1
            if random.next() % 2 == 0 {
                bytes += [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()), count: run)
            } else {
                bytes += (0..<run).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
        }
        return Array(bytes.prefix(count))
    }

    static func decompress(_ block: ByteBuffer, count: Int) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        try output.withUnsafeMutableBytes { try LZ4.decompress(block, into: $0) }
        return output
    }

    @Test("a part comes back as it was, whatever its size", arguments: [0, 1, 4095, 4096, 1 << 20])
    func roundTrip(count: Int) throws {
        let bytes = Self.sample(count, seed: UInt64(count))
        let block = try bytes.withUnsafeBytes { try LZ4.compress($0) }
        #expect(count < 4096 || block.readableBytes < count, "\(block.readableBytes) bytes for \(count)")
        #expect(try Self.decompress(block, count: count) == bytes)
    }

    @Test("a block cut short, of another length than its place, or not LZ4 at all is refused")
    func damageIsRefused() throws {
        let bytes = Self.sample(64 << 10, seed: 9)
        let block = try bytes.withUnsafeBytes { try LZ4.compress($0) }
        #expect(throws: LZ4.Failure.self) { try Self.decompress(block.getSlice(at: 0, length: block.readableBytes / 2)!, count: bytes.count) }
        #expect(throws: LZ4.Failure.self) { try Self.decompress(block, count: bytes.count - 1) }
        #expect(throws: LZ4.Failure.self) { try Self.decompress(block, count: bytes.count + 1) }
        let noise = ByteBuffer(bytes: Self.sample(1000, seed: 10).map { $0 | 0xF0 })
        #expect(throws: LZ4.Failure.self) { try Self.decompress(noise, count: bytes.count) }
    }
}

import Foundation
import IdentityGraph
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// Checkpoints in PostgreSQL (SPEC.md section 17): a consistent copy of one server's local copy at a
/// log position, from which a server with an empty data directory joins, and after which old log
/// batches may be pruned.
///
/// A checkpoint is the store file a snapshot writes (section 8), not an NDJSON export: an export leaves
/// out the change events and the seq counter, and a server that joins must show the same events with
/// the same seqs as every other (`GET /changes` is identical on all of them). After the store file comes
/// the index image built from it (``LocalCopy/saveIndexImage(in:)``), so that a server that joins loads
/// its index as a restart does instead of rebuilding it from every row. Both files go in parts of
/// ``partBytes``, each compressed to one LZ4 block (about a quarter of a store file, two fifths of an
/// image) in its own statement, and the `checkpoints` row last: a checkpoint is whole or absent, and one
/// that a crash left half written is cleared by the next writer.
///
/// It has a connection of its own, so that moving hundreds of megabytes never delays the lease.
struct Checkpoints: Sendable {
    let link: PostgresLink
    let schema: String

    /// The size of one part before compression: small enough for one statement's deadline on a slow link.
    var partBytes = 4 << 20

    struct Checkpoint: Sendable, Equatable {
        /// How the parts hold the files: `raw`, the files' bytes as they are (format 1, store only), or
        /// `lz4`, one LZ4 block of ``partBytes`` bytes of a file (fewer in its last part) per part.
        enum Encoding: String, Sendable {
            case raw
            case lz4
        }

        var position: UInt64
        var seq: UInt64
        /// Parts and bytes of the store file: parts `0..<parts`.
        var parts: Int
        var bytes: Int
        var encoding: Encoding = .lz4
        /// The bytes of a file in each of its parts but the last (`lz4`).
        var partBytes = 0
        /// Parts and bytes of the index image, after the store file's: parts `parts..<parts + imageParts`.
        var imageParts = 0
        var imageBytes = 0
    }

    /// The newest whole checkpoint, `nil` when there is none.
    func newest() async throws -> Checkpoint? {
        let rows = try await link.rows(
            """
            SELECT position, seq, parts, bytes, encoding, part_bytes, image_parts, image_bytes
            FROM \(unescaped: schema).checkpoints ORDER BY position DESC LIMIT 1
            """
        )
        guard let row = rows.first else { return nil }
        let (position, seq, parts, bytes, encoding, partBytes, imageParts, imageBytes) = try row.decode(
            (Int64, Int64, Int32, Int64, String, Int32, Int32, Int64).self
        )
        guard let encoding = Checkpoint.Encoding(rawValue: encoding) else {
            throw CheckpointError("the checkpoint at log position \(position) is encoded as \(encoding), unknown here")
        }
        return Checkpoint(
            position: UInt64(position), seq: UInt64(seq), parts: Int(parts), bytes: Int(bytes), encoding: encoding,
            partBytes: Int(partBytes), imageParts: Int(imageParts), imageBytes: Int(imageBytes)
        )
    }

    /// Stores the store file `file`, which holds the log up to `position` and events up to `seq`, and the
    /// index image `image` built from it (if any), as a checkpoint written by `node`; then removes the
    /// older checkpoints. Returns it, with the bytes it takes in PostgreSQL.
    func write(file: String, image: String?, position: UInt64, seq: UInt64, node: String) async throws
        -> (checkpoint: Checkpoint, stored: Int)
    {
        let key = Int64(position)
        // Parts a crash left behind, of a checkpoint that never got its row.
        try await link.rows(
            """
            DELETE FROM \(unescaped: schema).checkpoint_parts p WHERE NOT EXISTS
                (SELECT 1 FROM \(unescaped: schema).checkpoints c WHERE c.position = p.position)
            """
        )
        var checkpoint = Checkpoint(position: position, seq: seq, parts: 0, bytes: 0, partBytes: partBytes)
        var stored = 0
        (checkpoint.parts, checkpoint.bytes) = try await upload(file, at: key, from: 0, stored: &stored)
        if let image {
            (checkpoint.imageParts, checkpoint.imageBytes) = try await upload(
                image, at: key, from: Int32(checkpoint.parts), stored: &stored
            )
        }
        try await link.rows(
            """
            INSERT INTO \(unescaped: schema).checkpoints
                (position, seq, parts, bytes, node, encoding, part_bytes, image_parts, image_bytes)
            VALUES (\(key), \(Int64(seq)), \(Int32(checkpoint.parts)), \(Int64(checkpoint.bytes)), \(node),
                \(checkpoint.encoding.rawValue), \(Int32(partBytes)), \(Int32(checkpoint.imageParts)),
                \(Int64(checkpoint.imageBytes)))
            """
        )
        try await link.rows("DELETE FROM \(unescaped: schema).checkpoints WHERE position < \(key)")
        try await link.rows("DELETE FROM \(unescaped: schema).checkpoint_parts WHERE position < \(key)")
        return (checkpoint, stored)
    }

    /// Stores `file` as parts numbered from `first`; returns how many, and the file's size. Reading and
    /// compressing a part run on the blocking pool, not on the tasks' threads.
    private func upload(_ file: String, at key: Int64, from first: Int32, stored: inout Int) async throws
        -> (parts: Int, bytes: Int)
    {
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw CheckpointError("cannot read the snapshot \(file)")
        }
        defer { try? handle.close() }
        let partBytes = self.partBytes
        var parts: Int32 = 0
        var bytes = 0
        while true {
            let part = try await NIOThreadPool.singleton.runIfActive { () throws -> (ByteBuffer, Int)? in
                guard let data = try handle.read(upToCount: partBytes), !data.isEmpty else { return nil }
                return (try data.withUnsafeBytes { try LZ4.compress($0) }, data.count)
            }
            guard let (frame, count) = part else { break }
            try await link.rows(
                """
                INSERT INTO \(unescaped: schema).checkpoint_parts (position, part, data)
                VALUES (\(key), \(first + parts), \(frame))
                """,
                timeout: .seconds(60)
            )
            parts += 1
            bytes += count
            stored += frame.readableBytes
        }
        return (Int(parts), bytes)
    }

    /// Writes `checkpoint`'s store file to `file`, and returns its index image, if it has one, in memory
    /// and read into a graph already; checks that every part is there and gives back the bytes it should.
    /// The file is not synced (see ``LocalCopy/beginJoin(in:)``). A join waits for this, so the work is
    /// spread over both cores: `links` fetch the parts at once, the image's first and in order, each
    /// decompressed on the task that fetched it, straight into its place in the image or through a buffer
    /// to its place in the file; a thread of the blocking pool reads the image into a graph close behind
    /// its parts, while the store's still arrive.
    func download(_ checkpoint: Checkpoint, to file: String, over links: [PostgresLink]) async throws
        -> IndexImageBytes?
    {
        let position = Int64(checkpoint.position)
        let total = checkpoint.parts + checkpoint.imageParts
        // Where each part goes. Its stored length is read from the TOAST header, without fetching it.
        let sizes = try await link.rows(
            """
            SELECT part, octet_length(data) FROM \(unescaped: schema).checkpoint_parts
            WHERE position = \(position) ORDER BY part
            """
        ).map { try $0.decode((Int32, Int32).self) }
        guard sizes.count == total, sizes.enumerated().allSatisfy({ $0.offset == Int($0.element.0) }) else {
            throw CheckpointError(
                "the checkpoint at log position \(checkpoint.position) has \(sizes.count) of its \(total) parts"
            )
        }
        let places = try Self.places(of: checkpoint, stored: sizes.map { Int($0.1) })
        let image = checkpoint.imageParts > 0
            ? IndexImageBytes(count: checkpoint.imageBytes, partBytes: checkpoint.partBytes) : nil
        let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CheckpointError("cannot create \(file): errno \(errno)") }
        defer { close(descriptor) }
        let fetch = PartFetch(
            checkpoint: checkpoint, schema: schema, places: places, image: image, descriptor: descriptor, file: file
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let image {
                group.addTask { try await NIOThreadPool.singleton.runIfActive { image.decode() } }
            }
            group.addTask {
                do {
                    try await fetch.parts(Array(checkpoint.parts..<total) + Array(0..<checkpoint.parts), over: links)
                } catch {
                    // The graph waits for parts that will not come.
                    image?.end()
                    throw error
                }
            }
            try await group.waitForAll()
        }
        return image
    }

    /// Fetching some of a checkpoint's parts and putting each in its place.
    private struct PartFetch: Sendable {
        let checkpoint: Checkpoint
        let schema: String
        let places: [Place]
        let image: IndexImageBytes?
        let descriptor: Int32
        let file: String

        /// Fetches the parts `order` on `links` at once, each taking the next part not yet taken.
        func parts(_ order: [Int], over links: [PostgresLink]) async throws {
            let next = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for link in links {
                    group.addTask {
                        let scratch = UnsafeMutableRawBufferPointer.allocate(
                            byteCount: checkpoint.encoding == .lz4 ? max(checkpoint.partBytes, 1) : 0, alignment: 16
                        )
                        defer { scratch.deallocate() }
                        while true {
                            let index = next.withLockedValue { index in
                                defer { index += 1 }
                                return index
                            }
                            guard index < order.count else { return }
                            // Another connection failed: stop at the next part.
                            try Task.checkCancellation()
                            try await fetch(order[index], over: link, scratch: scratch)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        /// Fetches part `part` on `link` and puts it in its place, through `scratch` when it goes to the file.
        private func fetch(_ part: Int, over link: PostgresLink, scratch: UnsafeMutableRawBufferPointer) async throws {
            let rows = try await link.rows(
                """
                SELECT data FROM \(unescaped: schema).checkpoint_parts
                WHERE position = \(Int64(checkpoint.position)) AND part = \(Int32(part))
                """,
                timeout: .seconds(60)
            )
            let place = places[part]
            let name = "part \(part) of the checkpoint at log position \(checkpoint.position)"
            guard let row = rows.first else { throw CheckpointError("\(name) is missing") }
            let data = try row.decode(ByteBuffer.self)
            guard data.readableBytes == place.stored else { throw CheckpointError("\(name) changed size") }
            if checkpoint.encoding == .raw {
                try data.withUnsafeReadableBytes { bytes in
                    try Checkpoints.write(bytes, to: descriptor, at: place.offset, file: file)
                }
                return
            }
            let target = if place.inImage, let image {
                UnsafeMutableRawBufferPointer(rebasing: image.bytes[place.offset..<(place.offset + place.bytes)])
            } else {
                UnsafeMutableRawBufferPointer(rebasing: scratch[..<place.bytes])
            }
            do {
                try LZ4.decompress(data, into: target)
            } catch {
                throw CheckpointError("\(name) is damaged: \(error)")
            }
            if place.inImage {
                image?.arrived(part: part - checkpoint.parts)
            } else {
                try Checkpoints.write(UnsafeRawBufferPointer(target), to: descriptor, at: place.offset, file: file)
            }
        }
    }

    /// Where a part goes: the store file or the image, at which offset, how many bytes it gives and how
    /// many it takes in PostgreSQL.
    private struct Place: Sendable {
        var inImage: Bool
        var offset: Int
        var bytes: Int
        var stored: Int
    }

    /// The place of every part of `checkpoint`, whose parts take `stored` bytes each; throws when they
    /// cannot add up to its files.
    private static func places(of checkpoint: Checkpoint, stored: [Int]) throws -> [Place] {
        let name = "the checkpoint at log position \(checkpoint.position)"
        switch checkpoint.encoding {
        case .raw:
            // Format 1: the store file alone, each part its bytes as they are.
            guard checkpoint.imageParts == 0 else { throw CheckpointError("\(name) has an image in raw parts") }
            var places: [Place] = []
            var offset = 0
            for size in stored {
                places.append(Place(inImage: false, offset: offset, bytes: size, stored: size))
                offset += size
            }
            guard offset == checkpoint.bytes else {
                throw CheckpointError("\(name) holds \(offset) bytes, not \(checkpoint.bytes)")
            }
            return places
        case .lz4:
            let size = checkpoint.partBytes
            func parts(of bytes: Int) -> Int { size > 0 ? (bytes + size - 1) / size : -1 }
            guard size > 0, parts(of: checkpoint.bytes) == checkpoint.parts,
                parts(of: checkpoint.imageBytes) == checkpoint.imageParts
            else {
                throw CheckpointError("\(name) does not add up: its parts cannot hold its files")
            }
            var places: [Place] = []
            for (inImage, count, bytes) in [
                (false, checkpoint.parts, checkpoint.bytes), (true, checkpoint.imageParts, checkpoint.imageBytes),
            ] {
                for index in 0..<count {
                    let offset = index * size
                    places.append(
                        Place(inImage: inImage, offset: offset, bytes: min(size, bytes - offset), stored: stored[places.count])
                    )
                }
            }
            return places
        }
    }

    /// Writes all of `bytes` at `offset` of the open file.
    fileprivate static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, at offset: Int, file: String) throws {
        var done = 0
        while done < bytes.count {
            let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw CheckpointError("cannot write \(file): errno \(errno)") }
            done += written
        }
    }

    /// Deletes the log batches that are both in the newest checkpoint (at or before its `position`) and
    /// hold no event among the newest `retained` of `latestSeq`; returns how many.
    @discardableResult
    func pruneLog(upTo position: UInt64, latestSeq: UInt64, retained: UInt64) async throws -> Int {
        guard latestSeq > retained else { return 0 }
        let rows = try await link.rows(
            """
            WITH pruned AS (
                DELETE FROM \(unescaped: schema).log
                WHERE position <= \(Int64(position)) AND last_seq <= \(Int64(latestSeq - retained))
                RETURNING 1
            ) SELECT count(*) FROM pruned
            """,
            timeout: .seconds(60)
        )
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }

    /// The oldest position the log still holds, `nil` when it is empty.
    func oldestLogPosition() async throws -> UInt64? {
        let rows = try await link.rows("SELECT min(position) FROM \(unescaped: schema).log")
        return try rows.first?.decode(Int64?.self).map { UInt64($0) }
    }
}

struct CheckpointError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

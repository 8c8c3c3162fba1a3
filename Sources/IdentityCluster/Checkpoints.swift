import Foundation
import IdentityGraph
import NIOCore
import PostgresNIO

/// Checkpoints in PostgreSQL (SPEC.md section 17): a consistent copy of one server's local copy at a
/// log position, from which a server with an empty data directory joins, and after which old log
/// batches may be pruned.
///
/// A checkpoint is the store file a snapshot writes (section 8), not an NDJSON export: an export leaves
/// out the change events and the seq counter, and a server that joins must show the same events with
/// the same seqs as every other (`GET /changes` is identical on all of them). The file goes in parts of
/// ``partBytes``, each its own statement, and the `checkpoints` row last: a checkpoint is whole or absent,
/// and one that a crash left half written is cleared by the next writer.
///
/// It has a connection of its own, so that moving hundreds of megabytes never delays the lease.
struct Checkpoints: Sendable {
    let link: PostgresLink
    let schema: String

    /// The size of one part: small enough for one statement's deadline on a slow link.
    var partBytes = 4 << 20

    struct Checkpoint: Sendable, Equatable {
        var position: UInt64
        var seq: UInt64
        var parts: Int
        var bytes: Int
    }

    /// The newest whole checkpoint, `nil` when there is none.
    func newest() async throws -> Checkpoint? {
        let rows = try await link.rows(
            "SELECT position, seq, parts, bytes FROM \(unescaped: schema).checkpoints ORDER BY position DESC LIMIT 1"
        )
        guard let row = rows.first else { return nil }
        let (position, seq, parts, bytes) = try row.decode((Int64, Int64, Int32, Int64).self)
        return Checkpoint(position: UInt64(position), seq: UInt64(seq), parts: Int(parts), bytes: Int(bytes))
    }

    /// Stores the store file `file`, which holds the log up to `position` and events up to `seq`, as a
    /// checkpoint written by `node`; then removes the older checkpoints.
    func write(file: String, position: UInt64, seq: UInt64, node: String) async throws -> Checkpoint {
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw CheckpointError("cannot read the snapshot \(file)")
        }
        defer { try? handle.close() }
        let key = Int64(position)
        // Parts a crash left behind, of a checkpoint that never got its row.
        try await link.rows(
            """
            DELETE FROM \(unescaped: schema).checkpoint_parts p WHERE NOT EXISTS
                (SELECT 1 FROM \(unescaped: schema).checkpoints c WHERE c.position = p.position)
            """
        )
        var parts: Int32 = 0
        var bytes = 0
        while let data = try handle.read(upToCount: partBytes), !data.isEmpty {
            let buffer = ByteBuffer(bytes: data)
            try await link.rows(
                """
                INSERT INTO \(unescaped: schema).checkpoint_parts (position, part, data)
                VALUES (\(key), \(parts), \(buffer))
                """,
                timeout: .seconds(60)
            )
            parts += 1
            bytes += data.count
        }
        try await link.rows(
            """
            INSERT INTO \(unescaped: schema).checkpoints (position, seq, parts, bytes, node)
            VALUES (\(key), \(Int64(seq)), \(parts), \(Int64(bytes)), \(node))
            """
        )
        try await link.rows("DELETE FROM \(unescaped: schema).checkpoints WHERE position < \(key)")
        try await link.rows("DELETE FROM \(unescaped: schema).checkpoint_parts WHERE position < \(key)")
        return Checkpoint(position: position, seq: seq, parts: Int(parts), bytes: bytes)
    }

    /// Writes `checkpoint`'s store file to `file`, checking that every part is there and the size adds
    /// up; the file is not synced (see ``LocalCopy/beginJoin(in:)``). The parts are fetched on `links` at
    /// once, each written at its place in the file: a join waits for this, and two connections let
    /// PostgreSQL read and decompress two parts at a time, on two cores.
    func download(_ checkpoint: Checkpoint, to file: String, over links: [PostgresLink]) async throws {
        let position = Int64(checkpoint.position)
        // Where each part goes: its length is read from the TOAST header, without decompressing.
        let sizes = try await link.rows(
            """
            SELECT part, octet_length(data) FROM \(unescaped: schema).checkpoint_parts
            WHERE position = \(position) ORDER BY part
            """
        ).map { try $0.decode((Int32, Int32).self) }
        guard sizes.count == checkpoint.parts, sizes.enumerated().allSatisfy({ $0.offset == Int($0.element.0) }) else {
            throw CheckpointError(
                "the checkpoint at log position \(checkpoint.position) has \(sizes.count) of its \(checkpoint.parts) parts"
            )
        }
        let offsets = sizes.reduce(into: [0]) { offsets, part in offsets.append(offsets[offsets.count - 1] + Int(part.1)) }
        guard offsets[offsets.count - 1] == checkpoint.bytes else {
            throw CheckpointError(
                "the checkpoint at log position \(checkpoint.position) holds \(offsets[offsets.count - 1]) bytes, "
                    + "not \(checkpoint.bytes)"
            )
        }
        let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CheckpointError("cannot create \(file): errno \(errno)") }
        defer { close(descriptor) }
        let schema = self.schema
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, link) in links.enumerated() {
                group.addTask {
                    for part in stride(from: index, to: sizes.count, by: links.count) {
                        // Another connection failed: stop at the next part.
                        try Task.checkCancellation()
                        let rows = try await link.rows(
                            """
                            SELECT data FROM \(unescaped: schema).checkpoint_parts
                            WHERE position = \(position) AND part = \(Int32(part))
                            """,
                            timeout: .seconds(60)
                        )
                        guard let row = rows.first else {
                            throw CheckpointError(
                                "part \(part) of the checkpoint at log position \(checkpoint.position) is missing"
                            )
                        }
                        let data = try row.decode(ByteBuffer.self)
                        guard data.readableBytes == offsets[part + 1] - offsets[part] else {
                            throw CheckpointError(
                                "part \(part) of the checkpoint at log position \(checkpoint.position) changed size"
                            )
                        }
                        try Self.write(data, to: descriptor, at: offsets[part], file: file)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Writes all of `data` at `offset` of the open file.
    private static func write(_ data: ByteBuffer, to descriptor: Int32, at offset: Int, file: String) throws {
        try data.withUnsafeReadableBytes { bytes in
            var done = 0
            while done < bytes.count {
                let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { throw CheckpointError("cannot write \(file): errno \(errno)") }
                done += written
            }
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

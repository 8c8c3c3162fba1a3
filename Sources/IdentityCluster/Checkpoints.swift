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
    static let partBytes = 4 << 20

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
        while let data = try handle.read(upToCount: Self.partBytes), !data.isEmpty {
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

    /// Writes `checkpoint`'s store file to `file`, checking that every part is there and the size adds up.
    func download(_ checkpoint: Checkpoint, to file: String) async throws {
        guard FileManager.default.createFile(atPath: file, contents: nil) else {
            throw CheckpointError("cannot create \(file)")
        }
        guard let handle = FileHandle(forWritingAtPath: file) else { throw CheckpointError("cannot write \(file)") }
        defer { try? handle.close() }
        var written = 0
        for part in 0..<checkpoint.parts {
            let rows = try await link.rows(
                """
                SELECT data FROM \(unescaped: schema).checkpoint_parts
                WHERE position = \(Int64(checkpoint.position)) AND part = \(Int32(part))
                """,
                timeout: .seconds(60)
            )
            guard let row = rows.first else {
                throw CheckpointError("part \(part) of the checkpoint at log position \(checkpoint.position) is missing")
            }
            let data = try row.decode(ByteBuffer.self)
            try handle.write(contentsOf: Data(data.readableBytesView))
            written += data.readableBytes
        }
        try handle.synchronize()
        guard written == checkpoint.bytes else {
            throw CheckpointError("the checkpoint at log position \(checkpoint.position) holds \(written) bytes, not \(checkpoint.bytes)")
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

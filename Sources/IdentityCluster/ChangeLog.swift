import IdentityGraph
import Logging
import NIOCore
import PostgresNIO

/// The ordered log of the cluster's changes (SPEC.md section 17): one row per leader batch, at
/// positions 1, 2, 3, ... with no gaps, each holding the batch's commands. The leader appends with a
/// fenced statement (``PostgresReplicator``); followers read it in order, and a notification on
/// `channel` wakes them.
struct ChangeLog: Sendable {
    let link: PostgresLink
    let schema: String

    var channel: String { Self.channel(schema: schema) }

    /// The channel the appends to the log of `schema` notify.
    static func channel(schema: String) -> String { "\(schema)_log" }

    /// The batches after `position`, oldest first, at most `limit`.
    func batches(after position: UInt64, limit: Int = 1000) async throws -> [Replication] {
        let rows = try await link.rows(
            """
            SELECT position, epoch, last_seq, commands FROM \(unescaped: schema).log
            WHERE position > \(Int64(position)) ORDER BY position LIMIT \(limit)
            """
        )
        var batches: [Replication] = []
        for row in rows {
            let (position, epoch, lastSeq, commands) = try row.decode((Int64, Int64, Int64, ByteBuffer).self)
            batches.append(Replication(
                position: UInt64(position), epoch: epoch, commands: Array(commands.readableBytesView),
                lastSeq: UInt64(lastSeq)
            ))
        }
        return batches
    }

    /// The newest position in the log, 0 when it is empty.
    func newestPosition() async throws -> UInt64 {
        let rows = try await link.rows("SELECT coalesce(max(position), 0) FROM \(unescaped: schema).log")
        return UInt64(try rows.first?.decode(Int64.self) ?? 0)
    }
}

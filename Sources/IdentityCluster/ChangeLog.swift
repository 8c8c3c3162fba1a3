import IdentityGraph
import Logging
import NIOCore
import PostgresNIO

/// The ordered log of the cluster's changes (SPEC.md section 17): one row per leader batch, at
/// positions 1, 2, 3, ... with no gaps, each holding the batch's commands. The leader appends with one
/// statement that also checks, under a share lock on the lease row, that its epoch still holds the
/// lease: an old leader's append waits behind a takeover and then inserts nothing. Followers read it
/// in order; a notification on `channel` wakes them.
struct ChangeLog: Sendable {
    let link: PostgresLink
    let schema: String
    let node: String

    var channel: String { "\(schema)_log" }

    /// Appends `replication` under its epoch; throws a fenced ``ReplicationError`` when another epoch
    /// holds the lease. An append whose first try's outcome was lost (the connection broke) and that
    /// finds its own row on a retry counts as done.
    func append(_ replication: Replication) async throws {
        let commands = ByteBuffer(bytes: replication.commands)
        let position = Int64(replication.position)
        do {
            let rows = try await link.rows(
                """
                WITH fence AS (
                    SELECT epoch FROM \(unescaped: schema).lease
                    WHERE id = 1 AND epoch = \(replication.epoch) AND holder = \(node) FOR SHARE
                ), appended AS (
                    INSERT INTO \(unescaped: schema).log (position, epoch, last_seq, commands)
                    SELECT \(position), fence.epoch, \(Int64(replication.lastSeq)), \(commands) FROM fence
                    RETURNING position
                )
                SELECT position FROM appended, pg_notify(\(channel), position::text)
                """
            )
            if !rows.isEmpty { return }
            throw ReplicationError(fenced: true, "the lease has passed to a newer epoch than \(replication.epoch)")
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // The position is taken: by this very batch on a lost earlier try, or by another leader.
            let rows = try await link.rows("SELECT epoch FROM \(unescaped: schema).log WHERE position = \(position)")
            if try rows.first?.decode(Int64.self) == replication.epoch { return }
            throw ReplicationError(fenced: true, "log position \(position) was written under another epoch")
        }
    }

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

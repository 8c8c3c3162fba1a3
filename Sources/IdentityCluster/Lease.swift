import Logging
import PostgresNIO

/// The leader's lease (SPEC.md section 17): one row that says which server may write, under which
/// epoch, until when by PostgreSQL's clock. Three statements, as River and Oban elect their leaders:
/// take (only once the lease has ended), renew (only by its holder, under its epoch) and resign. The
/// epoch grows with every take, and every append to the log checks it (see ``ChangeLog``), so a
/// leader that lost its lease without noticing cannot write.
struct Lease: Sendable {
    let link: PostgresLink
    let schema: String
    let node: String
    let ttl: Duration

    /// Who holds the lease now, as the database sees it.
    struct Holder: Sendable {
        var node: String?
        var epoch: Int64
        var http: String?
        var tcp: String?
        /// Whether the lease has not ended yet, by PostgreSQL's clock.
        var live: Bool
    }

    private var milliseconds: Int64 { ClusterNode.milliseconds(ttl) }

    /// Takes the lease once it has ended, with a new epoch; returns the epoch, or `nil` when another
    /// server holds it.
    func take(http: String, tcp: String) async throws -> Int64? {
        let rows = try await link.rows(
            """
            UPDATE \(unescaped: schema).lease SET holder = \(node), epoch = epoch + 1,
                expires_at = now() + \(milliseconds) * interval '1 millisecond', http = \(http), tcp = \(tcp)
            WHERE id = 1 AND (holder IS NULL OR expires_at < now())
            RETURNING epoch
            """
        )
        return try rows.first?.decode(Int64.self)
    }

    /// Renews the lease of `epoch`; false when this server no longer holds it.
    func renew(epoch: Int64) async throws -> Bool {
        let rows = try await link.rows(
            """
            UPDATE \(unescaped: schema).lease SET expires_at = now() + \(milliseconds) * interval '1 millisecond'
            WHERE id = 1 AND holder = \(node) AND epoch = \(epoch)
            RETURNING epoch
            """
        )
        return !rows.isEmpty
    }

    /// Ends the lease of `epoch` now, so that another server takes over without waiting for it to run out.
    func resign(epoch: Int64) async throws {
        _ = try await link.rows(
            """
            UPDATE \(unescaped: schema).lease SET expires_at = '-infinity'
            WHERE id = 1 AND holder = \(node) AND epoch = \(epoch)
            RETURNING epoch
            """
        )
    }

    func holder() async throws -> Holder {
        let rows = try await link.rows(
            "SELECT holder, epoch, http, tcp, expires_at > now() FROM \(unescaped: schema).lease WHERE id = 1"
        )
        guard let row = rows.first else { return Holder(node: nil, epoch: 0, http: nil, tcp: nil, live: false) }
        let (node, epoch, http, tcp, live) = try row.decode((String?, Int64, String?, String?, Bool).self)
        return Holder(node: node, epoch: epoch, http: http, tcp: tcp, live: live)
    }
}

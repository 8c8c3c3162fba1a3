import IdentityGraph
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// The engine's ``Replicator`` in cluster mode: appends each leader batch to the ``ChangeLog`` with one
/// statement that also checks, under a share lock on the lease row, that the batch's epoch still holds
/// the lease: an old leader's append waits behind a takeover and then inserts nothing. On a connection
/// of its own, the append is either started from the engine's thread and answered on the connection's
/// event loop (``startAppend(_:completion:)``), or, to retry one that failed, sent by the writer's log
/// thread, which waits for PostgreSQL's answer as it waits for fsync: no event loop and no task of the
/// pool ever blocks on it. An append that takes longer than `timeout` counts as failed (its outcome
/// unknown); the writer retries it, and a retry that finds its own row counts as done.
final class PostgresReplicator: Replicator {
    private let link: BlockingPostgresLink
    private let schema: String
    private let node: String
    /// The channel each append notifies (``ChangeLog/channel(schema:)``).
    private let channel: String
    private let timeout: Duration
    /// Told how long each successful append took (the metrics).
    let observer = NIOLockedValueBox<AppendObserver?>(nil)

    /// The observer, in a struct of its own. A bare closure kept in the generic box came back out of
    /// `withLockedValue { $0 }` wrapped in two more reabstraction thunks on every read (the `inout` is
    /// written back), so that the n-th append called through 2n thunks: measured on a leader, 80 % of its
    /// CPU after some 40,000 appends, and a stack overflow later. A struct is stored as it is.
    struct AppendObserver: Sendable {
        var observe: @Sendable (Duration) -> Void
    }

    init(link: BlockingPostgresLink, schema: String, node: String, timeout: Duration = .seconds(10)) {
        self.link = link
        self.schema = schema
        self.node = node
        channel = ChangeLog.channel(schema: schema)
        self.timeout = timeout
    }

    /// Appends `replication` under its epoch; throws a fenced ``ReplicationError`` when another epoch
    /// holds the lease.
    func append(_ replication: Replication) throws {
        let started = ContinuousClock.now
        do {
            try insert(replication)
        } catch {
            throw Self.replicationError(error)
        }
        appended(took: ContinuousClock.now - started)
    }

    /// Sends the append on the open connection and returns at once; `completion` runs on its event loop.
    /// A position already taken is not sorted out here: that answer fails, and the writer's retry
    /// (``append(_:)``) tells this batch's own row from another leader's.
    func startAppend(
        _ replication: Replication, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) -> Bool {
        let started = ContinuousClock.now
        guard let answer = link.startRows(statement(replication), timeout: timeout) else { return false }
        let epoch = replication.epoch
        answer.whenComplete { [self] result in
            switch result {
            case .success(let rows) where !rows.isEmpty:
                appended(took: ContinuousClock.now - started)
                completion(.success(()))
            case .success:
                completion(.failure(Self.fenced(epoch)))
            case .failure(let error):
                completion(.failure(Self.replicationError(error)))
            }
        }
        return true
    }

    /// `error`, from appending, as the writer reports it.
    private static func replicationError(_ error: any Error) -> ReplicationError {
        switch error {
        case let error as ReplicationError:
            return error
        case let error as PostgresLink.Timeout:
            return ReplicationError(fenced: false, "PostgreSQL did not answer the append within \(error.seconds)")
        default:
            // PostgreSQL's own message: its errors describe themselves only generically.
            return ReplicationError(fenced: false, "cannot append to the log: \(ClusterNode.describe(error))")
        }
    }

    private static func fenced(_ epoch: Int64) -> ReplicationError {
        ReplicationError(fenced: true, "the lease has passed to a newer epoch than \(epoch)")
    }

    /// Tells the observer that an append succeeded and took `duration`.
    func appended(took duration: Duration) {
        observer.withLockedValue { $0 }?.observe(duration)
    }

    /// The fenced insert of `replication` (the type's comment): one row when it was appended, none when
    /// another epoch holds the lease.
    private func statement(_ replication: Replication) -> PostgresQuery {
        let commands = ByteBuffer(bytes: replication.commands)
        let position = Int64(replication.position)
        return """
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
    }

    private func insert(_ replication: Replication) throws {
        let position = Int64(replication.position)
        do {
            let rows = try link.rows(statement(replication), timeout: timeout)
            if !rows.isEmpty { return }
            throw Self.fenced(replication.epoch)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // The position is taken: by this very batch on a lost earlier try, or by another leader.
            let rows = try link.rows(
                "SELECT epoch FROM \(unescaped: schema).log WHERE position = \(position)", timeout: timeout
            )
            if try rows.first?.decode(Int64.self) == replication.epoch { return }
            throw ReplicationError(fenced: true, "log position \(position) was written under another epoch")
        }
    }
}

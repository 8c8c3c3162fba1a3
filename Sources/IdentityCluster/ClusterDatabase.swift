import IdentityGraph
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import PostgresNIO

/// The connections to the cluster's PostgreSQL database, one for each use (see ``PostgresLink``), and
/// the ``Replicator`` the engine must be created with so that a leader's batches reach the log.
public final class ClusterDatabase: Sendable {
    let configuration: ClusterConfiguration
    /// The leader's appends, from the writer's thread.
    let appends: BlockingPostgresLink
    /// The node's lease, log reads and name.
    let control: PostgresLink
    /// `LISTEN` for appends.
    let notifications: PostgresLink
    /// Checkpoints, which move many megabytes and must not delay the lease.
    let checkpointing: PostgresLink
    let logger: Logger
    public let replicator: any Replicator
    private let appender: PostgresReplicator
    /// Whether ``prepareSchema(on:)`` has succeeded: a server that joined has checked the schema already
    /// when its node starts, a few hundred milliseconds later.
    private let schemaPrepared = NIOLockedValueBox(false)

    public init(configuration: ClusterConfiguration, logger: Logger) throws {
        let connection = try configuration.connection
        self.configuration = configuration
        self.logger = logger
        appends = BlockingPostgresLink(configuration: connection, name: "appends", logger: logger)
        control = PostgresLink(configuration: connection, name: "control", logger: logger)
        notifications = PostgresLink(configuration: connection, name: "notifications", logger: logger)
        checkpointing = PostgresLink(configuration: connection, name: "checkpoints", logger: logger)
        appender = PostgresReplicator(link: appends, schema: configuration.schema, node: configuration.nodeName)
        replicator = appender
    }

    /// Calls `observe` with the time each of the leader's appends took, from the writer's thread (for
    /// the metrics).
    public func observeAppends(_ observe: @escaping @Sendable (Duration) -> Void) {
        appender.observer.withLockedValue { $0 = PostgresReplicator.AppendObserver(observe: observe) }
    }

    /// Creates or upgrades the cluster's tables and checks their format (``ClusterSchema/prepare(_:schema:logger:)``),
    /// on `link`; once per process.
    func prepareSchema(on link: PostgresLink) async throws {
        guard !schemaPrepared.withLockedValue({ $0 }) else { return }
        try await ClusterSchema.prepare(link, schema: configuration.schema, logger: logger)
        schemaPrepared.withLockedValue { $0 = true }
    }

    /// Ends every connection.
    public func close() async {
        await appends.close()
        for link in [control, notifications, checkpointing] { await link.close() }
    }
}

import Foundation
import IdentityGraph
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Testing
@testable import IdentityCluster

/// The leader's fenced append (``PostgresReplicator``) on a real PostgreSQL, both ways the writer sends
/// it: waited for, and started with an answer later.
///
/// The tests wait for PostgreSQL on their own threads and set the lease with `psql`: nothing here waits
/// for a thread of the task pool, which the suites that run beside them can keep busy for seconds.
@Suite struct PostgresReplicatorTests {
    /// Runs `body` with the cluster's tables in a new database whose lease `n1` holds at epoch 1, and a
    /// replicator for `n1`.
    static func withReplicator(_ body: (PostgresReplicator, PostgresServer) throws -> Void) throws {
        let postgres = try PostgresServer()
        let configuration = try ClusterConfiguration(
            url: postgres.url(), environment: [:], nodeName: "n1", advertisedHTTP: "", advertisedTCP: ""
        )
        for statement in ClusterSchema.statements(schema: configuration.schema) { try postgres.sql(statement) }
        try postgres.sql("UPDATE identity_graph.lease SET holder = 'n1', epoch = 1, expires_at = 'infinity'")
        let appends = BlockingPostgresLink(
            configuration: try configuration.connection, name: "appends", logger: Logger(label: "replicator-test")
        )
        defer { appends.drop() }
        try body(PostgresReplicator(link: appends, schema: configuration.schema, node: "n1"), postgres)
    }

    static func batch(_ position: UInt64, epoch: Int64 = 1) -> Replication {
        Replication(position: position, epoch: epoch, commands: [UInt8](repeating: UInt8(position), count: 64), lastSeq: position)
    }

    /// The log's rows, `position:epoch` each.
    static func log(_ postgres: PostgresServer) throws -> [String] {
        try postgres.sql("SELECT position || ':' || epoch FROM identity_graph.log ORDER BY position")
            .split(separator: "\n").map(String.init)
    }

    /// `startAppend`'s outcome, waited for here; nil when it could not start.
    static func started(_ replicator: PostgresReplicator, _ replication: Replication) -> Result<Void, any Error>? {
        let outcome = NIOLockedValueBox<Result<Void, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        guard replicator.startAppend(replication, completion: { result in
            outcome.withLockedValue { $0 = result }
            done.signal()
        }) else { return nil }
        done.wait()
        return outcome.withLockedValue { $0 }
    }

    @Test("an append under the lease's epoch is in the log; again, it finds its own row; under an older epoch, or over another epoch's row, it is fenced and writes nothing")
    func waitedFor() throws {
        try Self.withReplicator { replicator, postgres in
            try replicator.append(Self.batch(1))
            // A retry of a batch whose answer was lost finds its own row.
            try replicator.append(Self.batch(1))
            try postgres.sql("UPDATE identity_graph.lease SET epoch = 2")
            let older = #expect(throws: ReplicationError.self) { try replicator.append(Self.batch(2)) }
            #expect(older?.isFenced == true)
            // Position 1 holds epoch 1's batch: epoch 3's append there is fenced too.
            try postgres.sql("UPDATE identity_graph.lease SET epoch = 3")
            let over = #expect(throws: ReplicationError.self) { try replicator.append(Self.batch(1, epoch: 3)) }
            #expect(over?.isFenced == true)
            #expect(try Self.log(postgres) == ["1:1"])
        }
    }

    @Test("a started append needs an open connection; under the lease's epoch it is in the log, under an older one it is fenced and writes nothing")
    func started() throws {
        try Self.withReplicator { replicator, postgres in
            #expect(Self.started(replicator, Self.batch(1)) == nil, "a started append opened a connection")
            try replicator.append(Self.batch(1))
            try #require(Self.started(replicator, Self.batch(2))).get()
            try postgres.sql("UPDATE identity_graph.lease SET epoch = 2")
            let refused = try #require(Self.started(replicator, Self.batch(3)))
            #expect((refused.error as? ReplicationError)?.isFenced == true)
            // A position taken fails here; the writer's retry (``append``) tells whose it is.
            try postgres.sql("UPDATE identity_graph.lease SET epoch = 1")
            let taken = try #require(Self.started(replicator, Self.batch(2)))
            #expect((taken.error as? ReplicationError)?.isFenced == false)
            #expect(try Self.log(postgres) == ["1:1", "2:1"])
        }
    }
}

extension Result {
    var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

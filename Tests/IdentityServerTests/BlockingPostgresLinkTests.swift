import Logging
import PostgresNIO
import Testing
@testable import IdentityCluster

/// The leader's append connection (``BlockingPostgresLink``) against a real PostgreSQL: a statement past
/// its deadline fails with the timeout and drops the connection, which the next statement opens again; a
/// statement PostgreSQL itself refuses keeps it. Both for the waiting call and for the started one that
/// the writer uses while appends succeed.
@Suite struct BlockingPostgresLinkTests {
    static func link(_ postgres: PostgresServer) throws -> BlockingPostgresLink {
        let configuration = try ClusterConfiguration(
            url: postgres.url(), environment: [:], nodeName: "n1", advertisedHTTP: "", advertisedTCP: ""
        )
        return BlockingPostgresLink(
            configuration: try configuration.connection, name: "test", logger: Logger(label: "blocking-link-test")
        )
    }

    static func one(_ rows: [PostgresRow]) throws -> Int {
        try #require(rows.first).decode(Int.self)
    }

    @Test("a waiting statement past its deadline fails with the timeout, and the next one opens a new connection")
    func waitingDeadline() async throws {
        let postgres = try PostgresServer()
        let link = try Self.link(postgres)
        #expect(try Self.one(link.rows("SELECT 1")) == 1)
        #expect(throws: PostgresLink.Timeout.self) {
            _ = try link.rows("SELECT pg_sleep(30)", timeout: .milliseconds(300))
        }
        #expect(link.startRows("SELECT 1") == nil, "the connection that missed its deadline was kept")
        #expect(try Self.one(link.rows("SELECT 2")) == 2)
        #expect(throws: PSQLError.self) { _ = try link.rows("SELECT 1 / 0") }
        #expect(link.startRows("SELECT 1") != nil, "an error PostgreSQL reported dropped the connection")
        await link.close()
    }

    @Test("a started statement needs an open connection, fails past its deadline with the timeout, and keeps the connection through an error PostgreSQL reported")
    func startedDeadline() async throws {
        let postgres = try PostgresServer()
        let link = try Self.link(postgres)
        #expect(link.startRows("SELECT 1") == nil, "a started statement opened a connection: it must never block")
        _ = try link.rows("SELECT 1")
        let answered = try #require(link.startRows("SELECT 3"))
        #expect(try Self.one(try await answered.get()) == 3)

        let refused = try #require(link.startRows("SELECT 1 / 0"))
        await #expect(throws: PSQLError.self) { _ = try await refused.get() }
        let late = try #require(link.startRows("SELECT pg_sleep(30)", timeout: .milliseconds(300)))
        await #expect(throws: PostgresLink.Timeout.self) { _ = try await late.get() }
        #expect(link.startRows("SELECT 1") == nil, "the connection that missed its deadline was kept")
        #expect(try Self.one(link.rows("SELECT 4")) == 4)
        await link.close()
    }
}

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// One connection to the cluster's database, opened when first needed and opened again after it broke.
/// Each use of the cluster (the leader's appends, the node's lease and log reads, `LISTEN`) has one of
/// its own, so that none waits behind another, and every statement has a deadline: a database that
/// stops answering fails the statement instead of hanging the caller, and the connection is dropped.
actor PostgresLink {
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private let name: String
    private var connection: PostgresConnection?
    private static let ids = NIOLockedValueBox(0)

    /// A new id for a connection to the cluster's database (the connections' log metadata), one counter
    /// for every link of the process.
    static func nextConnectionID() -> Int {
        ids.withLockedValue { $0 += 1; return $0 }
    }

    init(configuration: PostgresConnection.Configuration, name: String, logger: Logger) {
        self.configuration = configuration
        self.name = name
        self.logger = logger
    }

    /// A statement took longer than its deadline.
    struct Timeout: Error, CustomStringConvertible {
        var seconds: Duration
        var description: String { "PostgreSQL did not answer within \(seconds)" }
    }

    /// Runs `body` on the connection, opening it first when needed. An error other than one PostgreSQL
    /// itself reported about the statement drops the connection, so that the next use opens a new one.
    func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connected()
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(connection) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    // A statement on a connection that stopped answering may not heed cancellation, and
                    // the group waits for it: closing the connection fails it.
                    try? await connection.close()
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else { throw Timeout(seconds: timeout) }
                return value
            }
        } catch let error as PSQLError where error.code == .server {
            throw error
        } catch {
            drop(connection)
            throw error
        }
    }

    /// The rows `query` answers with, all read.
    @discardableResult
    func rows(_ query: PostgresQuery, timeout: Duration = .seconds(10)) async throws -> [PostgresRow] {
        let logger = self.logger
        return try await run(timeout: timeout) { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    /// How long opening a connection may take, handshake and authentication included.
    static let connectTimeout: Duration = .seconds(10)

    private func connected() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        let id = Self.nextConnectionID()
        var logger = self.logger
        logger[metadataKey: "cluster.connection"] = "\(name)"
        // The statements' deadline does not cover this: a handshake that stalls fails here instead of
        // holding the caller forever. The connect and the deadline race on one event loop; a connection
        // that opens after the deadline is closed.
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let outcome = loop.makePromise(of: PostgresConnection.self)
        let settled = NIOLockedValueBox(false)
        // True for the first of the two to finish, which settles the outcome.
        let settles: @Sendable () -> Bool = { settled.withLockedValue { done in defer { done = true }; return !done } }
        let deadline = loop.scheduleTask(in: .seconds(Self.connectTimeout.components.seconds)) {
            if settles() { outcome.fail(Timeout(seconds: Self.connectTimeout)) }
        }
        let connecting: EventLoopFuture<PostgresConnection> = PostgresConnection.connect(
            on: loop, configuration: configuration, id: id, logger: logger
        )
        connecting.whenComplete { result in
            deadline.cancel()
            let first = settles()
            switch result {
            case .success(let opened) where first: outcome.succeed(opened)
            case .success(let late): Task { try? await late.close() }
            case .failure(let error): if first { outcome.fail(error) }
            }
        }
        let opened = try await outcome.futureResult.get()
        connection = opened
        return opened
    }

    private func drop(_ broken: PostgresConnection) {
        if connection === broken { connection = nil }
        Task { try? await broken.close() }
    }

    /// Closes the connection.
    func close() async {
        if let connection { try? await connection.close() }
        connection = nil
    }
}

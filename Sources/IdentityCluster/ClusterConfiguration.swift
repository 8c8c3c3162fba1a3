import Foundation
import NIOSSL
import PostgresNIO

/// How one server takes part in a cluster (SPEC.md section 17): the database that holds the log and
/// the lease, this server's name and addresses, and the lease's length.
public struct ClusterConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// The schema that holds the cluster's tables.
    public var schema: String
    /// This server's name; two live servers never share one.
    public var nodeName: String
    /// How the other servers reach this one: its HTTP base URL and its line-protocol `HOST:PORT`.
    public var advertisedHTTP: String
    public var advertisedTCP: String
    /// How long a lease lasts unrenewed; the leader renews it every third of this.
    public var leaseTTL: Duration
    /// A checkpoint is written every this many change events (`--checkpoint-every`).
    public var checkpointEvery: UInt64 = 1_000_000
    /// The size of one part of a checkpoint in PostgreSQL (`IDENTITY_GRAPH_CHECKPOINT_PART_BYTES`, there
    /// for tests: a small store in many parts). A joining server reads the parts' sizes from PostgreSQL.
    public var checkpointPartBytes = 4 << 20
    /// Change events every server keeps (`--changes-retain`): log batches holding any of the newest
    /// this many are never pruned.
    public var changesRetained: UInt64 = 10_000_000
    /// The server's data directory, where checkpoints are staged.
    public var dataDirectory = ""

    public enum SSLMode: String, Sendable {
        case disable, prefer, require
    }

    /// Why a `--cluster` URL cannot be used; the message names the part at fault and never the password.
    public struct InvalidURL: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Reads `postgres://user[:password]@host[:port]/db[?sslmode=disable|prefer|require]`; the password
    /// may also come from `PGPASSWORD`.
    public init(
        url text: String, environment: [String: String] = ProcessInfo.processInfo.environment, nodeName: String,
        advertisedHTTP: String, advertisedTCP: String, leaseTTL: Duration = .seconds(5),
        schema: String = "identity_graph"
    ) throws(InvalidURL) {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw InvalidURL(description: "must look like postgres://user[:password]@host[:port]/database")
        }
        guard let host = components.host, !host.isEmpty else { throw InvalidURL(description: "names no host") }
        guard let user = components.user, !user.isEmpty else { throw InvalidURL(description: "names no user") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw InvalidURL(description: "names no database") }
        var mode = SSLMode.prefer
        for item in components.queryItems ?? [] {
            guard item.name == "sslmode" else {
                throw InvalidURL(description: "has an unknown parameter \"\(item.name)\"; it takes: sslmode")
            }
            guard let value = item.value.flatMap(SSLMode.init(rawValue:)) else {
                throw InvalidURL(description: "sslmode must be disable, prefer or require")
            }
            mode = value
        }
        guard schema.range(of: #"^[a-z_][a-z0-9_]{0,62}$"#, options: .regularExpression) != nil else {
            throw InvalidURL(description: "the schema name must be lowercase letters, digits and _")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.user = user
        self.password = components.password ?? environment["PGPASSWORD"]
        self.database = database
        self.sslMode = mode
        self.schema = schema
        self.nodeName = nodeName
        self.advertisedHTTP = advertisedHTTP
        self.advertisedTCP = advertisedTCP
        self.leaseTTL = leaseTTL
    }

    /// The connection configuration for postgres-nio.
    var connection: PostgresConnection.Configuration {
        get throws {
            let tls: PostgresConnection.Configuration.TLS = switch sslMode {
            case .disable: .disable
            case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            var configuration = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tls
            )
            configuration.options.connectTimeout = .seconds(5)
            return configuration
        }
    }

    /// `host:port/database`, for logs: never the user's password.
    public var databaseDescription: String { "\(host):\(port)/\(database)" }
}

import Logging
import PostgresNIO

/// The cluster's tables in PostgreSQL (SPEC.md section 17), created by the first server in one
/// transaction, and the format version every later server checks.
///
/// - `meta`: the format version.
/// - `lease`: one row: the leader's node name, its epoch (grows with every new leader), when the lease
///   ends by PostgreSQL's clock, and how to reach the leader.
/// - `log`: one row per leader batch, numbered without gaps, holding the batch's commands as bytes.
/// - `nodes`: the live servers by name, so that two never share one.
/// - `checkpoints` and `checkpoint_parts`: consistent copies of one server's local copy at a log position,
///   with the index image built from it, in compressed parts of a few megabytes (see ``Checkpoints``); a
///   row of `checkpoints` is written after all its parts, so a checkpoint is whole or absent.
enum ClusterSchema {
    /// The format of these tables; a schema of another format is refused.
    static let format = 2

    struct FormatMismatch: Error, CustomStringConvertible {
        var found: String
        var schema: String
        var description: String {
            "the schema \(schema) holds cluster tables of format \(found); this server speaks format \(ClusterSchema.format)"
        }
    }

    /// Creates the tables when missing (two servers starting at once are serialized by an advisory lock),
    /// upgrades a schema of format 1 in place, and checks the format of those that exist.
    static func prepare(_ link: PostgresLink, schema: String, logger: Logger) async throws {
        let (found, upgraded) = try await link.run { connection in
            try await prepare(connection, schema: schema, logger: logger)
        }
        // Thrown here, not in the transaction, which would wrap it in its own error.
        if let found, found != String(format) { throw FormatMismatch(found: found, schema: schema) }
        if upgraded {
            logger.notice("upgraded the cluster's tables", metadata: ["schema": "\(schema)", "from": "1", "to": "\(format)"])
        }
    }

    /// Creates what is missing and upgrades format 1; returns the format the schema holds, and whether it
    /// was upgraded.
    private static func prepare(_ connection: PostgresConnection, schema: String, logger: Logger) async throws
        -> (found: String?, upgraded: Bool)
    {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema)))", logger: logger)
            for statement in statements(schema: schema) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            let created = try await connection.query(
                """
                INSERT INTO \(unescaped: schema).meta (key, value) VALUES ('format', \(String(format)))
                ON CONFLICT (key) DO NOTHING RETURNING value
                """,
                logger: logger
            )
            var found: String?
            for try await value in created.decode(String.self) { found = value }
            if found != nil {
                // Parts are compressed already: PostgreSQL need not try again.
                try await connection.query(PostgresQuery(unsafeSQL: storeParts(schema: schema)), logger: logger)
                return (found, false)
            }
            let rows = try await connection.query(
                "SELECT value FROM \(unescaped: schema).meta WHERE key = 'format'", logger: logger
            )
            for try await value in rows.decode(String.self) { found = value }
            guard found == "1" else { return (found, false) }
            for statement in upgradeFrom1(schema: schema) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            return (String(format), true)
        }
    }

    /// Format 1 to 2: checkpoints say how their parts are encoded (the checkpoints of format 1, parts of
    /// the raw store file, stay readable as `raw`) and may carry the index image after the store file.
    /// A server of format 1 started on the upgraded schema is refused with the format mismatch; one still
    /// running writes checkpoints that read as `raw`, as they are.
    private static func upgradeFrom1(schema: String) -> [String] {
        [
            """
            ALTER TABLE \(schema).checkpoints
                ADD COLUMN IF NOT EXISTS encoding text NOT NULL DEFAULT 'raw',
                ADD COLUMN IF NOT EXISTS part_bytes int NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS image_parts int NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS image_bytes bigint NOT NULL DEFAULT 0
            """,
            storeParts(schema: schema),
            "UPDATE \(schema).meta SET value = '\(format)' WHERE key = 'format'",
        ]
    }

    /// Checkpoint parts are stored out of line and not compressed by PostgreSQL: they are LZ4
    /// blocks, which it would only try to shrink in vain.
    private static func storeParts(schema: String) -> String {
        "ALTER TABLE \(schema).checkpoint_parts ALTER COLUMN data SET STORAGE EXTERNAL"
    }

    /// The statements that create what is missing in `schema` (each may run again).
    static func statements(schema: String) -> [String] {
        [
            "CREATE SCHEMA IF NOT EXISTS \(schema)",
            "CREATE TABLE IF NOT EXISTS \(schema).meta (key text PRIMARY KEY, value text NOT NULL)",
            """
            CREATE TABLE IF NOT EXISTS \(schema).lease (
                id int PRIMARY KEY CHECK (id = 1), holder text, epoch bigint NOT NULL,
                expires_at timestamptz NOT NULL, http text, tcp text)
            """,
            "INSERT INTO \(schema).lease VALUES (1, NULL, 0, '-infinity', NULL, NULL) ON CONFLICT (id) DO NOTHING",
            """
            CREATE TABLE IF NOT EXISTS \(schema).log (
                position bigint PRIMARY KEY, epoch bigint NOT NULL, last_seq bigint NOT NULL,
                commands bytea NOT NULL, appended_at timestamptz NOT NULL DEFAULT now())
            """,
            """
            CREATE TABLE IF NOT EXISTS \(schema).nodes (
                name text PRIMARY KEY, instance text NOT NULL, seen_at timestamptz NOT NULL, http text, tcp text)
            """,
            """
            CREATE TABLE IF NOT EXISTS \(schema).checkpoints (
                position bigint PRIMARY KEY, seq bigint NOT NULL, parts int NOT NULL, bytes bigint NOT NULL,
                node text NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
                encoding text NOT NULL DEFAULT 'raw', part_bytes int NOT NULL DEFAULT 0,
                image_parts int NOT NULL DEFAULT 0, image_bytes bigint NOT NULL DEFAULT 0)
            """,
            """
            CREATE TABLE IF NOT EXISTS \(schema).checkpoint_parts (
                position bigint NOT NULL, part int NOT NULL, data bytea NOT NULL, PRIMARY KEY (position, part))
            """,
        ]
    }
}

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
///   in parts of a few megabytes (see ``Checkpoints``); a row of `checkpoints` is written after all its
///   parts, so a checkpoint is whole or absent.
enum ClusterSchema {
    /// The format of these tables; a schema of another format is refused.
    static let format = 1

    struct FormatMismatch: Error, CustomStringConvertible {
        var found: String
        var schema: String
        var description: String {
            "the schema \(schema) holds cluster tables of format \(found); this server speaks format \(ClusterSchema.format)"
        }
    }

    /// Creates the tables when missing (two servers starting at once are serialized by an advisory lock)
    /// and checks the format of those that exist.
    static func prepare(_ link: PostgresLink, schema: String, logger: Logger) async throws {
        let found = try await link.run { connection in try await prepare(connection, schema: schema, logger: logger) }
        // Thrown here, not in the transaction, which would wrap it in its own error.
        if let found, found != String(format) { throw FormatMismatch(found: found, schema: schema) }
        // Checkpoint parts are compressed with lz4 where PostgreSQL has it (14 and later, built with it):
        // a join reads a 1M-contact checkpoint back about a fifth faster than with pglz, for the same size.
        // Best effort: elsewhere the statement fails and the parts stay pglz, which every reader reads.
        _ = try? await link.rows(
            PostgresQuery(
                unsafeSQL: """
                    DO $$ BEGIN
                        IF EXISTS (SELECT 1 FROM pg_settings
                                   WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))
                            AND (SELECT attcompression FROM pg_attribute
                                 WHERE attrelid = '\(schema).checkpoint_parts'::regclass AND attname = 'data') <> 'l'
                        THEN
                            -- Never queued behind a checkpoint's reads for long: it is only an optimization.
                            PERFORM set_config('lock_timeout', '2s', true);
                            ALTER TABLE \(schema).checkpoint_parts ALTER COLUMN data SET COMPRESSION lz4;
                        END IF;
                    END $$
                    """
            )
        )
    }

    /// Creates what is missing; returns the format the schema holds.
    private static func prepare(_ connection: PostgresConnection, schema: String, logger: Logger) async throws
        -> String?
    {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema)))", logger: logger)
            for statement in statements(schema: schema) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query(
                "INSERT INTO \(unescaped: schema).meta (key, value) VALUES ('format', \(String(format))) ON CONFLICT (key) DO NOTHING",
                logger: logger
            )
            let rows = try await connection.query(
                "SELECT value FROM \(unescaped: schema).meta WHERE key = 'format'", logger: logger
            )
            for try await value in rows.decode(String.self) { return value }
            return nil
        }
    }

    private static func statements(schema: String) -> [String] {
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
                node text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())
            """,
            """
            CREATE TABLE IF NOT EXISTS \(schema).checkpoint_parts (
                position bigint NOT NULL, part int NOT NULL, data bytea NOT NULL, PRIMARY KEY (position, part))
            """,
        ]
    }
}

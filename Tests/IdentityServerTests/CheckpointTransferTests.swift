import ConformanceSupport
import Foundation
@testable import IdentityCluster
import Logging
import Testing

/// Moving a checkpoint's file through PostgreSQL in parts (SPEC.md section 17), on a real server: the
/// parts come back in place when fetched on several connections at once, and a checkpoint that lost a
/// part is refused rather than installed with a hole.
@Suite struct CheckpointTransferTests {
    @Test("a checkpoint of many parts (lz4) comes back byte for byte over two connections; a missing part is refused")
    func manyParts() async throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let logger = Logger(label: "checkpoint-transfer-tests")
        let configuration = try ClusterConfiguration(
            url: postgres.url(), nodeName: "t1", advertisedHTTP: "http://127.0.0.1:1", advertisedTCP: "127.0.0.1:2"
        )
        let links = try (1...2).map {
            PostgresLink(configuration: try configuration.connection, name: "test-\($0)", logger: logger)
        }
        try await ClusterSchema.prepare(links[0], schema: configuration.schema, logger: logger)
        // Debian's PostgreSQL has lz4, which a join decompresses faster than pglz.
        let compression = try postgres.sql(
            """
            SELECT attcompression FROM pg_attribute
            WHERE attrelid = 'identity_graph.checkpoint_parts'::regclass AND attname = 'data'
            """
        )
        #expect(compression.trimmingCharacters(in: .whitespacesAndNewlines) == "l", "\(compression)")
        var checkpoints = Checkpoints(link: links[0], schema: configuration.schema)
        checkpoints.partBytes = 64 << 10
        // 17 parts, the last one short; bytes that differ from part to part, so a misplaced one shows.
        var generator = SeededGenerator(seed: 17)
        let original = Data((0..<(16 * 65_536 + 1_234)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let source = directory.path + "/source"
        try original.write(to: URL(fileURLWithPath: source))

        let written = try await checkpoints.write(file: source, position: 7, seq: 9, node: "t1")
        #expect(written == Checkpoints.Checkpoint(position: 7, seq: 9, parts: 17, bytes: original.count))
        #expect(try await checkpoints.newest() == written)
        let copy = directory.path + "/copy"
        try await checkpoints.download(written, to: copy, over: links)
        #expect(try Data(contentsOf: URL(fileURLWithPath: copy)) == original)

        _ = try postgres.sql("DELETE FROM identity_graph.checkpoint_parts WHERE part = 5")
        await #expect(throws: CheckpointError.self) {
            try await checkpoints.download(written, to: directory.path + "/holed", over: links)
        }
        for link in links { await link.close() }
    }
}

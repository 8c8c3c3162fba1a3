import Logging
import NIOConcurrencyHelpers
import Testing
@testable import IdentityCluster

/// The leader's append metric (``ClusterDatabase/observeAppends(_:)``): its observer is read on every
/// append, and must come out of its box as it went in.
@Suite struct AppendObserverTests {
    @Test("the observer hears each of 200,000 appends (kept as a bare closure, it was wrapped once more on every read and overflowed the stack)")
    func observerStaysFlat() throws {
        let configuration = try ClusterConfiguration(
            url: "postgres://nobody@127.0.0.1:1/nothing", environment: [:], nodeName: "n1",
            advertisedHTTP: "", advertisedTCP: ""
        )
        // Nothing here connects: the replicator's connection opens at its first append.
        let database = try ClusterDatabase(configuration: configuration, logger: Logger(label: "append-observer-test"))
        let heard = NIOLockedValueBox((count: 0, total: Duration.zero))
        database.observeAppends { duration in
            heard.withLockedValue {
                $0.count += 1
                $0.total += duration
            }
        }
        let replicator = try #require(database.replicator as? PostgresReplicator)
        for _ in 0..<200_000 { replicator.appended(took: .microseconds(3)) }
        let (count, total) = heard.withLockedValue { $0 }
        #expect(count == 200_000)
        #expect(total == .microseconds(600_000))
    }
}

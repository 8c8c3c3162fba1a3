import CoreMetrics
import IdentityGraph
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The server's metrics (SPEC.md section 15), kept through swift-metrics in a Prometheus registry of
/// this server's own and rendered in Prometheus' text format at `GET /metrics`.
///
/// Hot paths only bump a counter and record into a histogram, both found in a small cache keyed by
/// transport, operation and status. Figures the engine already counts (contacts, profiles, commits,
/// ignored values, the newest seq) are read from it when the metrics are scraped, so identify pays
/// nothing for them.
public final class ServerMetrics: Sendable {
    /// Which listener a request came through.
    public enum Transport: String, Sendable {
        case http
        case line
    }

    private struct RequestKey: Hashable {
        var transport: Transport
        var op: String
        var status: Int
    }


    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The series one request touches, found with one lock and one lookup: its counter and its
    /// operation's latency histogram (the histogram is shared by every status of the operation, and
    /// swift-prometheus hands out the same one for the same label and dimensions).
    private let requests = NIOLockedValueBox<[RequestKey: (count: CoreMetrics.Counter, latency: CoreMetrics.Timer)]>([:])
    private let connections: [Transport: CoreMetrics.Meter]
    private let commitLatency: CoreMetrics.Timer
    private let rowsPerCommit: CoreMetrics.Recorder
    private let commits: CoreMetrics.Counter
    private let contacts: CoreMetrics.Meter
    private let profiles: CoreMetrics.Meter
    private let latestSeq: CoreMetrics.Meter
    /// What the engine's own counters were at the last scrape, to add only the difference.
    private let seen = NIOLockedValueBox<(commits: Int, ignored: [IgnoredKey: Int])>((0, [:]))

    private struct IgnoredKey: Hashable {
        var field: String
        var reason: String
    }

    private let ignored = NIOLockedValueBox<[IgnoredKey: CoreMetrics.Counter]>([:])

    /// `false` (`serve --no-metrics`): nothing is recorded and `GET /metrics` answers 404, for
    /// deployments that do not scrape, and to measure what the metrics cost.
    public let isEnabled: Bool

    public init(enabled: Bool = true) {
        isEnabled = enabled
        var factory = PrometheusMetricsFactory(registry: registry)
        // Requests take microseconds, commits about a millisecond: the default buckets start at 5 ms.
        let fine: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
            .milliseconds(250), .seconds(1),
        ]
        factory.durationHistogramBuckets = [
            "identity_graph_request_duration_seconds": fine, "identity_graph_commit_duration_seconds": fine,
        ]
        factory.valueHistogramBuckets = ["identity_graph_commit_rows": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]]
        self.factory = factory
        connections = [
            .http: CoreMetrics.Meter(label: "identity_graph_connections", dimensions: [("transport", "http")], factory: factory),
            .line: CoreMetrics.Meter(label: "identity_graph_connections", dimensions: [("transport", "line")], factory: factory),
        ]
        commitLatency = CoreMetrics.Timer(label: "identity_graph_commit_duration_seconds", factory: factory)
        rowsPerCommit = CoreMetrics.Recorder(label: "identity_graph_commit_rows", factory: factory)
        commits = CoreMetrics.Counter(label: "identity_graph_commits_total", factory: factory)
        contacts = CoreMetrics.Meter(label: "identity_graph_contacts", factory: factory)
        profiles = CoreMetrics.Meter(label: "identity_graph_profiles", factory: factory)
        latestSeq = CoreMetrics.Meter(label: "identity_graph_latest_change_seq", factory: factory)
    }

    /// Counts one request and records how long it took.
    public func recordRequest(_ transport: Transport, op: String, status: Int, duration: Duration) {
        guard isEnabled else { return }
        let key = RequestKey(transport: transport, op: op, status: status)
        let (counter, timer) = requests.withLockedValue { cache in
            if let series = cache[key] { return series }
            let series = (
                count: CoreMetrics.Counter(
                    label: "identity_graph_requests_total",
                    dimensions: [("transport", transport.rawValue), ("op", op), ("status", String(status))],
                    factory: factory
                ),
                latency: CoreMetrics.Timer(
                    label: "identity_graph_request_duration_seconds",
                    dimensions: [("transport", transport.rawValue), ("op", op)], factory: factory
                )
            )
            cache[key] = series
            return series
        }
        counter.increment()
        timer.recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000
            + Int64(duration.components.attoseconds / 1_000_000_000))
    }

    public func connectionOpened(_ transport: Transport) {
        if isEnabled { connections[transport]?.increment() }
    }

    public func connectionClosed(_ transport: Transport) {
        if isEnabled { connections[transport]?.decrement() }
    }

    /// One durable commit of `rows` contact rows that took `seconds`, fsync included (the engine's
    /// writer calls this).
    public func recordCommit(rows: Int, seconds: Double) {
        guard isEnabled else { return }
        rowsPerCommit.record(rows)
        commitLatency.recordSeconds(seconds)
    }

    /// The metrics as Prometheus text, with the engine's figures read now.
    public func render(_ engine: IdentityEngine) async -> [UInt8] {
        let statistics = await engine.statistics
        contacts.set(statistics.contacts)
        profiles.set(statistics.profiles)
        latestSeq.set(Int(statistics.latestSeq))
        let (newCommits, newIgnored) = seen.withLockedValue { seen -> (Int, [(IgnoredKey, Int)]) in
            let commits = statistics.commits - seen.commits
            seen.commits = statistics.commits
            var ignored: [(IgnoredKey, Int)] = []
            for (field, reasons) in statistics.ignored {
                for (reason, count) in reasons {
                    let key = IgnoredKey(field: field, reason: reason)
                    let delta = count - (seen.ignored[key] ?? 0)
                    seen.ignored[key] = count
                    ignored.append((key, delta))
                }
            }
            return (commits, ignored)
        }
        if newCommits > 0 { commits.increment(by: newCommits) }
        for (key, delta) in newIgnored {
            let counter = ignored.withLockedValue { cache in
                if let counter = cache[key] { return counter }
                let counter = CoreMetrics.Counter(
                    label: "identity_graph_ignored_values_total",
                    dimensions: [("field", key.field), ("reason", key.reason)], factory: factory
                )
                cache[key] = counter
                return counter
            }
            if delta > 0 { counter.increment(by: delta) } else { counter.increment(by: 0) }
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

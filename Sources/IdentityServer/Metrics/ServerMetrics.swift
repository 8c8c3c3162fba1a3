import HTTPTypes
import IdentityCluster
import IdentityGraph
import NIOConcurrencyHelpers
import Prometheus

/// The server's metrics (SPEC.md section 15), kept in a Prometheus registry of this server's own and
/// rendered in Prometheus' text format at `GET /metrics`.
///
/// Every family has a `# HELP` line, and every labelled series a dashboard expects (each operation
/// with its usual statuses, each ignored field and reason, each reload outcome) exists at 0 from
/// the start, so that a ratio panel shows 0 rather than "No data" before the first event.
///
/// Hot paths only bump a counter and record into a histogram, both found in a small cache keyed by
/// transport, operation and status. Figures the engine already counts (contacts, profiles, ignored
/// values, the newest seq) are read from it when the metrics are scraped, so identify pays nothing
/// for them.
public final class ServerMetrics: Sendable {
    /// Which listener a request came through.
    public enum Transport: String, Sendable, CaseIterable {
        case http
        case line
    }

    /// A file `serve` re-reads on SIGHUP.
    public enum ReloadedFile: String, Sendable, CaseIterable {
        case blocklist
        case tokens
    }

    /// The operations of each transport and the statuses each usually answers, whose series are
    /// created at 0 at start. HTTP's come from the route table (``IdentityHTTPResponder/routes``), so
    /// that a new route is counted from the start without a second list to keep in step; the line
    /// protocol's are its operations as `LineRequest` names them.
    static var operations: [Transport: [(op: String, statuses: [Int])]] {
        [.http: httpOperations, .line: lineOperations]
    }

    static let lineOperations: [(op: String, statuses: [Int])] = [
        ("identify", [200, 400, 401, 403, 422, 503]),
        ("dryRun", [200, 400, 401, 403, 422]),
        ("lookup", [200, 400, 401, 403]),
        ("get", [200, 400, 401, 403, 404]),
        ("ping", [200, 401]),
        ("auth", [200, 401]),
        // A line whose `op` is not ours; a line over the length limit, whose op is never read.
        ("unknown", [400]),
        ("invalid", [413]),
    ]

    /// Each HTTP operation once (identify serves two paths), with the statuses its kind answers:
    /// `401`/`403` when it needs a role, `400` when it reads a body, a query or an id, `404` for an
    /// id, `413`/`415` for a body, `503` when it writes; and `unknown` (no route, `404`; wrong method, `405`).
    static var httpOperations: [(op: String, statuses: [Int])] {
        let extra: [String: Set<Int>] = [
            "identify": [422], "dryRun": [422], "healthz": [503], "explain": [404], "removeKeepApart": [204],
        ]
        var seen: Set<String> = []
        var operations: [(op: String, statuses: [Int])] = []
        for route in IdentityHTTPResponder.routes {
            let hasID = route.path.hasSuffix("{id}")
            for operation in route.operations where seen.insert(operation.name).inserted {
                var statuses: Set<Int> = [200]
                if operation.role != nil { statuses.formUnion([401, 403]) }
                if operation.method == .post { statuses.formUnion([400, 413, 415]) }
                if !operation.parameters.isEmpty { statuses.insert(400) }
                if hasID { statuses.formUnion([400, 404]) }
                if operation.writes { statuses.insert(503) }
                statuses.formUnion(extra[operation.name] ?? [])
                operations.append((operation.name, statuses.sorted()))
            }
        }
        operations.append(("unknown", [404, 405]))
        return operations
    }

    /// The `field` and `reason` labels of ignored values: every ``IgnoredValue/metricReason``.
    static let ignoredReasons = ["blocked", "emailLimit", "phoneLimit", "keptApart"]

    /// Requests take microseconds, commits about a millisecond, and a stalled fsync may take
    /// seconds: 1-2.5-5 steps from 5 µs to 10 s, with no gap between.
    static let latencyBuckets: [Duration] = [
        .microseconds(5), .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100),
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// Rows per group commit, doubling from 1 to 16,384 (a burst of many connections' requests).
    static let rowBuckets: [Double] = (0...14).map { Double(1 << $0) }

    private struct RequestKey: Hashable {
        var transport: Transport
        var op: String
        var status: Int
    }

    private struct IgnoredKey: Hashable {
        var field: String
        var reason: String
    }

    private let registry = PrometheusCollectorRegistry()
    /// The series one request touches, found with one lock and one lookup: its counter and its
    /// operation's latency histogram (shared by every status of the operation: the registry hands
    /// out the same one for the same name and labels).
    private let requests = NIOLockedValueBox<[RequestKey: (count: Counter, latency: DurationHistogram)]>([:])
    private let connections: [Transport: Gauge]
    private let commitLatency: DurationHistogram
    private let rowsPerCommit: ValueHistogram
    private let commits: Counter
    private let contacts: Gauge
    private let profiles: Gauge
    private let latestSeq: Gauge
    private let reloads: [ReloadedFile: (ok: Counter, failed: Counter)]
    private let ignored: [IgnoredKey: Counter]
    /// What the engine's ignored counts were at the last scrape, to add only the difference.
    private let seenIgnored = NIOLockedValueBox<[IgnoredKey: Int]>([:])
    private let process = ProcessFigures()
    /// Cluster mode's series (SPEC.md section 17), made at the first scrape of a server in a cluster.
    private let cluster = NIOLockedValueBox<ClusterSeries?>(nil)
    private let appendLatency: DurationHistogram

    private struct ClusterSeries {
        var roles: [ClusterNode.Role: Gauge]
        var epoch: Gauge
        var appliedSeq: Gauge
        var lag: Gauge
    }

    /// `false` (`serve --no-metrics`): nothing is recorded and `GET /metrics` answers 404, for
    /// deployments that do not scrape, and to measure what the metrics cost.
    public let isEnabled: Bool

    public init(enabled: Bool = true) {
        isEnabled = enabled
        let registry = self.registry
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
        }
        connections = Dictionary(uniqueKeysWithValues: Transport.allCases.map { transport in
            (transport, gauge(
                "identity_graph_connections", "Open connections, by listener.", [("transport", transport.rawValue)]
            ))
        })
        commitLatency = registry.makeDurationHistogram(
            descriptor: Self.descriptor(
                "identity_graph_commit_duration_seconds", "How long each store commit took, fsync included."
            ),
            buckets: Self.latencyBuckets
        )
        rowsPerCommit = registry.makeValueHistogram(
            descriptor: Self.descriptor("identity_graph_commit_rows", "Contact rows written by each store commit."),
            buckets: Self.rowBuckets
        )
        appendLatency = registry.makeDurationHistogram(
            descriptor: Self.descriptor(
                "identity_graph_cluster_append_duration_seconds",
                "Cluster mode: how long each of the leader's appends to PostgreSQL's log took."
            ),
            buckets: Self.latencyBuckets
        )
        commits = counter("identity_graph_commits_total", "Store commits since the server started.")
        contacts = gauge("identity_graph_contacts", "Contacts in the store, erased ones included.")
        profiles = gauge("identity_graph_profiles", "Profiles (primary contacts) in the store.")
        latestSeq = gauge("identity_graph_latest_change_seq", "The seq of the newest durable change event.")
        gauge("identity_graph_build_info", "The version of this server, as a label; always 1.", [
            ("version", BuildInfo.version)
        ]).set(to: 1)
        reloads = Dictionary(uniqueKeysWithValues: ReloadedFile.allCases.map { file in
            let help = "Files re-read on SIGHUP, by file and outcome (a failed reload keeps the previous one)."
            return (file, (
                ok: counter("identity_graph_reloads_total", help, [("file", file.rawValue), ("result", "ok")]),
                failed: counter("identity_graph_reloads_total", help, [("file", file.rawValue), ("result", "failed")])
            ))
        })
        var ignored: [IgnoredKey: Counter] = [:]
        for field in [GuardField.email, .phoneNumber].map(\.rawValue) {
            for reason in Self.ignoredReasons {
                ignored[IgnoredKey(field: field, reason: reason)] = counter(
                    "identity_graph_ignored_values_total",
                    "Values identify held back, by field and reason (blocked, emailLimit, phoneLimit, keptApart).",
                    [("field", field), ("reason", reason)]
                )
            }
        }
        self.ignored = ignored
        guard enabled else { return }
        for (transport, operations) in Self.operations {
            for (op, statuses) in operations {
                for status in statuses { _ = series(RequestKey(transport: transport, op: op, status: status)) }
            }
        }
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The counter and histogram of `key`, created on first use.
    private func series(_ key: RequestKey) -> (count: Counter, latency: DurationHistogram) {
        requests.withLockedValue { cache in
            if let series = cache[key] { return series }
            let series = (
                count: registry.makeCounter(
                    descriptor: Self.descriptor(
                        "identity_graph_requests_total", "Requests answered, by transport, operation and status."
                    ),
                    labels: [("transport", key.transport.rawValue), ("op", key.op), ("status", String(key.status))]
                ),
                latency: registry.makeDurationHistogram(
                    descriptor: Self.descriptor(
                        "identity_graph_request_duration_seconds",
                        "How long requests took to answer, by transport and operation."
                    ),
                    labels: [("transport", key.transport.rawValue), ("op", key.op)],
                    buckets: Self.latencyBuckets
                )
            )
            cache[key] = series
            return series
        }
    }

    /// Counts one request and records how long it took.
    public func recordRequest(_ transport: Transport, op: String, status: Int, duration: Duration) {
        guard isEnabled else { return }
        let (counter, histogram) = series(RequestKey(transport: transport, op: op, status: status))
        counter.increment()
        histogram.record(duration)
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
        commits.increment()
        rowsPerCommit.record(Double(rows))
        commitLatency.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    /// One append of the leader to the cluster's log, which took `duration`.
    public func recordAppend(_ duration: Duration) {
        guard isEnabled else { return }
        appendLatency.record(duration)
    }

    /// Cluster mode's figures now: this server's role, the epoch it knows, the newest event it has
    /// applied, and how far it lags behind the log.
    private func record(_ node: ClusterNode, appliedSeq: UInt64) {
        let status = node.status
        let series = cluster.withLockedValue { series -> ClusterSeries in
            if let series { return series }
            let made = ClusterSeries(
                roles: Dictionary(uniqueKeysWithValues: [ClusterNode.Role.leader, .follower, .candidate].map { role in
                    (role, registry.makeGauge(
                        descriptor: Self.descriptor(
                            "identity_graph_cluster_role", "Cluster mode: 1 for this server's role now, 0 for the others."
                        ),
                        labels: [("role", role.rawValue)]
                    ))
                }),
                epoch: registry.makeGauge(descriptor: Self.descriptor(
                    "identity_graph_cluster_epoch", "Cluster mode: the newest lease epoch this server knows."
                )),
                appliedSeq: registry.makeGauge(descriptor: Self.descriptor(
                    "identity_graph_cluster_applied_seq",
                    "Cluster mode: the newest change event both in this server's graph and in its local copy."
                )),
                lag: registry.makeGauge(descriptor: Self.descriptor(
                    "identity_graph_cluster_lag_seconds",
                    "Cluster mode: seconds since this server last saw itself at the end of the log (0 on the leader)."
                ))
            )
            series = made
            return made
        }
        for (role, gauge) in series.roles { gauge.set(Int64(role == status.role ? 1 : 0)) }
        series.epoch.set(status.epoch)
        series.appliedSeq.set(Int64(appliedSeq))
        series.lag.set(to: status.lagSeconds)
    }

    /// One attempt to re-read `file` on SIGHUP.
    public func recordReload(_ file: ReloadedFile, succeeded: Bool) {
        guard isEnabled, let counters = reloads[file] else { return }
        (succeeded ? counters.ok : counters.failed).increment()
    }

    /// The metrics as Prometheus text, with the engine's and the process's figures read now.
    public func render(_ engine: IdentityEngine, cluster node: ClusterNode? = nil) async -> [UInt8] {
        let statistics = await engine.statistics
        if let node { record(node, appliedSeq: statistics.latestSeq) }
        contacts.set(Int64(statistics.contacts))
        profiles.set(Int64(statistics.profiles))
        latestSeq.set(Int64(statistics.latestSeq))
        let increments = seenIgnored.withLockedValue { seen -> [(IgnoredKey, Int)] in
            var increments: [(IgnoredKey, Int)] = []
            for (field, reasons) in statistics.ignored {
                for (reason, count) in reasons {
                    let key = IgnoredKey(field: field, reason: reason)
                    let delta = count - (seen[key] ?? 0)
                    seen[key] = count
                    if delta > 0 { increments.append((key, delta)) }
                }
            }
            return increments
        }
        for (key, delta) in increments { ignored[key]?.increment(by: Int64(delta)) }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        buffer.append(contentsOf: process.text().utf8)
        return buffer
    }
}

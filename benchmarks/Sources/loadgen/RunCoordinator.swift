import Foundation
import Histogram

/// What one connection is asked to do. Requests are dealt round-robin (request k goes to connection
/// k % connections), so the workload is replayed close to its file order whatever the connection count, which
/// keeps the linking pattern it was written for.
struct WorkerPlan: Sendable {
    let connectionIndex: Int
    let connections: Int
    let totalRequests: Int
    /// Added to every request number, so that a run can start on lines another run has not used.
    let firstRequest: Int
    /// With `--rate`: nanoseconds between this connection's requests; nil sends as soon as answered.
    let pacingNanos: UInt64?
    let pipeline: Int
    let endpoint: Endpoint
    let workload: Workload

    var requestCount: Int {
        totalRequests / connections + (connectionIndex < totalRequests % connections ? 1 : 0)
    }

    /// The global number of this connection's n-th request: the TCP id and the workload line selector.
    func requestID(_ n: Int) -> Int {
        firstRequest + connectionIndex + n * connections
    }

    /// When request `n` is due: `start` plus n intervals, the connections staggered evenly within one interval;
    /// without pacing, at once.
    func due(_ n: Int, start: UInt64) -> UInt64 {
        guard let pacingNanos else { return 0 }
        return start &+ UInt64(n) &* pacingNanos &+ pacingNanos * UInt64(connectionIndex) / UInt64(connections)
    }

    /// With pacing, waits until request `n` is due. A send that is late goes at once (the schedule does not slip).
    func waitUntilDue(_ n: Int, start: UInt64) {
        guard pacingNanos != nil else { return }
        MonotonicClock.sleep(until: due(n, start: start))
    }
}

/// What one connection saw. Each thread fills its own, so recording needs no synchronization.
struct WorkerResult: Sendable {
    let connectionIndex: Int
    var histogram = WorkerResult.makeHistogram()
    var answered = 0
    var succeeded = 0
    var invalidAnswers = 0
    var badStatus = 0
    var connectionFailures = 0
    /// Requests planned for this connection that got no answer because the connection failed.
    var unanswered = 0
    var finishedAt: UInt64 = 0
    var errorSamples: [String] = []

    /// Nanoseconds, 1 ns to 10 minutes at 3 significant digits; every thread uses the same layout so that
    /// `Histogram.add` can merge them.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1,
            highestTrackableValue: maxLatency,
            numberOfSignificantValueDigits: .three
        )
    }

    static let maxLatency: UInt64 = 600_000_000_000

    mutating func recordLatency(sentAt: UInt64, answeredAt: UInt64) {
        let latency = answeredAt >= sentAt ? answeredAt - sentAt : 0
        // Socket timeouts keep real latencies far below the top; clamping only guards against a trap.
        histogram.record(Swift.min(latency, Self.maxLatency))
    }

    /// Keeps a few messages per connection for stderr: enough to see what went wrong without flooding.
    mutating func note(_ message: String) {
        if errorSamples.count < 3 { errorSamples.append(message) }
    }
}

/// Lines the threads up: all connect, then the clock starts, then all run; and collects their results.
// @unchecked Sendable: every stored var is read and written only while `condition` is locked, and `workers` is
// an immutable let.
final class RunCoordinator: @unchecked Sendable {
    private let condition = NSCondition()
    private let workers: Int
    private var ready = 0
    private var started = false
    private var results: [WorkerResult] = []

    init(workers: Int) {
        self.workers = workers
    }

    /// Called by each worker once it has connected (or failed to); returns when the run starts.
    func arriveAndWaitForStart() {
        condition.lock()
        defer { condition.unlock() }
        ready += 1
        condition.broadcast()
        while !started { condition.wait() }
    }

    func waitUntilAllReady() {
        condition.lock()
        defer { condition.unlock() }
        while ready < workers { condition.wait() }
    }

    func start() {
        condition.lock()
        defer { condition.unlock() }
        started = true
        condition.broadcast()
    }

    func finish(_ result: WorkerResult) {
        condition.lock()
        defer { condition.unlock() }
        results.append(result)
        condition.broadcast()
    }

    func waitForResults() -> [WorkerResult] {
        condition.lock()
        defer { condition.unlock() }
        while results.count < workers { condition.wait() }
        return results
    }
}

import Foundation

/// Commits batches of rows to the store on a thread of its own, so that fsync never runs on the
/// engine's thread, an event loop or the cooperative pool.
///
/// The engine hands over one batch at a time (``submit(_:)``), only while the writer is idle, and
/// hears back through `report` on the writer's thread once the batch is durable or when a commit
/// fails. While a batch commits the engine gathers the next one, so a burst of N changes costs about
/// one fsync, not N (group commit). A failed commit is retried with a back-off until it succeeds:
/// the rows are already in the engine's memory, and they must not be lost while the store recovers.
///
/// `@unchecked Sendable`: `next`, `isClosing` and `stopping` are touched only while `lock` is held;
/// `store` is written by this thread alone (``ContactStore`` states its own invariant).
final class GroupCommitWriter: @unchecked Sendable {
    /// The rows of one batch, its number, and the newest change-event seq it holds.
    struct Batch: Sendable {
        var rows: RowBatch
        var number: UInt64
        var seq: UInt64
        /// A cluster leader's batch: what goes to the log, before the rows go to the local store.
        var replication: Replication?
    }

    enum Report: Sendable {
        /// `batch` is durable; it took `seconds`, fsync included. `recovered` after failed tries.
        case committed(Batch, seconds: Double, recovered: Bool)
        /// A try at committing `batch` failed; the writer tries again after a pause.
        case failed(StorageError)
        /// The log refused `batch`: another server holds the lease. Nothing of it was written.
        case fenced(Batch)
    }

    private let store: ContactStore
    private let replicator: (any Replicator)?
    private let lock = NSLock()
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var next: Batch?
    private var isClosing = false
    private var stopping = false

    /// `replicator`, in cluster mode, appends a leader's batch to the log; the rows go to the store
    /// only once it returns (SPEC.md section 17: acknowledged means committed in the log).
    init(store: ContactStore, replicator: (any Replicator)? = nil) {
        self.store = store
        self.replicator = replicator
    }

    /// Starts the thread; `report` runs on it after every commit and every failed try.
    func start(report: @escaping @Sendable (Report) -> Void) {
        let thread = Thread { [self] in run(report) }
        thread.name = "identity-graph writer"
        thread.start()
    }

    /// Hands over the next batch. The writer must be idle: its last batch reported committed.
    func submit(_ batch: Batch) {
        lock.lock()
        precondition(next == nil, "a batch was handed to a busy writer")
        next = batch
        lock.unlock()
        wakeup.signal()
    }

    /// The engine is closing: a failing commit is given up after a few tries, as nobody waits any
    /// more for its unacknowledged rows, and the thread ends without reporting it.
    func closing() {
        lock.withLock { isClosing = true }
    }

    /// Ends the thread once it is idle; then ``waitUntilFinished()`` returns.
    func stop() {
        lock.withLock { stopping = true }
        wakeup.signal()
    }

    /// Blocks until the thread has ended (after ``stop()``).
    func waitUntilFinished() {
        finished.wait()
        finished.signal()  // later calls return at once
    }

    private func run(_ report: @Sendable (Report) -> Void) {
        while true {
            wakeup.wait()
            let (batch, stop) = lock.withLock { () -> (Batch?, Bool) in
                defer { next = nil }
                return (next, stopping)
            }
            if let batch, !commit(batch, report) { break }
            if stop && batch == nil { break }
        }
        finished.signal()
    }

    /// Commits `batch`, retrying until it succeeds; false when it was given up at closing.
    private func commit(_ batch: Batch, _ report: @Sendable (Report) -> Void) -> Bool {
        var backoff = 0.05
        var recovered = false
        let started = DispatchTime.now().uptimeNanoseconds
        var replicated = batch.replication == nil
        while true {
            do {
                if !replicated, let replication = batch.replication, let replicator {
                    try replicator.append(replication)
                    replicated = true
                }
                try store.write(batch.rows)
                break
            } catch let error as ReplicationError where error.isFenced {
                report(.fenced(batch))
                return true
            } catch {
                let error = (error as? StorageError) ?? StorageError(.unavailable, "\(error)")
                report(.failed(error))
                recovered = true
                if lock.withLock({ isClosing }) && backoff > 0.5 { return false }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        report(.committed(batch, seconds: seconds, recovered: recovered))
        return true
    }
}

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
/// In cluster mode (a `replicator`) the work is split in two stages on two threads, so that a leader's
/// next batch goes to the log while the last one reaches the local copy: the log thread appends a
/// batch and reports it ``Report/replicated(_:recovered:)``, which acknowledges it (SPEC.md section 17:
/// acknowledged means committed in the log; the local copy is written after that), then queues it for
/// the store thread, which commits every queued batch in one transaction and reports them
/// ``Report/stored(seq:batches:rows:seconds:recovered:)``. At most ``maxBacklog`` batches wait for the
/// store; the log thread waits beyond that. A follower's batches (no replication) take the same path,
/// so that they reach the store in log order.
///
/// While appends succeed and the backlog has room, a leader's batch bypasses the log thread: ``submit(_:)``
/// starts its append from the engine's thread (``Replicator/startAppend(_:completion:)``), and the
/// database connection's thread reports it and queues it for the store. A failed append goes to the log
/// thread, which retries it (or reports it fenced) as it does its own.
///
/// `@unchecked Sendable`: `next`, `nextFailure`, `isClosing` and `stopping` are touched only while `lock`
/// is held, `backlog`, `reserved`, `handingOver`, `storeStopping`, `storeClosing` and `storeGaveUp` only while
/// `queue` is; `report` is written once, by ``start(report:)``, before any batch is submitted; `store` is
/// written by one thread alone (``ContactStore`` states its own invariant).
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
        /// A try at committing `batch` failed; the writer tries again after a pause. In cluster mode:
        /// a try at appending it to the log.
        case failed(StorageError)
        /// Cluster mode: `batch` is in the log (a follower's: it is next in line for the store); the
        /// writer takes the next one. `recovered` after failed tries.
        case replicated(Batch, recovered: Bool)
        /// Cluster mode: the local copy holds `batches` more batches, up to change event `seq`, in one
        /// commit of `rows` contact rows that took `seconds`. `recovered` after failed tries.
        case stored(seq: UInt64, batches: Int, rows: Int, seconds: Double, recovered: Bool)
        /// Cluster mode: a try at committing to the local copy failed; the store thread tries again.
        case storeFailed(StorageError)
        /// The log refused `batch`: another server holds the lease. Nothing of it was written, and every
        /// batch before it is in the local copy.
        case fenced(Batch)
    }

    /// How many batches may wait for the local copy in cluster mode before the log thread waits too.
    static let maxBacklog = 64

    /// Cluster mode: the least time between the starts of two commits to the local copy, while fewer than
    /// half of ``maxBacklog`` batches wait. The log is what acknowledges, and the copy may lag (SPEC.md
    /// section 17): under a light load, when every log batch holds a few requests, this makes one fsync
    /// of the local copy serve many batches instead of one each, so that the servers' disks (and a
    /// PostgreSQL that shares one, whose commit every append waits for) are not flushed once per batch.
    /// A follower's applied seq, and so a read's `minSeq`, trails its log by at most as much.
    static let storeInterval = 0.005

    private let store: ContactStore
    private let replicator: (any Replicator)?
    private let lock = NSLock()
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var next: Batch?
    /// Why the append of `next` failed when it was started without the log thread, which goes on from there.
    private var nextFailure: (any Error)?
    private var isClosing = false
    private var stopping = false
    /// Cluster mode: batches in the log, waiting for the store thread, oldest first; guarded by `queue`.
    private var backlog: [Batch] = []
    /// Cluster mode: places in the backlog held for appends started without the log thread.
    private var reserved = 0
    /// Cluster mode: the log thread has reported a batch replicated and waits to queue it, so that the
    /// next batch must queue behind it and go through the log thread too.
    private var handingOver = false
    private var storeStopping = false
    /// The engine is closing: a failing store commit is given up after a few tries.
    private var storeClosing = false
    /// The store thread gave up at closing: nothing more reaches the local copy (the log holds it), and
    /// the log thread no longer waits for room or for the backlog to drain.
    private var storeGaveUp = false
    private let queue = NSCondition()
    private var report: (@Sendable (Report) -> Void)?

    /// `replicator`, in cluster mode, appends a leader's batch to the log; the rows go to the store
    /// only once it returns (SPEC.md section 17: acknowledged means committed in the log).
    init(store: ContactStore, replicator: (any Replicator)? = nil) {
        self.store = store
        self.replicator = replicator
    }

    /// Starts the thread; `report` runs on it after every commit and every failed try.
    func start(report: @escaping @Sendable (Report) -> Void) {
        self.report = report
        guard replicator != nil else {
            let thread = Thread { [self] in run(report) }
            thread.name = "identity-graph writer"
            thread.start()
            return
        }
        let storeFinished = DispatchSemaphore(value: 0)
        let storeThread = Thread { [self] in
            runStore(report)
            storeFinished.signal()
        }
        storeThread.name = "identity-graph writer"
        storeThread.start()
        let logThread = Thread { [self] in runLog(report, storeFinished: storeFinished) }
        logThread.name = "identity-graph log writer"
        logThread.start()
    }

    /// Hands over the next batch. The writer must be idle: its last batch reported committed.
    func submit(_ batch: Batch) {
        if let replication = batch.replication, let replicator, startAppend(batch, replication, replicator) {
            return
        }
        hand(batch, failure: nil)
    }

    /// Hands `batch` to the thread (the log thread in cluster mode), with why its first append failed.
    private func hand(_ batch: Batch, failure: (any Error)?) {
        lock.lock()
        precondition(next == nil, "a batch was handed to a busy writer")
        next = batch
        nextFailure = failure
        lock.unlock()
        wakeup.signal()
    }

    /// Cluster mode: starts appending a leader's batch from the caller's thread, when the backlog has a
    /// place for it and nothing else is under way; false when the log thread must take it.
    private func startAppend(_ batch: Batch, _ replication: Replication, _ replicator: any Replicator) -> Bool {
        // (`storeClosing` is set with `isClosing`: a closing writer's batches go through the log thread.)
        let placed = queue.withLock { () -> Bool in
            guard !storeClosing, !storeGaveUp, !handingOver, backlog.count + reserved < Self.maxBacklog else {
                return false
            }
            reserved += 1
            return true
        }
        guard placed else { return false }
        let started = replicator.startAppend(replication) { [self] result in appended(batch, result) }
        if !started {
            queue.withLock {
                reserved -= 1
                queue.broadcast()
            }
        }
        return started
    }

    /// Cluster mode: the append started by ``startAppend(_:_:_:)`` is over, on the replicator's thread.
    private func appended(_ batch: Batch, _ result: Result<Void, any Error>) {
        guard let report else { return }
        switch result {
        case .success:
            // Reported and queued under one lock: the engine hears of the batch in the log before the
            // store thread can report it stored, and before the next batch can be queued.
            queue.withLock {
                reserved -= 1
                report(.replicated(batch, recovered: false))
                if !storeGaveUp { backlog.append(batch) }
                queue.broadcast()
            }
        case .failure(let error):
            queue.withLock {
                reserved -= 1
                queue.broadcast()
            }
            hand(batch, failure: error)
        }
    }

    /// The engine is closing: a failing commit is given up after a few tries, as nobody waits any
    /// more for its unacknowledged rows, and the thread ends without reporting it.
    func closing() {
        lock.withLock { isClosing = true }
        queue.withLock {
            storeClosing = true
            queue.broadcast()
        }
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
        takeBatches { batch, _ in commit(batch, report) }
        finished.signal()
    }

    /// Hands each submitted batch, with why its append failed if it was tried already, to `handle` until
    /// ``stop()`` finds the writer idle, or `handle` returns false (a batch given up at closing).
    private func takeBatches(_ handle: (Batch, (any Error)?) -> Bool) {
        while true {
            wakeup.wait()
            let (batch, failure, stop) = lock.withLock { () -> (Batch?, (any Error)?, Bool) in
                defer {
                    next = nil
                    nextFailure = nil
                }
                return (next, nextFailure, stopping)
            }
            if let batch, !handle(batch, failure) { break }
            if stop && batch == nil { break }
        }
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

    // MARK: - Cluster mode: the log stage and the store stage

    private func runLog(_ report: @Sendable (Report) -> Void, storeFinished: DispatchSemaphore) {
        takeBatches { replicate($0, failure: $1, report) }
        queue.withLock {
            while reserved > 0 { queue.wait() }
            storeStopping = true
            queue.broadcast()
        }
        storeFinished.wait()
        finished.signal()
    }

    /// Appends `batch` to the log, retrying until it succeeds or is fenced, then hands it to the store
    /// thread; false when it was given up at closing. `failure` is why a first try, made without this
    /// thread, failed.
    private func replicate(_ batch: Batch, failure: (any Error)?, _ report: @Sendable (Report) -> Void) -> Bool {
        var backoff = 0.05
        var recovered = false
        var failure = failure
        while let replication = batch.replication, let replicator {
            do {
                if let first = failure {
                    failure = nil
                    throw first
                }
                try replicator.append(replication)
                break
            } catch let error as ReplicationError where error.isFenced {
                // The engine rebuilds from the local copy: it must hold every batch before this one.
                queue.withLock {
                    while !backlog.isEmpty && !storeGaveUp { queue.wait() }
                }
                report(.fenced(batch))
                return true
            } catch {
                report(.failed((error as? StorageError) ?? StorageError(.unavailable, "\(error)")))
                recovered = true
                if lock.withLock({ isClosing }) && backoff > 0.5 { return false }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
        // Acknowledged first, then queued: the engine hears of a batch in the log before it hears
        // that the store holds it. The batch it submits next waits here for this one to be queued.
        queue.withLock { handingOver = true }
        report(.replicated(batch, recovered: recovered))
        queue.withLock {
            while backlog.count + reserved >= Self.maxBacklog && !storeGaveUp { queue.wait() }
            if !storeGaveUp { backlog.append(batch) }
            handingOver = false
            queue.broadcast()
        }
        return true
    }

    private func runStore(_ report: @Sendable (Report) -> Void) {
        // (The monotonic clock decides; the condition's wait takes a wall-clock date, only as a timeout.)
        var lastStart: UInt64?
        while true {
            let batches = queue.withLock { () -> [Batch]? in
                while backlog.isEmpty && !storeStopping { queue.wait() }
                if let lastStart {
                    let due = lastStart + UInt64(Self.storeInterval * 1e9)
                    while !storeStopping, !storeClosing, backlog.count < Self.maxBacklog / 2 {
                        let now = DispatchTime.now().uptimeNanoseconds
                        guard now < due else { break }
                        _ = queue.wait(until: Date(timeIntervalSinceNow: Double(due - now) / 1e9))
                    }
                }
                return backlog.isEmpty ? nil : backlog
            }
            lastStart = DispatchTime.now().uptimeNanoseconds
            guard let batches else { break }
            var backoff = 0.05
            var recovered = false
            let started = DispatchTime.now().uptimeNanoseconds
            while true {
                do {
                    try store.write(batches.lazy.map(\.rows))
                    break
                } catch {
                    report(.storeFailed(error))
                    recovered = true
                    // At closing the rows are in the log already: the next start catches up from it.
                    let givingUp = queue.withLock { () -> Bool in
                        guard storeClosing && backoff > 0.5 else { return false }
                        storeGaveUp = true
                        queue.broadcast()
                        return true
                    }
                    if givingUp { return }
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, 5)
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            report(.stored(
                seq: batches.map(\.seq).max() ?? 0, batches: batches.count,
                rows: batches.reduce(0) { $0 + $1.rows.count }, seconds: seconds, recovered: recovered
            ))
            queue.withLock {
                backlog.removeFirst(batches.count)
                queue.broadcast()
            }
        }
    }
}

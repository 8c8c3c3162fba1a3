import Dispatch
import IdentityGraph
import NIOConcurrencyHelpers

/// The engine's ``Replicator`` in cluster mode: appends each leader batch to the ``ChangeLog``. The
/// writer's thread calls it and waits for PostgreSQL's answer, as it waits for fsync: no event loop and
/// no task of the pool ever blocks on it. An append that takes longer than `timeout` counts as failed
/// (its outcome unknown); the writer retries it, and a retry that finds its own row counts as done.
final class PostgresReplicator: Replicator {
    private let log: ChangeLog
    private let timeout: Duration
    /// Told how long each successful append took (the metrics).
    let observer = NIOLockedValueBox<(@Sendable (Duration) -> Void)?>(nil)

    init(log: ChangeLog, timeout: Duration = .seconds(10)) {
        self.log = log
        self.timeout = timeout
    }

    func append(_ replication: Replication) throws {
        let outcome = NIOLockedValueBox<Result<Void, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let log = self.log
        let started = ContinuousClock.now
        let task = Task {
            do {
                try await log.append(replication)
                outcome.withLockedValue { $0 = .success(()) }
            } catch let error as ReplicationError {
                outcome.withLockedValue { $0 = .failure(error) }
            } catch {
                // PostgreSQL's own message: its errors describe themselves only generically.
                let failure = ReplicationError(fenced: false, "cannot append to the log: \(ClusterNode.describe(error))")
                outcome.withLockedValue { $0 = .failure(failure) }
            }
            done.signal()
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        if done.wait(timeout: .now() + seconds) == .timedOut {
            task.cancel()
            throw ReplicationError(fenced: false, "PostgreSQL did not answer the append within \(timeout)")
        }
        try outcome.withLockedValue { $0 }?.get()
        observer.withLockedValue { $0 }?(ContinuousClock.now - started)
    }
}

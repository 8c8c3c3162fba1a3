import Dispatch
import IdentityGraph
import NIOConcurrencyHelpers

/// The engine's ``Replicator`` in cluster mode: appends each leader batch to the ``ChangeLog``. The
/// writer's thread calls it and waits for PostgreSQL's answer, as it waits for fsync: no event loop and
/// no task of the pool ever blocks on it. An append that takes longer than `timeout` counts as failed
/// (its outcome unknown); the writer retries it, and a retry that finds its own row counts as done.
final class PostgresReplicator: Replicator {
    private let log: ChangeLog
    /// The same log on a connection of its own, for the wake-ups of the followers after each append.
    private let wakeups: ChangeLog
    private let timeout: Duration
    /// Told how long each successful append took (the metrics).
    let observer = NIOLockedValueBox<(@Sendable (Duration) -> Void)?>(nil)
    /// Whether a wake-up is being sent, and whether another append came after it started.
    private let waking = NIOLockedValueBox((sending: false, again: false))

    init(log: ChangeLog, wakeups: ChangeLog, timeout: Duration = .seconds(10)) {
        self.log = log
        self.wakeups = wakeups
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
        wakeFollowers()
    }

    /// Notifies the followers of new batches without waiting: one notification at a time, and one more
    /// after it when appends came meanwhile (however many), so that a slow database never piles them up.
    private func wakeFollowers() {
        let start = waking.withLockedValue { state -> Bool in
            if state.sending {
                state.again = true
                return false
            }
            state = (sending: true, again: false)
            return true
        }
        guard start else { return }
        let (wakeups, waking) = (self.wakeups, self.waking)
        Task {
            repeat {
                // A failed wake-up costs the followers at most one poll interval.
                try? await wakeups.wakeFollowers()
            } while waking.withLockedValue { state -> Bool in
                defer { state = (sending: state.again, again: false) }
                return state.again
            }
        }
    }
}

/// Cluster mode (SPEC.md section 17), as the engine sees it: it leads (its batches go to the log
/// before they are acknowledged) or it follows (it replays the log and refuses changes). Who leads is
/// decided elsewhere, by the lease; the engine only keeps to what it is told, and stops accepting
/// changes on its own when the lease's deadline passes on its clock.
extension IdentityEngine {
    /// The newest log batch this server holds.
    public var logPosition: UInt64 {
        state.logPosition
    }

    /// The newest acknowledged seq (in the log, or durable here), read without a turn on the engine's
    /// thread: for the `Identity-Graph-Seq` of every answer in cluster mode. It may run a commit ahead of
    /// an answer being written, never behind an answer that reported a change.
    public nonisolated var publishedSeq: UInt64 {
        notifier.acknowledged
    }

    /// Returns true once change event `seq` is durable here (read your writes, SPEC.md section 17), false
    /// when `timeout` passes first.
    public nonisolated func waitUntilApplied(_ seq: UInt64, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            let current = notifier.current
            if current >= seq { return true }
            let left = deadline - .now
            if left <= .zero { return false }
            await notifier.wait(after: current, timeout: left)
        }
    }

    /// The epoch this server leads with, `nil` while it follows (or runs alone).
    public var leaderEpoch: Int64? {
        state.leaderEpoch
    }

    /// Whether this server leads and its lease has not run out on its own clock (whatever its store says).
    public var holdsLease: Bool {
        guard state.leaderEpoch != nil, let deadline = state.leaseDeadline else { return false }
        return ContinuousClock.now < deadline
    }

    /// Whether this server accepts changes now: it runs alone, or it leads and its lease holds.
    public var acceptsChanges: Bool {
        state.canWrite
    }

    /// Leads with `epoch` until `deadline`: from now on changes are accepted, and each batch goes to the
    /// log under `epoch` before it is acknowledged. Call it only once the log is applied to its end.
    public func lead(epoch: Int64, until deadline: ContinuousClock.Instant) {
        state.leaderEpoch = epoch
        state.leaseDeadline = deadline
        state.shipsCommands = true
    }

    /// The lease was renewed: changes are accepted until `deadline`.
    public func extendLease(until deadline: ContinuousClock.Instant) {
        guard state.leaderEpoch != nil else { return }
        state.leaseDeadline = deadline
    }

    /// Stops leading and follows: changes are refused from now on. Whatever this server changed as leader
    /// that is not in the log is dropped, with its waiting answers failed: the graph is rebuilt from the
    /// local copy, which holds exactly the log's batches this server has, once the writer is idle.
    public func follow(reason: String) async {
        guard state.leaderEpoch != nil || state.shipsCommands else { return }
        state.leaderEpoch = nil
        state.leaseDeadline = nil
        state.shipsCommands = false
        // What was gathered but not handed to the writer is in no log: it must never reach the local
        // copy either (the rebuild below drops it from memory and fails its answers).
        state.openBatch = RowBatch()
        state.openCommands.removeAll()
        while !state.writerIdle {
            await withCheckedContinuation { idleWaiters.append($0) }
        }
        rebuild(failing: "this server stopped leading (\(reason)); retry")
    }

    /// Applies log batch `replication` (a follower): replays its commands, checks that the replay ends
    /// at the leader's seq, and returns once the batch is in the graph and queued for the local copy,
    /// behind every earlier one (``latestSeq`` moves once the copy holds it). A batch this server holds
    /// already is skipped; one that does not follow the newest it holds is an error.
    public func apply(_ replication: Replication) async throws(EngineError) {
        try await apply(CollectionOfOne(replication))
    }

    /// Applies log batches `replications`, in order, as ``apply(_:)-(Replication)`` does each, in one turn
    /// of the engine's thread and with one wait for the writer: a follower catching up hands over every
    /// batch of a read at once. When one fails, those before it are applied (and waited for), and its
    /// error is thrown.
    public func apply(_ replications: some Collection<Replication> & Sendable) async throws(EngineError) {
        guard state.leaderEpoch == nil else {
            throw .storage(StorageError(.unavailable, "a leader does not apply the log"))
        }
        let failure = try await run { state throws(EngineError) -> (EngineError?, UInt64) in
            var wait: UInt64 = 0
            for replication in replications where replication.position > state.logPosition {
                do throws(EngineError) {
                    wait = try state.replay(replication)
                } catch {
                    return (error, wait)
                }
            }
            return (nil, wait)
        }
        if let failure { throw failure }
    }

    /// The log refused `batch`: another server leads. Its answers and every later one fail, and the graph
    /// is rebuilt from the local copy.
    func handleFenced(_ batch: GroupCommitWriter.Batch) {
        // The writer reports a fenced batch once the local copy holds every batch before it (or, at
        // closing, once the store thread gave up: the log holds what the copy lacks).
        state.writerBusy = false
        state.storeBacklog = 0
        state.leaderEpoch = nil
        state.leaseDeadline = nil
        state.shipsCommands = false
        options.onStorageEvent?(.fenced(epoch: batch.replication?.epoch ?? 0))
        rebuild(failing: "another server took the lease; this server follows now; retry")
    }

    /// Reloads the graph from the local copy (the writer is idle, the local copy holds everything handed
    /// to it), failing every answer still waiting.
    private func rebuild(failing reason: String) {
        let error = EngineError.storage(StorageError(.unavailable, reason))
        let waiting = state.waiting
        state.waiting.removeAll()
        for waiter in waiting { waiter.resume(.failure(error)) }
        guard let store else { return }
        do {
            var (fresh, _) = try EngineState.loading(store, guards: state.guards)
            fresh.clustered = true
            fresh.ignoredCounts = state.ignoredCounts
            fresh.commits = state.commits
            fresh.openBatchNumber = state.openBatchNumber + 1
            fresh.durableBatch = state.openBatchNumber
            state = fresh
        } catch {
            // The local copy cannot be read: refuse everything until an operator looks.
            state.failure = error
            options.onStorageEvent?(.writeFailed(error))
        }
    }
}

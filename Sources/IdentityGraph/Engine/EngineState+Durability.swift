/// Which answers wait for which batch, and what a commit or a failed commit releases (SPEC.md
/// section 5): plain bookkeeping, so that its tests need no writer and no threads.
extension EngineState {
    /// An answer computed already, waiting until `batch` is durable; `resume` hands it out, or the
    /// storage failure that keeps it from being acknowledged.
    struct Waiter {
        var batch: UInt64
        var resume: (Result<Void, EngineError>) -> Void
    }

    /// Whether changes can be made now: not while commits fail, and in a cluster only on the leader
    /// while its lease holds.
    var canWrite: Bool { refusal == nil && (!clustered || leads) }

    /// Why changes are refused now: the last commit (in cluster mode, the last append to the log)
    /// failed, or the local copy's.
    var refusal: StorageError? { failure ?? storeFailure }

    /// Whether the writer has nothing left to do: no batch in the log stage and, in cluster mode,
    /// none waiting for the local copy. The local copy holds everything handed over then.
    var writerIdle: Bool { !writerBusy && storeBacklog == 0 }

    /// Whether this cluster member leads now: it has a lease, and its own clock says it still holds.
    var leads: Bool {
        guard leaderEpoch != nil, let leaseDeadline else { return false }
        return ContinuousClock.now < leaseDeadline
    }

    /// Registers `resume` to run once `batch` is durable; returns the outcome instead when it is
    /// known now (the batch is durable, or the store is failing and it cannot become so soon).
    mutating func wait(for batch: UInt64, _ resume: @escaping (Result<Void, EngineError>) -> Void)
        -> Result<Void, EngineError>?
    {
        if !persistent || batch <= durableBatch { return .success(()) }
        if let failure = refusal {
            return .failure(.storage(StorageError(.unavailable, "the store is not accepting changes: \(failure.message)")))
        }
        // Batches only grow, and a waiter always waits for the open batch or an older one, so
        // appending keeps the list ordered unless an older batch is named after a newer one.
        if let last = waiting.last, last.batch > batch {
            let index = waiting.firstIndex { $0.batch > batch }!
            waiting.insert(Waiter(batch: batch, resume: resume), at: index)
        } else {
            waiting.append(Waiter(batch: batch, resume: resume))
        }
        return nil
    }

    /// The open batch, for the writer, when it is idle and there is something to commit; the
    /// writer counts as busy until ``committed(_:)``.
    mutating func takeBatch() -> GroupCommitWriter.Batch? {
        guard persistent, !writerBusy, !openBatch.isEmpty else { return nil }
        writerBusy = true
        var replication: Replication?
        if let leaderEpoch, !openCommands.isEmpty {
            recordLogPosition(logPosition + 1)
            replication = Replication(position: logPosition, epoch: leaderEpoch, commands: openCommands, lastSeq: nextSeq - 1)
            openCommands.removeAll(keepingCapacity: true)
        }
        let batch = GroupCommitWriter.Batch(
            rows: openBatch, number: openBatchNumber, seq: nextSeq - 1, replication: replication
        )
        openBatch = RowBatch()
        openBatchNumber += 1
        return batch
    }

    /// `batch` is durable: returns the answers it releases, in order.
    mutating func committed(_ batch: GroupCommitWriter.Batch) -> [Waiter] {
        writerBusy = false
        failure = nil
        commits += 1
        durableSeq = max(durableSeq, batch.seq)
        return release(through: batch.number)
    }

    /// Cluster mode: `batch` is in the log, which acknowledges it: returns the answers it releases, in
    /// order. Its rows wait for the local copy (``stored(seq:batches:)``).
    mutating func replicated(_ batch: GroupCommitWriter.Batch, recovered: Bool) -> [Waiter] {
        writerBusy = false
        // Only an append that succeeded after failing clears a failure: a follower's batch touches no
        // database, and must not clear one the store or a rebuild set.
        if recovered { failure = nil }
        storeBacklog += 1
        return release(through: batch.number)
    }

    /// Batches up to `number` are acknowledged: the profiles they changed are no longer pending, and the
    /// answers waiting for them are returned, in order.
    private mutating func release(through number: UInt64) -> [Waiter] {
        durableBatch = number
        if !pendingProfiles.isEmpty {
            pendingProfiles = pendingProfiles.filter { $0.value > number }
        }
        let count = waiting.prefix { $0.batch <= number }.count
        defer { waiting.removeFirst(count) }
        return Array(waiting.prefix(count))
    }

    /// Cluster mode: the local copy holds `batches` more batches, up to change event `seq`: the feed
    /// and the applied seq move on.
    mutating func stored(seq: UInt64, batches: Int) {
        storeBacklog -= batches
        storeFailure = nil
        commits += 1
        durableSeq = max(durableSeq, seq)
    }

    /// A commit failed: changes are refused until a retry succeeds, and every waiting answer fails,
    /// since what it reports is not on disk. Returns those answers.
    mutating func commitFailed(_ error: StorageError) -> [Waiter] {
        failure = error
        defer { waiting.removeAll() }
        return waiting
    }
}

/// One batch of a cluster leader as the log holds it (SPEC.md section 17): its position in the log, the
/// leader's epoch, the commands that made it (``ReplicatedCommand``, back to back) and the newest
/// change-event seq it holds, which a follower checks its replay against.
public struct Replication: Sendable {
    public var position: UInt64
    public var epoch: Int64
    public var commands: [UInt8]
    public var lastSeq: UInt64

    public init(position: UInt64, epoch: Int64, commands: [UInt8], lastSeq: UInt64) {
        self.position = position
        self.epoch = epoch
        self.commands = commands
        self.lastSeq = lastSeq
    }
}

/// Where a leader's batches go before they are acknowledged: the cluster's log. Called on the writer's
/// thread, one batch at a time, before the rows go to the local store; it blocks until the log has
/// committed the batch, or throws. A ``ReplicationError`` that is fenced means another server holds the
/// lease: the batch is dropped and the engine follows. Any other error is retried, as a failed local
/// commit is, until it succeeds or turns out fenced.
public protocol Replicator: Sendable {
    func append(_ replication: Replication) throws

    /// Starts appending `replication` without blocking the caller, when it can do so at once: true when it
    /// has, and then `completion` runs exactly once, on a thread of the replicator's, with what ``append(_:)``
    /// would have returned or thrown. False when it cannot (no connection open, say): nothing was sent, and
    /// the caller appends with ``append(_:)`` instead. The default cannot.
    ///
    /// This spares a leader's batch two thread wake-ups on its way to acknowledgement: the writer's log
    /// thread, woken to send it and woken again by its answer, no longer stands between the engine and
    /// the database while appends succeed.
    func startAppend(
        _ replication: Replication, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) -> Bool
}

extension Replicator {
    public func startAppend(
        _ replication: Replication, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) -> Bool {
        false
    }
}

/// Why the log did not take a batch.
public struct ReplicationError: Error, Sendable, CustomStringConvertible {
    /// A newer epoch holds the lease: this server may not write.
    public var isFenced: Bool
    public var message: String

    public init(fenced: Bool, _ message: String) {
        self.isFenced = fenced
        self.message = message
    }

    public var description: String { message }
}

extension EngineState {
    /// Replays log batch `replication`, which must follow the newest one applied (``replay(_:position:lastSeq:)``).
    mutating func replay(_ replication: Replication) throws(EngineError) -> UInt64 {
        guard replication.position == logPosition + 1 else {
            throw .storage(StorageError(
                .corrupt, "log batch \(replication.position) does not follow \(logPosition), the newest applied"
            ))
        }
        let commands: [ReplicatedCommand]
        do throws(StorageError) {
            commands = try ReplicatedCommand.decodeAll(replication.commands)
        } catch {
            throw .storage(error)
        }
        return try replay(commands, position: replication.position, lastSeq: replication.lastSeq)
    }

    /// Replays the commands of log batch `position` (a follower applying the leader's log): each with the
    /// leader's time and without the guards the leader already applied, so that the rows, ids and
    /// events come out as the leader's did. Records the position with the rows, and returns the batch
    /// the caller waits for. Throws when the replay does not end at `lastSeq`: the copy has diverged.
    mutating func replay(_ commands: [ReplicatedCommand], position: UInt64, lastSeq: UInt64) throws(EngineError)
        -> UInt64
    {
        defer { pinnedClock = nil }
        for command in commands {
            var scratch = JSONWriter()
            switch command {
            case .identify(let email, let phone, let at):
                pinnedClock = at
                let request: IdentifyRequest
                do {
                    request = try IdentifyRequest(normalizedEmail: email, normalizedPhoneNumber: phone)
                } catch {
                    throw .storage(StorageError(.corrupt, "log batch \(position) holds an identify with no value"))
                }
                _ = try identify(request, canWrite: true, guarded: false)
            case .erase(let target, let at):
                pinnedClock = at
                _ = try erase(target, canWrite: true, into: &scratch)
            case .unmerge(let email, let phone, let keepApart, let at):
                pinnedClock = at
                _ = try unmerge(email: email, phone: phone, keepApart: keepApart, canWrite: true, into: &scratch)
            case .removeKeepApart(let email, let phone):
                _ = try removeKeepApart(email: email, phone: phone, canWrite: true)
            }
        }
        guard nextSeq - 1 == lastSeq else {
            throw .storage(StorageError(
                .corrupt,
                "log batch \(position) ends at seq \(lastSeq), but replaying it here ended at \(nextSeq - 1)"
            ))
        }
        recordLogPosition(position)
        return persistent ? openBatchNumber : 0
    }

    /// Notes that the open batch holds the log up to `position`, in the store's metadata.
    mutating func recordLogPosition(_ position: UInt64) {
        logPosition = position
        guard persistent else { return }
        openBatch.put(.meta, key: ContactStore.logPositionKey) { bytes in
            withUnsafeBytes(of: position.bigEndian) { bytes.append(contentsOf: $0) }
        }
    }
}

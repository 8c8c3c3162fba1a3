import Testing

@testable import IdentityGraph

/// The engine's bookkeeping of durability, driven directly with no writer and no threads: which batch an
/// answer waits for, what the writer is handed, and what a commit or a failed commit releases.
@Suite struct EngineStateTests {
    private func identify(_ state: inout EngineState, _ email: String?, _ phone: String? = nil) throws -> UInt64 {
        try state.identify(IdentifyRequest(email: email, phoneNumber: phone), canWrite: state.canWrite).wait
    }

    /// The batch the writer would be handed now; fails the test when there is none.
    private func take(_ state: inout EngineState, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> GroupCommitWriter.Batch
    {
        let batch = state.takeBatch()
        return try #require(batch, "no batch to commit", sourceLocation: sourceLocation)
    }

    /// Registers a waiter for `batch` that records its outcome in `log` under `name`.
    private func wait(
        _ state: inout EngineState, for batch: UInt64, _ name: String, _ log: Log
    ) -> Result<Void, EngineError>? {
        state.wait(for: batch) { log.outcomes.append((name, $0)) }
    }

    final class Log {
        var outcomes: [(String, Result<Void, EngineError>)] = []
        var names: [String] { outcomes.map(\.0) }
    }

    @Test("changes go into the open batch, and their answers wait for it")
    func changesWaitForTheOpenBatch() throws {
        var state = EngineState(persistent: true)
        #expect(try identify(&state, "a@x.io") == 1)
        #expect(try identify(&state, "b@x.io") == 1)
        #expect(!state.openBatch.isEmpty)
        let log = Log()
        #expect(wait(&state, for: 1, "a", log) == nil, "an answer about an uncommitted change went out")
        #expect(log.outcomes.isEmpty)
    }

    @Test("a read about a durable profile waits for nothing; one about a pending profile waits for its batch")
    func readsWaitOnlyForTheirProfile() throws {
        var state = EngineState(persistent: true)
        _ = try identify(&state, "a@x.io")
        let batch = try take(&state)
        _ = state.committed(batch)
        _ = try identify(&state, "b@x.io")
        #expect(state.pendingBatch(about: 1) == 0)
        #expect(state.pendingBatch(about: 2) == 2)
        #expect(try identify(&state, "a@x.io") == 0, "repeating a durable identify waited for someone else's batch")
    }

    @Test("the writer is handed the open batch only when idle, and the next batch gathers meanwhile")
    func oneBatchAtATime() throws {
        var state = EngineState(persistent: true)
        #expect(state.takeBatch() == nil, "an empty batch was handed to the writer")
        _ = try identify(&state, "a@x.io")
        let first = try take(&state)
        #expect(first.number == 1)
        #expect(first.seq == 1)
        #expect(try identify(&state, "b@x.io") == 2)
        #expect(try identify(&state, "c@x.io") == 2)
        #expect(state.takeBatch() == nil, "a batch was handed to a busy writer")
        _ = state.committed(first)
        let second = try take(&state)
        #expect(second.number == 2)
        #expect(second.seq == 3)
        #expect(second.rows.count > first.rows.count)
    }

    @Test("a commit releases exactly the answers waiting for it or an older batch, in order")
    func commitReleasesItsWaiters() throws {
        var state = EngineState(persistent: true)
        let log = Log()
        _ = try identify(&state, "a@x.io")
        let first = try take(&state)
        _ = try identify(&state, "b@x.io")
        #expect(wait(&state, for: 2, "second", log) == nil)
        #expect(wait(&state, for: 1, "first", log) == nil)
        for waiter in state.committed(first) { waiter.resume(.success(())) }
        #expect(log.names == ["first"])
        #expect(state.durableBatch == 1)
        #expect(state.durableSeq == 1)
        let second = try take(&state)
        for waiter in state.committed(second) { waiter.resume(.success(())) }
        #expect(log.names == ["first", "second"])
        #expect(state.waiting.isEmpty)
        #expect(state.pendingProfiles.isEmpty)
        #expect(state.commits == 2)
    }

    @Test("a failed commit fails every waiting answer and refuses changes until a commit succeeds")
    func failedCommit() throws {
        var state = EngineState(persistent: true)
        let log = Log()
        _ = try identify(&state, "a@x.io")
        let batch = try take(&state)
        #expect(wait(&state, for: 1, "a", log) == nil)
        for waiter in state.commitFailed(StorageError(.unavailable, "disk full")) { waiter.resume(.failure(.storage(StorageError(.unavailable, "disk full")))) }
        #expect(log.names == ["a"])
        #expect(!state.canWrite)
        #expect(throws: EngineError.self) { try identify(&state, "b@x.io") }
        #expect(try identify(&state, "a@x.io") == 1, "a read of pending data no longer names its batch")
        guard case .failure = wait(&state, for: 1, "late", log) else {
            Issue.record("an answer waiting on a failing store was not refused at once")
            return
        }
        _ = state.committed(batch)
        #expect(state.canWrite)
        #expect(try identify(&state, "b@x.io") == 2)
    }

    @Test("in memory, nothing waits and nothing is handed to a writer")
    func inMemory() throws {
        var state = EngineState(persistent: false)
        let log = Log()
        #expect(try identify(&state, "a@x.io") == 0)
        #expect(state.takeBatch() == nil)
        guard case .success = wait(&state, for: 0, "a", log) else {
            Issue.record("an in-memory answer waited")
            return
        }
        #expect(state.durableSeq == 1)
    }
}

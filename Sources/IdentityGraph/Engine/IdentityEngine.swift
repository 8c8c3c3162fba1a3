import Foundation
import LMDB

/// The one owner of the contact graph: answers identify and look-ups, and makes every answer
/// durable before it is given.
///
/// All graph work runs inside one short critical section, so requests are linearizable in the
/// order they take the lock. Changed rows go into the *open batch*; a dedicated writer thread
/// commits each batch in one LMDB transaction (one fsync) and only then releases the answers
/// that depend on it. While one batch commits, the next gathers: a burst of N requests costs
/// about one fsync, not N (group commit). A request that changes nothing waits only for the
/// newest batch that changed the profile it reports, if that batch has not reached the disk yet.
///
/// When a commit fails (a full disk, an I/O error) the engine stops accepting changes, fails
/// the requests waiting on it with ``StorageError/Kind-swift.enum/unavailable``, and retries the
/// batch with a back-off; once a retry succeeds it accepts changes again. It never answers for
/// data that is not on disk. Changes it made in memory but never acknowledged are committed by
/// the retry, or are gone after a restart; either way no client was told they were kept.
public final class IdentityEngine: Sendable {
    /// Settings of an engine with a store.
    public struct Options: Sendable {
        /// The first size of the memory map; it doubles whenever it fills.
        public var initialMapSize: Int
        /// Sync every commit to disk before answering (the default). `false` is the relaxed mode:
        /// answers go out after the commit but before the fsync, so a crash of the machine (not
        /// just of the process) may lose the last moments of acknowledged changes.
        public var durable: Bool
        /// Called on the writer thread when a commit fails and when the store recovers.
        public var onStorageEvent: (@Sendable (StorageEvent) -> Void)?

        public init(
            initialMapSize: Int = 64 << 20,
            durable: Bool = true,
            onStorageEvent: (@Sendable (StorageEvent) -> Void)? = nil
        ) {
            self.initialMapSize = initialMapSize
            self.durable = durable
            self.onStorageEvent = onStorageEvent
        }
    }

    /// Something operators want to hear about the store.
    public enum StorageEvent: Sendable {
        case writeFailed(StorageError)
        case recovered
    }

    /// Counts, for reports and benchmarks.
    public struct Statistics: Sendable, Hashable {
        public var contacts: Int
        public var profiles: Int
        /// Write transactions committed since the engine opened (each one fsync when durable).
        public var commits: Int
    }

    private struct Waiter {
        var batch: UInt64
        var resume: @Sendable (Result<Void, StorageError>) -> Void
    }

    private struct State {
        var graph = ContactGraph()
        /// The newest timestamp issued; time never goes backwards for the graph.
        var clock: Int64 = 0
        /// Rows changed since the last batch was taken by the writer.
        var openBatch = RowBatch()
        var openBatchNumber: UInt64 = 1
        /// The newest batch that holds changes; nothing newer has anything to wait for.
        var lastChangedBatch: UInt64 = 0
        /// For each profile changed by a batch not yet durable, by primary: the newest such batch.
        /// An answer about that profile waits for it; answers about other profiles need not.
        /// Pruned at every commit, so it holds only the profiles of the batches in flight.
        var pendingProfiles: [UInt32: UInt64] = [:]
        var durableBatch: UInt64 = 0
        /// Ordered by batch: each is registered in the same critical section that picks its batch.
        var waiters: [Waiter] = []
        var failure: StorageError?
        var commits = 0
        var writerIdle = true
        var closed = false
        var changed: [UInt32] = []
    }

    private let state: Protected<State>
    private let store: ContactStore?
    private let options: Options
    private let writerWakeup = DispatchSemaphore(value: 0)
    private let writerFinished = DispatchSemaphore(value: 0)

    /// An engine that keeps everything in memory only: for tests and benchmarks of the algorithm.
    public init() {
        state = Protected(State())
        store = nil
        options = Options()
    }

    /// Opens the store in `dataDirectory` (creating it when missing), rebuilds the graph from
    /// every stored row, and starts the writer.
    public init(dataDirectory: String, options: Options = Options()) throws(StorageError) {
        let store = try ContactStore(
            directory: dataDirectory, mapSize: options.initialMapSize, durable: options.durable
        )
        var initial = State()
        try store.load(into: &initial.graph)
        initial.clock = initial.graph.latestTimestamp
        self.state = Protected(initial)
        self.store = store
        self.options = options
        let thread = Thread { [self] in runWriter(store) }
        thread.name = "identity-graph writer"
        thread.start()
    }

    // MARK: - Identify

    /// Identifies the person behind `request` (SPEC.md section 4) and returns their profile once
    /// every change it reports is on disk. Throws when the store cannot take the change now.
    public func identify(_ request: IdentifyRequest) async throws(StorageError) -> Profile {
        let result = await withCheckedContinuation { continuation in
            identify(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``identify(_:)`` for callers that are not async (event loops): `completion` runs once, on the
    /// caller's thread when nothing has to be waited for, else on the writer thread.
    public func identify(
        _ request: IdentifyRequest,
        completion: @escaping @Sendable (Result<Profile, StorageError>) -> Void
    ) {
        identify(request, answer: { graph, primary in graph.profile(primary: primary) }, completion: completion)
    }

    /// Identify for the transports: appends the profile object's JSON to `writer` (which holds
    /// whatever the answer starts with) straight from the index, without building a ``Profile``,
    /// and completes with it, as ``identify(_:completion:)`` does.
    public func identify(
        _ request: IdentifyRequest,
        appendingProfileTo writer: JSONWriter,
        completion: @escaping @Sendable (Result<JSONWriter, StorageError>) -> Void
    ) {
        identify(
            request,
            answer: { graph, primary in
                var writer = writer
                graph.writeProfileJSON(primary: primary, into: &writer)
                return writer
            },
            completion: completion
        )
    }

    /// The whole identify response body, `{"contact":{...}}`, written straight from the index (the
    /// HTTP answer), once what it reports is on disk.
    public func identifyResponseBody(_ request: IdentifyRequest) async throws(StorageError) -> [UInt8] {
        let result = await withCheckedContinuation { continuation in
            identify(
                request,
                answer: { graph, primary in
                    ProfileJSON.responseBody { graph.writeProfileJSON(primary: primary, into: &$0) }
                },
                completion: { continuation.resume(returning: $0) }
            )
        }
        return try result.get()
    }

    private func identify<Answer: Sendable>(
        _ request: IdentifyRequest,
        answer: (ContactGraph, UInt32) -> Answer,
        completion: @escaping @Sendable (Result<Answer, StorageError>) -> Void
    ) {
        let outcome = state.withLock { state -> Outcome<Answer> in
            if state.closed { return .failed(StorageError(.closed, "the engine is closed")) }
            if let failure = state.failure, state.graph.wouldChange(request) {
                return .failed(StorageError(.unavailable, "the store is not accepting changes: \(failure.message)"))
            }
            state.changed.removeAll(keepingCapacity: true)
            let primary = state.graph.identify(request, now: Self.tick(&state.clock), changed: &state.changed)
            let value = answer(state.graph, primary)
            guard store != nil else { return .ready(value) }
            if !state.changed.isEmpty {
                for id in state.changed { state.graph.encodeRow(id, into: &state.openBatch) }
                state.lastChangedBatch = state.openBatchNumber
                // A merge folds the loser's pending changes into this profile; the open batch is the
                // newest of them all.
                state.pendingProfiles[primary] = state.openBatchNumber
            }
            let batch = state.pendingProfiles[primary] ?? 0
            return Self.await(batch, &state, value: value, completion: completion)
        }
        finish(outcome, completion)
    }

    // MARK: - Look-ups

    /// The record of contact `id`, or `nil` when there is none. Waits, like identify, until what it
    /// reports is on disk.
    public func contact(id: Int) async throws(StorageError) -> Contact? {
        let result = await withCheckedContinuation { continuation in
            contact(id: id) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``contact(id:)`` with a completion, for event loops.
    public func contact(id: Int, completion: @escaping @Sendable (Result<Contact?, StorageError>) -> Void) {
        read(about: id, { $0.contact(id: id) }, completion: completion)
    }

    /// The profile holding contact `id`, or `nil` when there is no such contact.
    public func profile(containing id: Int) async throws(StorageError) -> Profile? {
        let result = await withCheckedContinuation { continuation in
            read(about: id, { $0.profile(containing: id) }) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Every contact, in id order, once all of them are durable (for checks and tests: it copies
    /// the whole graph).
    public func allContacts() async throws(StorageError) -> [Contact] {
        let result = await withCheckedContinuation { continuation in
            read(about: nil, { graph in (0..<graph.contactCount).map { graph.contact(id: $0 + 1)! } }) {
                continuation.resume(returning: $0)
            }
        }
        return try result.get()
    }

    /// The number of contacts and profiles.
    public var statistics: Statistics {
        state.withLock {
            Statistics(contacts: $0.graph.contactCount, profiles: $0.graph.profileCount, commits: $0.commits)
        }
    }

    /// Reads the graph with `body` and completes once what it read is durable: what the profile of
    /// contact `id` depends on, or, with no `id`, everything.
    private func read<T: Sendable>(
        about id: Int?,
        _ body: (ContactGraph) -> T,
        completion: @escaping @Sendable (Result<T, StorageError>) -> Void
    ) {
        let outcome = state.withLock { state -> Outcome<T> in
            if state.closed { return .failed(StorageError(.closed, "the engine is closed")) }
            let value = body(state.graph)
            var batch = state.lastChangedBatch
            if let id {
                batch = 0
                if id >= 1 && id <= state.graph.contactCount {
                    batch = state.pendingProfiles[state.graph.primary(of: UInt32(id))] ?? 0
                }
            }
            return Self.await(batch, &state, value: value, completion: completion)
        }
        finish(outcome, completion)
    }

    // MARK: - Snapshots and shutdown

    /// Writes a consistent, compacted copy of the store into `directory` (which must not exist or be
    /// empty) while requests go on. The copy holds every change acknowledged before the call.
    public func snapshot(to directory: String) throws(StorageError) {
        guard let store else { throw StorageError(.cannotOpen, "an in-memory engine has no store to copy") }
        try store.copy(to: directory)
    }

    /// Stops taking requests, commits what is pending, waits for the writer and flushes the store.
    /// Requests after this fail with ``StorageError/Kind-swift.enum/closed``. Blocks the caller
    /// for at most the last commit.
    public func close() {
        let wake = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.closed = true
            let wasIdle = state.writerIdle
            state.writerIdle = false
            return wasIdle
        }
        guard let store else { return }
        if wake { writerWakeup.signal() }
        writerFinished.wait()
        writerFinished.signal()  // later calls return at once
        try? store.sync()
    }

    /// Makes the next `count` commits fail as a full disk would (for tests of the failure path).
    func injectWriteFailures(_ count: Int) {
        store?.injectedFailures.withLock { $0 = count }
    }

    /// The size of the store's memory map now (it grows as the store fills); 0 in memory.
    var mapSize: Int { store?.environment.mapSize ?? 0 }

    // MARK: - Waiting for durability

    private enum Outcome<T> {
        case ready(T)
        case failed(StorageError)
        case waiting(wakeWriter: Bool)
    }

    /// Decides, inside the critical section, whether an answer computed now can go out at once or
    /// must wait for `batch` to be durable; registers the waiter in the latter case.
    private static func await<T: Sendable>(
        _ batch: UInt64,
        _ state: inout State,
        value: T,
        completion: @escaping @Sendable (Result<T, StorageError>) -> Void
    ) -> Outcome<T> {
        if batch <= state.durableBatch { return .ready(value) }
        if let failure = state.failure {
            return .failed(StorageError(.unavailable, "the store is not accepting changes: \(failure.message)"))
        }
        state.waiters.append(Waiter(batch: batch) { result in completion(result.map { value }) })
        let wake = state.writerIdle && !state.openBatch.isEmpty
        if wake { state.writerIdle = false }
        return .waiting(wakeWriter: wake)
    }

    private func finish<T>(_ outcome: Outcome<T>, _ completion: @Sendable (Result<T, StorageError>) -> Void) {
        switch outcome {
        case .ready(let value): completion(.success(value))
        case .failed(let error): completion(.failure(error))
        case .waiting(let wake): if wake { writerWakeup.signal() }
        }
    }

    /// The clock for new and changed rows: wall time in milliseconds, never earlier than before.
    private static func tick(_ clock: inout Int64) -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        clock = max(clock, milliseconds)
        return clock
    }

    // MARK: - The writer

    private func runWriter(_ store: ContactStore) {
        while true {
            writerWakeup.wait()
            while let (rows, batch) = takeBatch() {
                commit(rows, batch: batch, to: store)
            }
            if state.withLock({ $0.closed && $0.openBatch.isEmpty }) { break }
        }
        writerFinished.signal()
    }

    /// Takes the open batch for committing, or marks the writer idle when there is none.
    private func takeBatch() -> (RowBatch, UInt64)? {
        state.withLock { state in
            guard !state.openBatch.isEmpty else {
                state.writerIdle = true
                return nil
            }
            let rows = state.openBatch
            state.openBatch = RowBatch()
            let batch = state.openBatchNumber
            state.openBatchNumber += 1
            return (rows, batch)
        }
    }

    private func commit(_ rows: RowBatch, batch: UInt64, to store: ContactStore) {
        var backoff = 0.05
        while true {
            do {
                try store.write(rows)
                break
            } catch {
                let (failed, closed) = state.withLock { state in
                    state.failure = error
                    let failed = state.waiters
                    state.waiters.removeAll()
                    return (failed, state.closed)
                }
                options.onStorageEvent?(.writeFailed(error))
                let unavailable = StorageError(.unavailable, "the store could not commit: \(error.message)")
                for waiter in failed { waiter.resume(.failure(unavailable)) }
                // Closing: nobody waits any more for these unacknowledged rows; a few tries, then give up.
                if closed && backoff > 0.5 { return }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
        let (ready, recovered) = state.withLock { state in
            let recovered = state.failure != nil
            state.failure = nil
            state.durableBatch = batch
            state.commits += 1
            state.pendingProfiles = state.pendingProfiles.filter { $0.value > batch }
            let count = state.waiters.prefix { $0.batch <= batch }.count
            let ready = Array(state.waiters.prefix(count))
            state.waiters.removeFirst(count)
            return (ready, recovered)
        }
        if recovered { options.onStorageEvent?(.recovered) }
        for waiter in ready { waiter.resume(.success(())) }
    }
}

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
        /// Called when the store is upgraded, on the writer thread when a commit fails, and when the
        /// store recovers.
        public var onStorageEvent: (@Sendable (StorageEvent) -> Void)?
        /// The guards against over-merging; ``IdentityEngine/updateGuards(_:)`` replaces them.
        public var guards: Guards
        /// How many change events to keep, the newest (SPEC.md section 13, `--changes-retain`).
        public var changesRetained: Int
        /// Called on the writer thread after each commit with the rows it wrote and the seconds it
        /// took, fsync included (for metrics).
        public var onCommit: (@Sendable (_ rows: Int, _ seconds: Double) -> Void)?

        public init(
            initialMapSize: Int = 64 << 20,
            durable: Bool = true,
            guards: Guards = .none,
            changesRetained: Int = 10_000_000,
            onStorageEvent: (@Sendable (StorageEvent) -> Void)? = nil,
            onCommit: (@Sendable (_ rows: Int, _ seconds: Double) -> Void)? = nil
        ) {
            self.initialMapSize = initialMapSize
            self.durable = durable
            self.guards = guards
            self.changesRetained = changesRetained
            self.onCommit = onCommit
            self.onStorageEvent = onStorageEvent
        }
    }

    /// Something operators want to hear about the store.
    public enum StorageEvent: Sendable {
        /// A store of an older format was upgraded in place, once; `links` links were derived.
        case upgraded(from: String, to: String, links: Int)
        case writeFailed(StorageError)
        case recovered
    }

    /// Counts, for reports and benchmarks.
    public struct Statistics: Sendable, Hashable {
        public var contacts: Int
        public var profiles: Int
        /// Write transactions committed since the engine opened (each one fsync when durable).
        public var commits: Int
        /// The newest durable change event.
        public var latestSeq: UInt64
        /// Values identify held back since the engine opened, by field and then reason.
        public var ignored: [String: [String: Int]]
    }

    private struct Waiter {
        var batch: UInt64
        var resume: @Sendable (Result<Void, EngineError>) -> Void
    }

    private struct State {
        var core: EngineState
        /// Ordered by batch: each is registered in the same critical section that picks its batch.
        var waiters: [Waiter] = []
        var failure: StorageError?
        var commits = 0
        var writerIdle = true
        var closed = false
    }

    private let state: Protected<State>
    private let store: ContactStore?
    private let options: Options
    private let notifier: ChangeNotifier
    private let writerWakeup = DispatchSemaphore(value: 0)
    private let writerFinished = DispatchSemaphore(value: 0)

    /// An engine that keeps everything in memory only: for tests and benchmarks of the algorithm.
    public init(options: Options = Options()) {
        var core = EngineState(persistent: false)
        core.guards = options.guards
        core.memoryFeed = EventLog(retained: options.changesRetained)
        state = Protected(State(core: core))
        store = nil
        notifier = ChangeNotifier(latest: 0)
        self.options = options
    }

    /// Opens the store in `dataDirectory` (creating it when missing), rebuilds the graph from
    /// every stored row, and starts the writer.
    public init(dataDirectory: String, options: Options = Options()) throws(StorageError) {
        let store = try ContactStore(
            directory: dataDirectory, mapSize: options.initialMapSize, durable: options.durable,
            changesRetained: UInt64(max(options.changesRetained, 1))
        )
        var core = EngineState(persistent: true)
        try store.load(into: &core.graph)
        core.clock = core.graph.latestTimestamp
        core.guards = options.guards
        core.nextSeq = store.newestSeq + 1
        core.durableSeq = store.newestSeq
        if store.needsLinkUpgrade {
            var changes = GraphChanges()
            let added = core.graph.deriveMissingLinks(now: core.clock, changes: &changes)
            var batch = RowBatch()
            core.graph.encode(changes, into: &batch)
            try store.completeUpgrade(batch)
            options.onStorageEvent?(.upgraded(from: "v1", to: "v2", links: added))
        }
        self.notifier = ChangeNotifier(latest: core.durableSeq)
        self.state = Protected(State(core: core))
        self.store = store
        self.options = options
        let thread = Thread { [self] in runWriter(store) }
        thread.name = "identity-graph writer"
        thread.start()
    }

    // MARK: - Identify

    /// Identifies the person behind `request` (SPEC.md sections 4 and 10) and returns their profile
    /// once every change it reports is on disk.
    public func identify(_ request: IdentifyRequest) async throws(EngineError) -> Profile {
        let result = await withCheckedContinuation { continuation in
            identify(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``identify(_:)`` for callers that are not async (event loops): `completion` runs once, on the
    /// caller's thread when nothing has to be waited for, else on the writer thread.
    public func identify(
        _ request: IdentifyRequest, completion: @escaping @Sendable (Result<Profile, EngineError>) -> Void
    ) {
        perform(completion) { state, canWrite throws(EngineError) in
            let (primary, _, wait) = try state.identify(request, canWrite: canWrite)
            return (state.graph.profile(primary: primary), wait)
        }
    }

    /// Identify, or with `dryRun` a dry run of it (SPEC.md section 9), for the transports: appends
    /// `PROFILE`, then `,"dryRun":{...}` for a dry run and `,"ignored":[...]` when values were held
    /// back, to `writer` (which holds whatever the answer starts with), straight from the index, and
    /// completes with it once what it reports is on disk. The caller closes the answer.
    public func identify(
        _ request: IdentifyRequest,
        dryRun: Bool = false,
        appendingProfileTo writer: JSONWriter,
        completion: @escaping @Sendable (Result<JSONWriter, EngineError>) -> Void
    ) {
        perform(completion) { state, canWrite throws(EngineError) in
            var writer = writer
            if dryRun {
                let wait = try state.dryRun(request, into: &writer)
                return (writer, wait)
            }
            let (primary, ignored, wait) = try state.identify(request, canWrite: canWrite)
            state.graph.writeProfileJSON(primary: primary, into: &writer)
            EngineState.write(ignored, into: &writer)
            return (writer, wait)
        }
    }

    /// The whole identify response body, `{"contact":{...}}` (with `dryRun` and `ignored` when they
    /// apply), written straight from the index, once what it reports is on disk.
    public func identifyResponseBody(_ request: IdentifyRequest, dryRun: Bool = false) async throws(EngineError)
        -> [UInt8]
    {
        var head = JSONWriter()
        head.raw("{\"contact\":")
        let result = await withCheckedContinuation { continuation in
            identify(request, dryRun: dryRun, appendingProfileTo: head) { continuation.resume(returning: $0) }
        }
        var writer = try result.get()
        writer.raw("}")
        return writer.bytes
    }

    // MARK: - Look-ups

    /// The record of contact `id` (a tombstone for an erased one), or `nil` when there is none.
    /// Waits, like identify, until what it reports is on disk.
    public func contact(id: Int) async throws(EngineError) -> Contact? {
        let result = await withCheckedContinuation { continuation in
            contact(id: id) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``contact(id:)`` with a completion, for event loops.
    public func contact(id: Int, completion: @escaping @Sendable (Result<Contact?, EngineError>) -> Void) {
        perform(completion) { state, _ in (state.graph.contact(id: id), state.pendingBatch(about: id)) }
    }

    /// The profile holding live contact `id`, or `nil` when there is no such contact or it is erased.
    public func profile(containing id: Int) async throws(EngineError) -> Profile? {
        try await run { state, _ in (state.graph.profile(containing: id), state.pendingBatch(about: id)) }
    }

    /// `{"contact":{...}}`: the profile holding live contact `id` (SPEC.md section 9); throws
    /// ``EngineError/notFound(_:)`` or ``EngineError/erased(_:)``.
    public func profileResponseBody(containing id: Int) async throws(EngineError) -> [UInt8] {
        try await run { state, _ throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.profile(containing: id, into: &writer)
            return (writer.bytes, wait)
        }
    }

    /// `{"profiles":[...]}`: the profiles holding `email` or `phoneNumber` (normalized values).
    public func lookupResponseBody(email: String?, phoneNumber: String?) async throws(EngineError) -> [UInt8] {
        var head = JSONWriter()
        head.raw("{\"profiles\":")
        let result = await withCheckedContinuation { continuation in
            lookup(email: email, phoneNumber: phoneNumber, appendingTo: head) { continuation.resume(returning: $0) }
        }
        var writer = try result.get()
        writer.raw("}")
        return writer.bytes
    }

    /// Appends `[PROFILE,...]`, the profiles holding `email` or `phoneNumber`, to `writer`; for the
    /// line protocol.
    public func lookup(
        email: String?, phoneNumber: String?, appendingTo writer: JSONWriter,
        completion: @escaping @Sendable (Result<JSONWriter, EngineError>) -> Void
    ) {
        perform(completion) { state, _ in
            var writer = writer
            let wait = state.lookup(email: email, phone: phoneNumber, into: &writer)
            return (writer, wait)
        }
    }

    /// Why contacts `from` and `to` are one person (SPEC.md section 11); throws
    /// ``EngineError/notFound(_:)`` when either does not exist.
    public func explain(from source: Int, to target: Int) async throws(EngineError) -> Explanation {
        try await run { state, _ throws(EngineError) in try state.explain(from: source, to: target) }
    }

    /// Every contact, in id order, once all of them are durable (for checks and tests: it copies
    /// the whole graph).
    public func allContacts() async throws(EngineError) -> [Contact] {
        try await contents().contacts
    }

    /// Every contact, link and keep-apart rule, once all are durable (for checks and tests).
    public func contents() async throws(EngineError) -> StoreContents {
        try await run { state, _ in
            let graph = state.graph
            let contents = StoreContents(
                contacts: (0..<graph.contactCount).map { graph.contact(id: $0 + 1)! },
                links: graph.storedPairs(rules: false), keepApart: graph.storedPairs(rules: true)
            )
            return (contents, state.lastChangedBatch)
        }
    }

    /// The keep-apart rules, oldest first, once every pending change is durable (rules are not
    /// tracked per profile, so this waits for the newest batch, as ``contents()`` does).
    public func keepApartRules() async throws(EngineError) -> [StoredPair] {
        try await run { state, _ in (state.keepApartRules(), state.lastChangedBatch) }
    }

    // MARK: - Erasure and unmerge

    /// What an erasure removes (SPEC.md section 12).
    public enum Erasure: Sendable {
        /// One contact: `DELETE /contacts/{id}`.
        case contact(Int)
        /// Every live contact of the profile holding this contact: `DELETE /profiles/{id}`.
        case profile(Int)
        /// These values, from every live contact that carries them: `POST /erase`.
        case values(email: String?, phoneNumber: String?)
    }

    /// Erases what `erasure` names and answers `{"erasedContactIds":[...],"profiles":[...]}` once it
    /// is on disk. Throws ``EngineError/notFound(_:)`` for an unknown contact.
    public func erase(_ erasure: Erasure) async throws(EngineError) -> [UInt8] {
        try await run { state, canWrite throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.erase(erasure, canWrite: canWrite, into: &writer)
            return (writer.bytes, wait)
        }
    }

    /// Undoes the merge that the link (`email`, `phoneNumber`) records and answers
    /// `{"profiles":[...]}`; with `keepApart`, also records a keep-apart rule for the pair.
    public func unmerge(email: String, phoneNumber: String, keepApart: Bool) async throws(EngineError) -> [UInt8] {
        try await run { state, canWrite throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.unmerge(
                email: email, phone: phoneNumber, keepApart: keepApart, canWrite: canWrite, into: &writer
            )
            return (writer.bytes, wait)
        }
    }

    /// Deletes the keep-apart rule (`email`, `phoneNumber`); throws ``EngineError/notFound(_:)``.
    public func removeKeepApart(email: String, phoneNumber: String) async throws(EngineError) {
        try await run { state, canWrite throws(EngineError) in
            ((), try state.removeKeepApart(email: email, phone: phoneNumber, canWrite: canWrite))
        }
    }

    // MARK: - The change feed

    /// A page of the change feed.
    public struct ChangesPage: Sendable {
        public var events: [ChangeEvent]
        /// The newest durable seq.
        public var latestSeq: UInt64
        /// The oldest seq still kept (0 when the feed is empty).
        public var oldestSeq: UInt64

        /// `{"changes":[...],"latestSeq":L}`, the answer of `GET /changes`.
        public var json: [UInt8] {
            var writer = JSONWriter()
            writer.raw("{\"changes\":[")
            for (index, event) in events.enumerated() {
                if index > 0 { writer.raw(",") }
                event.writeJSON(into: &writer)
            }
            writer.raw("],\"latestSeq\":")
            writer.integer(latestSeq)
            writer.raw("}")
            return writer.bytes
        }
    }

    /// The durable change events with `seq` after `after`, at most `limit`, ascending.
    public func changes(after: UInt64, limit: Int) throws(EngineError) -> ChangesPage {
        // An in-memory engine's feed is read in place, under the lock: copying it out would make the
        // next write copy the whole log.
        let (durable, memoryPage) = state.withLock { state -> (UInt64, ChangesPage?) in
            let durable = state.core.durableSeq
            guard !state.core.persistent else { return (durable, nil) }
            let feed = state.core.memoryFeed
            return (durable, ChangesPage(
                events: feed.events(after: after, limit: limit), latestSeq: durable, oldestSeq: feed.oldestSeq
            ))
        }
        if let memoryPage { return memoryPage }
        guard let store else { return ChangesPage(events: [], latestSeq: durable, oldestSeq: 0) }
        do {
            let (events, oldest) = try store.changes(after: after, limit: limit)
            // A commit may land between reading `durable` and the store: show only what was durable.
            return ChangesPage(events: events.filter { $0.seq <= durable }, latestSeq: durable, oldestSeq: oldest)
        } catch {
            throw .storage(error)
        }
    }

    /// Returns once an event newer than `seq` is durable, after `timeout`, or when
    /// ``wakeChangeWaiters()`` is called; for streams of the feed, which wait here between pages.
    public func waitForChanges(after seq: UInt64, timeout: Duration) async {
        await notifier.wait(after: seq, timeout: timeout)
    }

    /// Wakes everything waiting in ``waitForChanges(after:timeout:)`` (a server shutting down).
    public func wakeChangeWaiters() {
        notifier.wakeAll()
    }

    /// The newest durable seq.
    public var latestSeq: UInt64 {
        state.withLock { $0.core.durableSeq }
    }

    // MARK: - Guards and statistics

    /// Replaces the guards (a reload on SIGHUP); cached blocklist verdicts are dropped with the old
    /// rules. Values already stored are not changed.
    public func updateGuards(_ guards: Guards) {
        state.withLock { $0.core.guards = guards }
    }

    /// The number of contacts and profiles.
    public var statistics: Statistics {
        state.withLock {
            Statistics(
                contacts: $0.core.graph.contactCount, profiles: $0.core.graph.profileCount, commits: $0.commits,
                latestSeq: $0.core.durableSeq, ignored: $0.core.ignoredCounts
            )
        }
    }

    // MARK: - Running operations

    /// Runs `body` on the state inside the critical section and completes with its answer once the
    /// batch it names is durable. `body` gets whether the store accepts changes now.
    private func perform<T: Sendable>(
        _ completion: @escaping @Sendable (Result<T, EngineError>) -> Void,
        _ body: (inout EngineState, Bool) throws(EngineError) -> (T, UInt64)
    ) {
        let outcome = state.withLock { state -> Outcome<T> in
            if state.closed { return .failed(StorageError(.closed, "the engine is closed")) }
            do throws(EngineError) {
                let (value, wait) = try body(&state.core, state.failure == nil)
                guard store != nil else { return .ready(value) }
                return Self.await(wait, &state, value: value, completion: completion)
            } catch {
                return .rejected(error)
            }
        }
        finish(outcome, completion)
    }

    private func run<T: Sendable>(_ body: (inout EngineState, Bool) throws(EngineError) -> (T, UInt64))
        async throws(EngineError) -> T
    {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, EngineError>, Never>) in
            perform({ continuation.resume(returning: $0) }, body)
        }
        return try result.get()
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
        notifier.wakeAll()
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
        case rejected(EngineError)
        case waiting(wakeWriter: Bool)
    }

    /// Decides, inside the critical section, whether an answer computed now can go out at once or
    /// must wait for `batch` to be durable; registers the waiter in the latter case.
    private static func await<T: Sendable>(
        _ batch: UInt64,
        _ state: inout State,
        value: T,
        completion: @escaping @Sendable (Result<T, EngineError>) -> Void
    ) -> Outcome<T> {
        if batch <= state.core.durableBatch { return .ready(value) }
        if let failure = state.failure {
            return .failed(StorageError(.unavailable, "the store is not accepting changes: \(failure.message)"))
        }
        state.waiters.append(Waiter(batch: batch) { result in completion(result.map { value }) })
        let wake = state.writerIdle && !state.core.openBatch.isEmpty
        if wake { state.writerIdle = false }
        return .waiting(wakeWriter: wake)
    }

    private func finish<T>(_ outcome: Outcome<T>, _ completion: @Sendable (Result<T, EngineError>) -> Void) {
        switch outcome {
        case .ready(let value): completion(.success(value))
        case .failed(let error): completion(.failure(.storage(error)))
        case .rejected(let error): completion(.failure(error))
        case .waiting(let wake): if wake { writerWakeup.signal() }
        }
    }

    // MARK: - The writer

    private func runWriter(_ store: ContactStore) {
        while true {
            writerWakeup.wait()
            while let (rows, batch, seq) = takeBatch() {
                commit(rows, batch: batch, seq: seq, to: store)
            }
            if state.withLock({ $0.closed && $0.core.openBatch.isEmpty }) { break }
        }
        writerFinished.signal()
    }

    /// Takes the open batch for committing, or marks the writer idle when there is none.
    private func takeBatch() -> (RowBatch, UInt64, UInt64)? {
        state.withLock { state in
            guard !state.core.openBatch.isEmpty else {
                state.writerIdle = true
                return nil
            }
            let rows = state.core.openBatch
            state.core.openBatch = RowBatch()
            let batch = state.core.openBatchNumber
            state.core.openBatchNumber += 1
            // Every event recorded so far is in this batch or an earlier one.
            return (rows, batch, state.core.nextSeq - 1)
        }
    }

    private func commit(_ rows: RowBatch, batch: UInt64, seq: UInt64, to store: ContactStore) {
        var backoff = 0.05
        let started = DispatchTime.now().uptimeNanoseconds
        while true {
            do {
                try store.write(rows)
                options.onCommit?(rows.count, Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
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
                for waiter in failed { waiter.resume(.failure(.storage(unavailable))) }
                // Closing: nobody waits any more for these unacknowledged rows; a few tries, then give up.
                if closed && backoff > 0.5 { return }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
        let (ready, recovered) = state.withLock { state in
            let recovered = state.failure != nil
            state.failure = nil
            state.core.durableBatch = batch
            state.core.durableSeq = max(state.core.durableSeq, seq)
            state.commits += 1
            state.core.pendingProfiles = state.core.pendingProfiles.filter { $0.value > batch }
            let count = state.waiters.prefix { $0.batch <= batch }.count
            let ready = Array(state.waiters.prefix(count))
            state.waiters.removeFirst(count)
            return (ready, recovered)
        }
        if recovered { options.onStorageEvent?(.recovered) }
        for waiter in ready { waiter.resume(.success(())) }
        notifier.publish(seq)
    }
}

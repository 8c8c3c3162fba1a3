import Foundation
import LMDB

/// The one owner of the contact graph: answers identify and look-ups, and makes every answer
/// durable before it is given.
///
/// An actor on a thread of its own (``EngineExecutor``): all graph work runs there, one call at a
/// time, so requests are linearizable in the order they reach it. The work itself is the
/// synchronous ``EngineState``; this type is the thin layer that owns it. HTTP makes one call per
/// request; the line protocol hands over every request of one channel read in one call
/// (``submit(_:completion:)``) and gets all their answers back at once.
///
/// Changed rows go into the *open batch*; a ``GroupCommitWriter`` thread commits each batch in one
/// LMDB transaction (one fsync), then reports once, and that one report releases every answer that
/// depended on the batch. While one batch commits, the next gathers: a burst of N requests costs
/// about one fsync, not N (group commit). Nothing awaits inside a write transaction: the writer
/// never awaits at all. A request that changes nothing waits only for the newest batch that
/// changed the profile it reports, if that batch has not reached the disk yet.
///
/// When a commit fails (a full disk, an I/O error) the engine stops accepting changes, fails
/// the requests waiting on it with ``StorageError/Kind-swift.enum/unavailable``, and retries the
/// batch with a back-off; once a retry succeeds it accepts changes again. It never answers for
/// data that is not on disk. Changes it made in memory but never acknowledged are committed by
/// the retry, or are gone after a restart; either way no client was told they were kept.
public actor IdentityEngine {
    /// Settings of an engine with a store.
    public struct Options: Sendable {
        /// The first size of the memory map; it doubles whenever it fills.
        public var initialMapSize: Int
        /// Sync every commit to disk before answering (the default). `false` is the relaxed mode:
        /// answers go out after the commit but before the fsync, so a crash of the machine (not
        /// just of the process) may lose the last moments of acknowledged changes.
        public var durable: Bool
        /// Called when the store is upgraded, and on the engine's thread when a commit fails and when
        /// the store recovers.
        public var onStorageEvent: (@Sendable (StorageEvent) -> Void)?
        /// The guards against over-merging; ``IdentityEngine/updateGuards(_:)`` replaces them.
        public var guards: Guards
        /// How many change events to keep, the newest (SPEC.md section 13, `--changes-retain`).
        public var changesRetained: Int
        /// Called on the engine's thread after each commit with the rows it wrote and the seconds it
        /// took, fsync included (for metrics).
        public var onCommit: (@Sendable (_ rows: Int, _ seconds: Double) -> Void)?
        /// Cluster mode (SPEC.md section 17): where a leader's batches go before they are acknowledged.
        /// With it the engine starts as a follower, refusing changes until ``IdentityEngine/lead(epoch:until:)``.
        public var replicator: (any Replicator)?
        /// An index image in memory to load instead of the data directory's image file: the one a join
        /// received with its checkpoint. Loaded only if it matches the store (else the index is rebuilt,
        /// as for a file), and not kept: the engine lets go of it once it has opened.
        public var image: IndexImageBytes?

        public init(
            initialMapSize: Int = 64 << 20,
            durable: Bool = true,
            guards: Guards = .none,
            changesRetained: Int = 10_000_000,
            onStorageEvent: (@Sendable (StorageEvent) -> Void)? = nil,
            onCommit: (@Sendable (_ rows: Int, _ seconds: Double) -> Void)? = nil,
            replicator: (any Replicator)? = nil,
            image: IndexImageBytes? = nil
        ) {
            self.replicator = replicator
            self.image = image
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
        /// Cluster mode: the log refused a batch of `epoch`, since another server took the lease.
        case fenced(epoch: Int64)
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

    /// The graph and its bookkeeping; every operation on it runs on the engine's thread.
    var state: EngineState
    private var closed = false
    /// Entries into the engine (one per HTTP request, one per line-protocol channel read), for tests.
    public private(set) var calls = 0

    private nonisolated let executor: EngineExecutor
    nonisolated let store: ContactStore?
    private nonisolated let writer: GroupCommitWriter?
    nonisolated let options: Options
    nonisolated let notifier: ChangeNotifier
    /// Waiting for the writer to report its batch, to rebuild once it is idle (cluster mode).
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// Where the index came from when the store was opened: its saved image, or a rebuild and why.
    /// An in-memory engine has no image: `.rebuilt(.noImage)`.
    public nonisolated let indexOrigin: IndexOrigin
    private nonisolated let imageSave = Protected<Result<Int, StorageError>?>(nil)

    /// The engine runs on a thread of its own (see ``EngineExecutor``).
    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    /// An engine that keeps everything in memory only: for tests and benchmarks of the algorithm.
    public init(options: Options = Options()) {
        var core = EngineState(persistent: false)
        core.guards = options.guards
        core.memoryFeed = EventLog(retained: options.changesRetained)
        state = core
        store = nil
        writer = nil
        indexOrigin = .rebuilt(.noImage)
        notifier = ChangeNotifier(latest: 0)
        executor = EngineExecutor(name: "identity-graph engine")
        self.options = options
    }

    /// Opens the store in `dataDirectory` (creating it when missing), loads the graph from the index
    /// image of the last clean stop when it matches the store or else rebuilds it from every stored
    /// row (``indexOrigin`` says which), and starts the writer.
    public init(dataDirectory: String, options: Options = Options()) throws(StorageError) {
        let store = try ContactStore(
            directory: dataDirectory, mapSize: options.initialMapSize, durable: options.durable,
            changesRetained: UInt64(max(options.changesRetained, 1))
        )
        var (core, upgradedLinks, origin) = try EngineState.opening(store, guards: options.guards, image: options.image)
        // (The image's bytes are the graph's now: not held for the engine's life.)
        var options = options
        options.image = nil
        self.indexOrigin = origin
        if let upgradedLinks { options.onStorageEvent?(.upgraded(from: "v1", to: "v2", links: upgradedLinks)) }
        core.clustered = options.replicator != nil
        let writer = GroupCommitWriter(store: store, replicator: options.replicator)
        self.notifier = ChangeNotifier(latest: core.durableSeq)
        self.state = core
        self.store = store
        self.writer = writer
        self.options = options
        let executor = EngineExecutor(name: "identity-graph engine")
        self.executor = executor
        // The writer reports on its thread; one hop per commit brings the report to the engine.
        writer.start { [weak self] report in
            guard let self else { return }
            executor.execute { self.assumeIsolated { $0.handle(report) } }
        }
    }

    deinit {
        writer?.stop()
        executor.stop()
    }

    // MARK: - Identify

    /// Identifies the person behind `request` (SPEC.md sections 4 and 10) and returns their profile
    /// once every change it reports is on disk.
    public func identify(_ request: IdentifyRequest) async throws(EngineError) -> Profile {
        try await run { state throws(EngineError) in
            let (primary, _, wait) = try state.identify(request, canWrite: state.canWrite)
            return (state.graph.profile(primary: primary), wait)
        }
    }

    /// The whole identify response body, `{"contact":{...}}` (with `dryRun` and `ignored` when they
    /// apply), written straight from the index, once what it reports is on disk. With `bitespeedCompat`
    /// the profile also carries `primaryContatctId` (see ``JSONWriter/bitespeedCompat``).
    public func identifyResponseBody(
        _ request: IdentifyRequest, dryRun: Bool = false, bitespeedCompat: Bool = false
    ) async throws(EngineError) -> [UInt8] {
        var head = JSONWriter()
        head.bitespeedCompat = bitespeedCompat
        head.raw("{\"contact\":")
        return try await run { state throws(EngineError) in
            let (writer, wait) = try Self.identify(request, dryRun: dryRun, appendingTo: head, &state)
            var body = writer
            body.raw("}")
            return (body.bytes, wait)
        }
    }

    /// Appends `PROFILE`, then `,"dryRun":{...}` for a dry run and `,"ignored":[...]` when values were
    /// held back, to `writer` (which holds whatever the answer starts with).
    private static func identify(
        _ request: IdentifyRequest, dryRun: Bool, appendingTo writer: JSONWriter, _ state: inout EngineState
    ) throws(EngineError) -> (JSONWriter, UInt64) {
        var writer = writer
        writer.reserve(256)
        if dryRun {
            let wait = try state.dryRun(request, into: &writer)
            return (writer, wait)
        }
        let (primary, ignored, wait) = try state.identify(request, canWrite: state.canWrite)
        state.graph.writeProfileJSON(primary: primary, into: &writer)
        EngineState.write(ignored, into: &writer)
        return (writer, wait)
    }

    // MARK: - Many requests in one call

    /// One request of a batch handed over with ``submit(_:completion:)``.
    public enum BatchedRequest: Sendable {
        /// Identify, or a dry run of it: appends the profile and what follows it (as
        /// ``identifyResponseBody(_:dryRun:)`` writes after `{"contact":`) to `head`.
        case identify(IdentifyRequest, dryRun: Bool, head: JSONWriter)
        /// Appends `[PROFILE,...]`, the profiles holding `email` or `phoneNumber`, to `head`.
        case lookup(email: String?, phoneNumber: String?, head: JSONWriter)
        /// The record of a contact (a tombstone for an erased one); ``EngineError/notFound(_:)`` when
        /// there is none.
        case contact(id: Int)
    }

    /// The answer to one ``BatchedRequest``.
    public enum BatchedAnswer: Sendable {
        /// The request's `head` with the answer appended; the caller closes it.
        case written(JSONWriter)
        case contact(Contact)
        case failed(EngineError)
    }

    /// Answers `requests` in order, in one hop to the engine's thread and without creating a task:
    /// for an event loop handing over all the requests of one channel read. `completion` runs once,
    /// on the engine's thread, with every answer, when every change they report is on disk.
    public nonisolated func submit(
        _ requests: [BatchedRequest], completion: @escaping @Sendable ([BatchedAnswer]) -> Void
    ) {
        executor.execute { self.assumeIsolated { $0.answer(requests, completion: completion) } }
    }

    private func answer(_ requests: [BatchedRequest], completion: @escaping @Sendable ([BatchedAnswer]) -> Void) {
        calls += 1
        var answers: [BatchedAnswer] = []
        answers.reserveCapacity(requests.count)
        var waits: [UInt64] = []
        waits.reserveCapacity(requests.count)
        for request in requests {
            if closed {
                answers.append(.failed(.storage(Self.closedError)))
                waits.append(0)
                continue
            }
            do throws(EngineError) {
                let (answer, wait) = try answer(request)
                answers.append(answer)
                waits.append(wait)
            } catch {
                answers.append(.failed(error))
                waits.append(0)
            }
        }
        // One wait for the whole read: its answers go out in order anyway, so none is held back by
        // more than the others' commit. If the commit fails, the answers that needed it fail and
        // those about durable data stand.
        let durable = state.durableBatch
        let respond = { (result: Result<Void, EngineError>) in
            guard case .failure(let error) = result else { return completion(answers) }
            completion(zip(answers, waits).map { $1 <= durable ? $0 : .failed(error) })
        }
        let outcome = state.wait(for: waits.max() ?? 0, respond)
        startCommit()
        if let outcome { respond(outcome) }
    }

    private func answer(_ request: BatchedRequest) throws(EngineError) -> (BatchedAnswer, UInt64) {
        switch request {
        case .identify(let request, let dryRun, let head):
            let (writer, wait) = try Self.identify(request, dryRun: dryRun, appendingTo: head, &state)
            return (.written(writer), wait)
        case .lookup(let email, let phoneNumber, var writer):
            let wait = state.lookup(email: email, phone: phoneNumber, into: &writer)
            return (.written(writer), wait)
        case .contact(let id):
            guard let contact = state.graph.contact(id: id) else { throw .notFound("no contact with id \(id)") }
            return (.contact(contact), state.pendingBatch(about: id))
        }
    }

    // MARK: - Look-ups

    /// The record of contact `id` (a tombstone for an erased one), or `nil` when there is none.
    /// Waits, like identify, until what it reports is on disk.
    public func contact(id: Int) async throws(EngineError) -> Contact? {
        try await run { state in (state.graph.contact(id: id), state.pendingBatch(about: id)) }
    }

    /// The profile holding live contact `id`, or `nil` when there is no such contact or it is erased.
    public func profile(containing id: Int) async throws(EngineError) -> Profile? {
        try await run { state in (state.graph.profile(containing: id), state.pendingBatch(about: id)) }
    }

    /// `{"contact":{...}}`: the profile holding live contact `id` (SPEC.md section 9); throws
    /// ``EngineError/notFound(_:)`` or ``EngineError/erased(_:)``.
    public func profileResponseBody(containing id: Int) async throws(EngineError) -> [UInt8] {
        try await run { state throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.profile(containing: id, into: &writer)
            return (writer.bytes, wait)
        }
    }

    /// `{"profiles":[...]}`: the profiles holding `email` or `phoneNumber` (normalized values).
    public func lookupResponseBody(email: String?, phoneNumber: String?) async throws(EngineError) -> [UInt8] {
        try await run { state in
            var writer = JSONWriter()
            writer.raw("{\"profiles\":")
            let wait = state.lookup(email: email, phone: phoneNumber, into: &writer)
            writer.raw("}")
            return (writer.bytes, wait)
        }
    }

    /// Why contacts `from` and `to` are one person (SPEC.md section 11); throws
    /// ``EngineError/notFound(_:)`` when either does not exist.
    public func explain(from source: Int, to target: Int) async throws(EngineError) -> Explanation {
        try await run { state throws(EngineError) in try state.explain(from: source, to: target) }
    }

    /// Every contact, in id order, once all of them are durable (for checks and tests: it copies
    /// the whole graph).
    public func allContacts() async throws(EngineError) -> [Contact] {
        try await contents().contacts
    }

    /// Every contact, link and keep-apart rule, once all are durable (for checks and tests).
    public func contents() async throws(EngineError) -> StoreContents {
        try await run { state in
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
        try await run { state in (state.keepApartRules(), state.lastChangedBatch) }
    }

    // MARK: - Erasure and unmerge

    /// What an erasure removes (SPEC.md section 12).
    public enum Erasure: Sendable, Equatable {
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
        try await run { state throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.erase(erasure, canWrite: state.canWrite, into: &writer)
            return (writer.bytes, wait)
        }
    }

    /// Undoes the merge that the link (`email`, `phoneNumber`) records and answers
    /// `{"profiles":[...]}`; with `keepApart`, also records a keep-apart rule for the pair.
    public func unmerge(email: String, phoneNumber: String, keepApart: Bool) async throws(EngineError) -> [UInt8] {
        try await run { state throws(EngineError) in
            var writer = JSONWriter()
            let wait = try state.unmerge(
                email: email, phone: phoneNumber, keepApart: keepApart, canWrite: state.canWrite, into: &writer
            )
            return (writer.bytes, wait)
        }
    }

    /// Deletes the keep-apart rule (`email`, `phoneNumber`); throws ``EngineError/notFound(_:)``.
    public func removeKeepApart(email: String, phoneNumber: String) async throws(EngineError) {
        try await run { state throws(EngineError) in
            ((), try state.removeKeepApart(email: email, phone: phoneNumber, canWrite: state.canWrite))
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

    /// The durable change events with `seq` after `after`, at most `limit`, ascending. A store's
    /// feed is read off the engine's thread, in a read transaction of its own.
    public nonisolated func changes(after: UInt64, limit: Int) async throws(EngineError) -> ChangesPage {
        let (durable, memoryPage) = await memoryChanges(after: after, limit: limit)
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

    /// The newest durable seq, and for an in-memory engine the page itself, read in place: copying
    /// the feed out would make the next write copy the whole log.
    private func memoryChanges(after: UInt64, limit: Int) -> (UInt64, ChangesPage?) {
        calls += 1
        let durable = state.durableSeq
        guard !state.persistent else { return (durable, nil) }
        let feed = state.memoryFeed
        return (durable, ChangesPage(
            events: feed.events(after: after, limit: limit), latestSeq: durable, oldestSeq: feed.oldestSeq
        ))
    }

    /// Returns once an event newer than `seq` is durable, after `timeout`, or when
    /// ``wakeChangeWaiters()`` is called; for streams of the feed, which wait here between pages.
    public nonisolated func waitForChanges(after seq: UInt64, timeout: Duration) async {
        await notifier.wait(after: seq, timeout: timeout)
    }

    /// Wakes everything waiting in ``waitForChanges(after:timeout:)`` (a server shutting down).
    public nonisolated func wakeChangeWaiters() {
        notifier.wakeAll()
    }

    /// Why the store refuses changes now (a commit failed and is being retried, SPEC.md section 5), or
    /// `nil` while it accepts them.
    public var refusal: String? {
        state.refusal?.message
    }

    /// The newest durable seq.
    public var latestSeq: UInt64 {
        state.durableSeq
    }

    // MARK: - Guards and statistics

    /// Replaces the guards (a reload on SIGHUP); cached blocklist verdicts are dropped with the old
    /// rules. Values already stored are not changed.
    public func updateGuards(_ guards: Guards) {
        state.guards = guards
    }

    /// The number of contacts and profiles.
    public var statistics: Statistics {
        Statistics(
            contacts: state.graph.contactCount, profiles: state.graph.profileCount, commits: state.commits,
            latestSeq: state.durableSeq, ignored: state.ignoredCounts
        )
    }

    /// Bytes each structure of the index holds, for reports of where memory goes (see
    /// `benchmarks/`): the contacts' arrays, the value tables' arenas, offsets, owners and slots, and
    /// the links and keep-apart rules.
    public var indexMemory: [(structure: String, bytes: Int)] {
        state.graph.memoryBreakdown
    }

    // MARK: - Running operations

    private static let closedError = StorageError(.closed, "the engine is closed")

    /// Runs `body` on the state and returns its answer once the batch it names is durable.
    func run<T: Sendable>(_ body: (inout EngineState) throws(EngineError) -> (T, UInt64))
        async throws(EngineError) -> T
    {
        calls += 1
        if closed { throw .storage(Self.closedError) }
        let (value, wait) = try body(&state)
        var ready: Result<Void, EngineError>?
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, EngineError>, Never>) in
            ready = state.wait(for: wait) { continuation.resume(returning: $0) }
            startCommit()
            if let ready { continuation.resume(returning: ready) }
        }
        try result.get()
        return value
    }

    /// Hands the open batch to the writer when it is idle.
    func startCommit() {
        if let batch = state.takeBatch() { writer?.submit(batch) }
    }

    /// What the writer reports, on the engine's thread: once per commit, whatever the number of
    /// answers it releases.
    private func handle(_ report: GroupCommitWriter.Report) {
        switch report {
        case .committed(let batch, let seconds, let recovered):
            options.onCommit?(batch.rows.count, seconds)
            let released = state.committed(batch)
            if recovered { options.onStorageEvent?(.recovered) }
            for waiter in released { waiter.resume(.success(())) }
            notifier.publish(batch.seq)
            startCommit()
        case .failed(let error):
            let failed = state.commitFailed(error)
            options.onStorageEvent?(.writeFailed(error))
            let unavailable = EngineError.storage(
                StorageError(.unavailable, "the store could not commit: \(error.message)")
            )
            for waiter in failed { waiter.resume(.failure(unavailable)) }
        case .replicated(let batch, let recovered):
            let released = state.replicated(batch, recovered: recovered)
            if recovered && state.refusal == nil { options.onStorageEvent?(.recovered) }
            notifier.acknowledge(batch.seq)
            for waiter in released { waiter.resume(.success(())) }
            startCommit()
        case .stored(let seq, let batches, let rows, let seconds, let recovered):
            options.onCommit?(rows, seconds)
            let wasFailing = state.storeFailure != nil
            state.stored(seq: seq, batches: batches)
            if recovered && wasFailing && state.refusal == nil { options.onStorageEvent?(.recovered) }
            notifier.publish(seq)
        case .storeFailed(let error):
            state.storeFailure = error
            options.onStorageEvent?(.writeFailed(error))
        case .fenced(let batch):
            handleFenced(batch)
        }
        // A closing engine stops the writer as soon as it holds no batch, whatever freed it.
        if closed && !state.writerBusy { writer?.stop() }
        if state.writerIdle, !idleWaiters.isEmpty {
            let waiters = idleWaiters
            idleWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
        }
    }

    // MARK: - Snapshots and shutdown

    /// Writes a consistent, compacted copy of the store into `directory` (which must not exist or be
    /// empty) while requests go on. The copy holds every change acknowledged before the call.
    public nonisolated func snapshot(to directory: String) throws(StorageError) {
        guard let store else { throw StorageError(.cannotOpen, "an in-memory engine has no store to copy") }
        try store.copy(to: directory)
    }

    /// Stops taking requests, commits what is pending, waits for the writer and flushes the store.
    /// Requests after this fail with ``StorageError/Kind-swift.enum/closed``. Blocks the caller
    /// (which must not be the engine's own thread) for at most the last commit.
    /// Returns why the final flush failed, if it did (or why a commit given up at closing never reached
    /// the store), so that a shutdown never claims a flush it did not make.
    @discardableResult
    public nonisolated func close() -> StorageError? {
        precondition(!executor.isCurrent, "close() would wait for the engine's thread on that very thread")
        let marked = DispatchSemaphore(value: 0)
        executor.execute {
            self.assumeIsolated { engine in
                defer { marked.signal() }
                guard !engine.closed else { return }
                engine.closed = true
                engine.writer?.closing()
                engine.startCommit()
                if !engine.state.writerBusy { engine.writer?.stop() }
            }
        }
        marked.wait()
        guard let store, let writer else { return nil }
        writer.waitUntilFinished()
        defer { notifier.wakeAll() }
        do {
            try store.sync()
        } catch {
            return error
        }
        return saveIndexImage()
    }

    /// What the clean stop did about the index image: the bytes it saved, or why it could not save
    /// one; `nil` before ``close()``, for an in-memory engine, and when the stop was not clean (a
    /// commit had failed, or changes were left that never reached the store).
    public nonisolated var savedIndexImage: Result<Int, StorageError>? {
        imageSave.withLock { $0 }
    }

    /// Saves the index image for the next start, on the engine's thread once the writer has stopped,
    /// and only when the graph holds exactly what the store does. Returns why the store refuses changes,
    /// if it does: its last commit failed, and what it held did not reach the disk.
    private nonisolated func saveIndexImage() -> StorageError? {
        let done = DispatchSemaphore(value: 0)
        let refusal = Protected<StorageError?>(nil)
        executor.execute {
            self.assumeIsolated { engine in
                defer { done.signal() }
                let state = engine.state
                refusal.withLock { $0 = state.refusal }
                guard let store = engine.store, state.refusal == nil, state.writerIdle, state.openBatch.isEmpty,
                    state.waiting.isEmpty, state.durableSeq == store.newestSeq
                else { return }
                let outcome: Result<Int, StorageError>
                do throws(StorageError) {
                    outcome = .success(try IndexImage.save(state.graph, stamp: try store.indexStamp(), in: store.directory))
                } catch {
                    outcome = .failure(error)
                }
                engine.imageSave.withLock { $0 = outcome }
            }
        }
        done.wait()
        return refusal.withLock { $0 }
    }

    /// Makes the next `count` commits fail as a full disk would (for tests of the failure path).
    nonisolated func injectWriteFailures(_ count: Int) {
        store?.injectedFailures.withLock { $0 = count }
    }

    /// The size of the store's memory map now (it grows as the store fills); 0 in memory.
    nonisolated var mapSize: Int { store?.environment.mapSize ?? 0 }
}

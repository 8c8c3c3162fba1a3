import ConformanceSupport
import Foundation
import Testing

@testable import IdentityGraph

/// Cluster mode's engine half (SPEC.md section 17), without PostgreSQL: a leader's batches carry the
/// commands that made them, a follower that replays them ends with the same rows, ids, links, rules
/// and change events (the same export bytes), a fenced append fails its answers and rebuilds the
/// leader from its local copy, and a leader whose lease ran out on its own clock refuses changes.
/// Tests that take `startsAppends` run twice: with a log the writer's log thread appends to and waits
/// for, and with one that appends on a thread of its own (``Replicator/startAppend(_:completion:)``),
/// as the PostgreSQL log does while its connection is open.
@Suite struct ReplicationTests {
    /// Keeps every batch the leader hands to the log, in order; fences from `fenceFrom` on. With
    /// `startsAppends` it appends on a queue of its own when asked to start, and with `failingEvery` it
    /// fails every so many of those starts, so that the writer's log thread retries them.
    final class MemoryLog: Replicator, @unchecked Sendable {
        // `@unchecked`: `batches`, `fenceFrom` and `starts` are touched only with `lock` held.
        private let lock = NSLock()
        private var batches: [Replication] = []
        private var fenceFrom: UInt64?
        private let startsAppends: Bool
        private let failingEvery: Int?
        private var starts = 0
        private let appender = DispatchQueue(label: "memory log")

        init(startsAppends: Bool = false, failingEvery: Int? = nil) {
            self.startsAppends = startsAppends
            self.failingEvery = failingEvery
        }

        func startAppend(
            _ replication: Replication, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
        ) -> Bool {
            guard startsAppends else { return false }
            let failing = lock.withLock { () -> Bool in
                starts += 1
                return failingEvery.map { starts % $0 == 0 } ?? false
            }
            appender.async {
                if failing {
                    completion(.failure(ReplicationError(fenced: false, "the log did not answer")))
                } else {
                    completion(Result { try self.append(replication) })
                }
            }
            return true
        }

        /// How many appends were started without the writer's log thread.
        var started: Int { lock.withLock { starts } }

        func append(_ replication: Replication) throws {
            try lock.withLock {
                if let fenceFrom, replication.position >= fenceFrom {
                    throw ReplicationError(fenced: true, "a newer epoch holds the lease")
                }
                batches.append(replication)
            }
        }

        func fence(from position: UInt64) { lock.withLock { fenceFrom = position } }
        var all: [Replication] { lock.withLock { batches } }
    }

    static func export(_ directory: String) throws -> String {
        var bytes: [UInt8] = []
        _ = try BulkExport.run(dataDirectory: directory, format: .ndjson, chunkBytes: 4096) { bytes.append(contentsOf: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `condition` holds within `seconds`, polled without blocking a thread of the task pool.
    static func eventually(within seconds: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            if await condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// An engine on the store in `directory` that leads (epoch 1, on a lease no test outlives) and appends
    /// its batches to `log`.
    static func leader(in directory: String, log: any Replicator) async throws -> IdentityEngine {
        let leader = try IdentityEngine(dataDirectory: directory, options: .init(replicator: log))
        await leader.lead(epoch: 1, until: .now + .seconds(3600))
        return leader
    }

    /// Calls `close()`, which blocks its caller until the writer has ended, on a thread of its own rather
    /// than the pool's; the flag says whether it has returned.
    static func closeOnItsOwnThread(_ engine: IdentityEngine) -> Protected<Bool> {
        let closed = Protected(false)
        Thread {
            engine.close()
            closed.withLock { $0 = true }
        }.start()
        return closed
    }

    static func changes(_ engine: IdentityEngine) async throws -> [ChangeEvent] {
        try await engine.changes(after: 0, limit: 10_000).events
    }

    @Test(
        "a follower replaying the leader's log ends with the same export and change feed, guards included",
        arguments: [false, true]
    )
    func followerMatchesLeader(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let log = MemoryLog(startsAppends: startsAppends)
        // The leader blocks one value; the follower has no blocklist: what it replays is already screened.
        let blocklist = try Blocklist(parsing: "email blocked@x.io\n", source: "test")
        let leader = try IdentityEngine(
            dataDirectory: directory.subdirectory("leader"),
            options: .init(guards: Guards(blocklist: blocklist, limits: .none), replicator: log)
        )
        let follower = try IdentityEngine(
            dataDirectory: directory.subdirectory("follower"), options: .init(replicator: MemoryLog())
        )
        await #expect(throws: EngineError.self, "a follower accepts no changes") {
            _ = try await follower.identify(.json(#"{"email":"a@x.io"}"#))
        }
        await leader.lead(epoch: 1, until: .now + .seconds(3600))

        var generator = SeededGenerator(seed: 0x5EED_0017)
        for step in 0..<400 {
            let email = "p\(Int.random(in: 0..<40, using: &generator))@x.io"
            let phone = "\(Int.random(in: 0..<40, using: &generator))"
            switch Int.random(in: 0..<20, using: &generator) {
            case 0:
                _ = try? await leader.erase(.values(email: email, phoneNumber: nil))
            case 1:
                _ = try? await leader.erase(.contact(Int.random(in: 1...max(1, step), using: &generator)))
            case 2:
                _ = try? await leader.unmerge(email: email, phoneNumber: phone, keepApart: step % 2 == 0)
            case 3:
                try? await leader.removeKeepApart(email: email, phoneNumber: phone)
            case 4:
                _ = try await leader.identify(.json(#"{"email":"blocked@x.io","phoneNumber":"\#(phone)"}"#))
            default:
                _ = try await leader.identify(.json(#"{"email":"\#(email)","phoneNumber":"\#(phone)"}"#))
            }
        }
        let batches = log.all
        #expect(!batches.isEmpty)
        #expect(batches.map(\.position) == Array(1...UInt64(batches.count)), "log positions have gaps")
        #expect((log.started > batches.count / 2) == startsAppends, "appends went the other way")
        for batch in batches {
            try await follower.apply(batch)
        }
        #expect(await follower.logPosition == UInt64(batches.count))
        #expect(await leader.logPosition == UInt64(batches.count))
        // The feed is read from the local copy, which may lag the log (SPEC.md section 17): read it once
        // each server has applied the newest event it acknowledged, as a read given `minSeq` would.
        for engine in [leader, follower] {
            #expect(await engine.waitUntilApplied(engine.publishedSeq, timeout: .seconds(5)))
        }
        #expect(follower.publishedSeq == leader.publishedSeq)
        #expect(try await Self.changes(follower) == (try await Self.changes(leader)))
        leader.close()
        follower.close()
        let leaderExport = try Self.export(directory.subdirectory("leader"))
        #expect(!leaderExport.contains("blocked@x.io"))
        #expect(leaderExport == (try Self.export(directory.subdirectory("follower"))))
    }

    @Test("a batch applied twice is skipped, one that skips ahead is refused, a diverging replay is caught")
    func applyChecksPositions() async throws {
        let directory = TemporaryDirectory()
        let log = MemoryLog()
        let leader = try IdentityEngine(dataDirectory: directory.subdirectory("leader"), options: .init(replicator: log))
        await leader.lead(epoch: 3, until: .now + .seconds(3600))
        _ = try await leader.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))
        _ = try await leader.identify(.json(#"{"email":"b@x.io","phoneNumber":"1"}"#))
        let follower = try IdentityEngine(
            dataDirectory: directory.subdirectory("follower"), options: .init(replicator: MemoryLog())
        )
        let batches = log.all
        #expect(batches.allSatisfy { $0.epoch == 3 })
        await #expect(throws: EngineError.self) { try await follower.apply(batches.last!) }
        try await follower.apply(batches[0])
        try await follower.apply(batches[0])
        #expect(await follower.logPosition == 1)
        if batches.count > 1 {
            var wrong = batches[1]
            wrong.lastSeq += 1
            await #expect(throws: EngineError.self) { try await follower.apply(wrong) }
        }
        leader.close()
        follower.close()
    }

    @Test("batches applied together skip those held already, and stop at one that does not follow, keeping those before it")
    func applyTogether() async throws {
        let directory = TemporaryDirectory()
        let log = MemoryLog()
        let leader = try await Self.leader(in: directory.subdirectory("leader"), log: log)
        for index in 0..<5 {
            _ = try await leader.identify(.json(#"{"email":"p\#(index)@x.io","phoneNumber":"1"}"#))
        }
        let batches = log.all
        try #require(batches.count == 5, "each change awaited alone is a batch of its own")
        let follower = try IdentityEngine(
            dataDirectory: directory.subdirectory("follower"), options: .init(replicator: MemoryLog())
        )
        try await follower.apply(batches[0...1])
        // Batch 2 is held already; 4 is missing, so 5 does not follow: 3 is applied, and the error thrown.
        await #expect(throws: EngineError.self) { try await follower.apply([batches[1], batches[2], batches[4]]) }
        #expect(await follower.logPosition == 3)
        try await follower.apply(batches)
        #expect(await follower.logPosition == 5)
        #expect(await follower.waitUntilApplied(leader.publishedSeq, timeout: .seconds(5)))
        #expect(try await Self.changes(follower) == (try await Self.changes(leader)))
        leader.close()
        follower.close()
        #expect(try Self.export(directory.subdirectory("leader")) == (try Self.export(directory.subdirectory("follower"))))
    }

    @Test(
        "a fenced append fails its answer with 503, and the leader follows with only what the log holds",
        arguments: [false, true]
    )
    func fencedAppend(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let log = MemoryLog(startsAppends: startsAppends)
        let store = directory.subdirectory("leader")
        let leader = try await Self.leader(in: store, log: log)
        _ = try await leader.identify(.json(#"{"email":"kept@x.io"}"#))
        log.fence(from: 2)
        await #expect(throws: EngineError.self) {
            _ = try await leader.identify(.json(#"{"email":"lost@x.io"}"#))
        }
        #expect(await leader.leaderEpoch == nil)
        #expect(await leader.acceptsChanges == false)
        #expect(try await leader.contact(id: 1)?.email == "kept@x.io")
        #expect(try await leader.contact(id: 2) == nil, "a change the log refused is still in memory")
        #expect(await leader.logPosition == 1)
        leader.close()
        #expect(!(try Self.export(store)).contains("lost@x.io"))
    }

    @Test("an append started without the log thread that fails is retried by it: its answer fails, the log holds the batch once and in order, and changes go on")
    func startedAppendFails() async throws {
        let directory = TemporaryDirectory()
        // The second start fails: its batch goes to the log thread.
        let log = MemoryLog(startsAppends: true, failingEvery: 2)
        let leader = try await Self.leader(in: directory.path, log: log)
        _ = try await leader.identify(.json(#"{"email":"first@x.io"}"#))
        await #expect(throws: EngineError.self, "an answer whose append failed was given") {
            _ = try await leader.identify(.json(#"{"email":"retried@x.io"}"#))
        }
        let recovered = await Self.eventually(within: 10) { await leader.refusal == nil }
        try #require(recovered, "the retry never succeeded")
        _ = try await leader.identify(.json(#"{"email":"third@x.io"}"#))
        #expect(log.all.map(\.position) == [1, 2, 3])
        #expect(log.started == 3, "after a retry, appends no longer start without the log thread")
        leader.close()
        let exported = try Self.export(directory.path)
        #expect(exported.contains("first@x.io") && exported.contains("retried@x.io") && exported.contains("third@x.io"))
    }

    /// Holds every append until `release()`; with `startsAppends`, on a thread of its own.
    final class HeldLog: Replicator, @unchecked Sendable {
        // `@unchecked`: the semaphore and the counter are thread-safe; `log` is.
        private let gate = DispatchSemaphore(value: 0)
        private let arrived = Protected(0)
        private let startsAppends: Bool
        let log = MemoryLog()

        init(startsAppends: Bool) {
            self.startsAppends = startsAppends
        }

        func startAppend(
            _ replication: Replication, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
        ) -> Bool {
            guard startsAppends else { return false }
            Thread { completion(Result { try self.append(replication) }) }.start()
            return true
        }

        func append(_ replication: Replication) throws {
            arrived.withLock { $0 += 1 }
            gate.wait()
            try log.append(replication)
        }

        /// Returns once an append has arrived. It polls rather than blocks: a test that blocked a thread of
        /// the task pool could starve the very task that makes the append (the pool has one per core).
        func waitForAppend() async {
            while !arrived.withLock({ count in
                guard count > 0 else { return false }
                count -= 1
                return true
            }) {
                try? await Task.sleep(for: .milliseconds(2))
            }
        }

        func release() { gate.signal() }
    }

    @Test("a leader that stops leading with a batch in flight writes the batch it has logged, and nothing it gathered after", arguments: [false, true])
    func followDropsUnloggedChanges(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let held = HeldLog(startsAppends: startsAppends)
        let leader = try await Self.leader(in: directory.path, log: held)
        let first = Task { try await leader.identify(.json(#"{"email":"logged@x.io"}"#)) }
        await held.waitForAppend()
        // Gathered while the first batch is with the log: never logged.
        let second = Task { try await leader.identify(.json(#"{"email":"unlogged@x.io"}"#)) }
        try await Task.sleep(for: .milliseconds(50))
        let stepDown = Task { await leader.follow(reason: "test") }
        try await Task.sleep(for: .milliseconds(50))
        held.release()
        held.release()
        await stepDown.value
        #expect(try await first.value.primaryContactId == 1)
        await #expect(throws: EngineError.self) { _ = try await second.value }
        #expect(held.log.all.count == 1)
        #expect(try await leader.contact(id: 2) == nil)
        leader.close()
        let exported = try Self.export(directory.path)
        #expect(exported.contains("logged@x.io"))
        #expect(!exported.contains("unlogged@x.io"), "a change that is in no log reached the local copy")
    }

    @Test(
        "a leader acknowledges what the log holds while its local copy fails, refuses changes until the copy recovers, and the copy ends with every acknowledged change",
        arguments: [false, true]
    )
    func localCopyFailure(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let log = MemoryLog(startsAppends: startsAppends)
        let leader = try await Self.leader(in: directory.path, log: log)
        // The local copy fails until the test lets it recover (retries back off from 0.05 s to 5 s).
        leader.injectWriteFailures(1_000_000)
        let first = try await leader.identify(.json(#"{"email":"first@x.io"}"#))
        #expect(first.primaryContactId == 1, "a change in the log is acknowledged whatever the local copy does")
        #expect(log.all.count == 1)
        let reported = await Self.eventually(within: 5) { await leader.refusal != nil }
        #expect(reported, "a failing local copy is never reported")
        await #expect(throws: EngineError.self, "a change is accepted while the local copy fails") {
            _ = try await leader.identify(.json(#"{"email":"refused@x.io"}"#))
        }
        #expect(await leader.latestSeq == 0, "the feed shows what the local copy does not hold")
        leader.injectWriteFailures(0)
        #expect(await leader.waitUntilApplied(leader.publishedSeq, timeout: .seconds(15)))
        #expect(await leader.refusal == nil)
        _ = try await leader.identify(.json(#"{"email":"second@x.io"}"#))
        leader.close()
        let exported = try Self.export(directory.path)
        #expect(exported.contains("first@x.io") && exported.contains("second@x.io"))
        #expect(!exported.contains("refused@x.io"))
        #expect(log.all.count == 2)
    }

    @Test("closing a leader whose append in flight is then fenced ends, without the answer", arguments: [false, true])
    func closeWhileFenced(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let held = HeldLog(startsAppends: startsAppends)
        let leader = try await Self.leader(in: directory.path, log: held)
        let change = Task { try await leader.identify(.json(#"{"email":"late@x.io"}"#)) }
        await held.waitForAppend()
        let closed = Self.closeOnItsOwnThread(leader)
        try await Task.sleep(for: .milliseconds(100))
        held.log.fence(from: 1)
        held.release()
        let ended = await Self.eventually(within: 10) { closed.withLock { $0 } }
        try #require(ended, "close() never returned after a fenced append")
        await #expect(throws: EngineError.self) { _ = try await change.value }
        #expect(held.log.all.isEmpty)
    }

    @Test("closing a leader ends while its local copy keeps failing and the log refuses its last batch", arguments: [false, true])
    func closeWithFailingCopyAndFence(startsAppends: Bool) async throws {
        let directory = TemporaryDirectory()
        let held = HeldLog(startsAppends: startsAppends)
        let leader = try await Self.leader(in: directory.path, log: held)
        leader.injectWriteFailures(1_000_000)
        let first = Task { try await leader.identify(.json(#"{"email":"first@x.io"}"#)) }
        await held.waitForAppend()
        // Gathered while the first batch is with the log, before the local copy has failed.
        let second = Task { try await leader.identify(.json(#"{"email":"second@x.io"}"#)) }
        try await Task.sleep(for: .milliseconds(50))
        held.release()
        #expect(try await first.value.primaryContactId == 1, "a batch in the log is acknowledged")
        await held.waitForAppend()
        let reported = await Self.eventually(within: 5) { await leader.refusal != nil }
        #expect(reported, "the failing local copy is never reported")
        // The second batch is refused by the log while the engine closes: the writer must not wait for a
        // local copy that will never take the first one.
        held.log.fence(from: 2)
        let closed = Self.closeOnItsOwnThread(leader)
        try await Task.sleep(for: .milliseconds(50))
        held.release()
        // A failure ends the test here: the second answer would wait for ever too.
        let ended = await Self.eventually(within: 15) { closed.withLock { $0 } }
        try #require(ended, "close() never returned behind a failing local copy")
        await #expect(throws: EngineError.self) { _ = try await second.value }
        #expect(held.log.all.count == 1)
    }

    @Test("a leader refuses changes once its lease deadline passes on its own clock; a renewal lets it go on")
    func leaseDeadline() async throws {
        let directory = TemporaryDirectory()
        let leader = try await Self.leader(in: directory.path, log: MemoryLog())
        _ = try await leader.identify(.json(#"{"email":"a@x.io"}"#))
        // A deadline that has passed, as one does while the lease goes unrenewed.
        await leader.extendLease(until: .now - .milliseconds(1))
        #expect(await leader.acceptsChanges == false)
        await #expect(throws: EngineError.self) { _ = try await leader.identify(.json(#"{"email":"b@x.io"}"#)) }
        // Reads go on.
        #expect(try await leader.contact(id: 1) != nil)
        await leader.extendLease(until: .now + .seconds(3600))
        _ = try await leader.identify(.json(#"{"email":"b@x.io"}"#))
        leader.close()
    }
}

import Foundation
import IdentityGraph
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import PostgresNIO
import ServiceLifecycle

/// One server's part in the cluster (SPEC.md section 17): it keeps the engine leading or following as
/// the lease says. As a follower it applies the log (woken by `NOTIFY`, and polling every 50 ms) and
/// tries to take the lease once it has ended; as the leader it renews the lease every third of its
/// length, and stops leading the moment it cannot prove it holds it. Every role change is logged with
/// its reason.
public final class ClusterNode: Service, Sendable {
    public enum Role: String, Sendable {
        case leader, follower, candidate
    }

    /// What `GET /cluster` and `/healthz` report.
    public struct Status: Sendable {
        public var node: String
        public var role: Role
        public var epoch: Int64
        public var leader: (node: String, http: String?, tcp: String?)?
        /// The newest event both in the graph and in the local copy.
        public var appliedSeq: UInt64
        /// Seconds since this server last saw itself at the end of the log (0 for the leader).
        public var lagSeconds: Double
        /// Whether the server has applied the log to its end at least once since it started.
        public var caughtUp: Bool
    }

    public let configuration: ClusterConfiguration
    private let database: ClusterDatabase
    private let engine: IdentityEngine
    private let lease: Lease
    private let log: ChangeLog
    private let checkpoints: Checkpoints
    private let checkpointing = NIOLockedValueBox(CheckpointState())

    private struct CheckpointState {
        /// The seq of the newest checkpoint, once read.
        var newestSeq: UInt64?
        var running = false
        var nextCheck = ContinuousClock.now + .seconds(1)
    }
    private let logger: Logger
    private let instance = UUID().uuidString
    private let state: NIOLockedValueBox<Status>
    /// When the log was last seen applied to its end, on this server's clock.
    private let lastCaughtUp = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    /// How the other servers reach this one, once its listeners are bound (see ``listening(http:tcp:)``).
    private let addresses = NIOLockedValueBox<(http: String, tcp: String)?>(nil)
    /// Signalled by a notification of an append (on a follower) or a shutdown, to cut the loop's sleep short.
    private let wakeup = Wakeup()
    /// The least time between two rounds of a follower's loop: under load a notification comes with
    /// every batch, and the batches that arrive meanwhile are read and applied together. By hand, with
    /// three servers and PostgreSQL on two cores, 10 ms instead of 5 gave the leader 9-13 % more
    /// requests a second one in flight and a p99 lower by 7-12 %; 20 ms gave nothing more. A follower's
    /// `appliedSeq` trails the log by up to this much more.
    static let followerRoundSpacing: Duration = .milliseconds(10)

    /// A node on `database`, whose ``ClusterDatabase/replicator`` `engine` was created with.
    public init(database: ClusterDatabase, engine: IdentityEngine, logger: Logger) {
        let configuration = database.configuration
        self.configuration = configuration
        self.database = database
        self.engine = engine
        self.logger = logger
        lease = Lease(
            link: database.control, schema: configuration.schema, node: configuration.nodeName,
            ttl: configuration.leaseTTL
        )
        log = ChangeLog(link: database.control, schema: configuration.schema)
        var checkpoints = Checkpoints(link: database.checkpointing, schema: configuration.schema)
        checkpoints.partBytes = configuration.checkpointPartBytes
        self.checkpoints = checkpoints
        state = NIOLockedValueBox(Status(
            node: configuration.nodeName, role: .candidate, epoch: 0, leader: nil, appliedSeq: 0, lagSeconds: 0,
            caughtUp: false
        ))
    }

    /// The node's status now.
    public var status: Status {
        var status = state.withLockedValue { $0 }
        if status.role != .leader, let seen = lastCaughtUp.withLockedValue({ $0 }) {
            let elapsed = ContinuousClock.now - seen
            status.lagSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        return status
    }

    /// What this server does with a request now (SPEC.md section 17).
    public enum Admission: Sendable, Equatable {
        /// Answer it here.
        case serve
        /// A change on a follower: relay it to the leader, reached at these addresses.
        case forward(leader: String, http: String?, tcp: String?)
        /// Refuse it with a `503` that says when to retry: a title and a detail.
        case refuse(title: String, detail: String)
    }

    /// What to do with a request that changes the store (`writes`) or only reads: before this server
    /// has applied the log to its end once, nothing is served; a change on a server that does not lead
    /// goes to the leader when one is known (unless it was forwarded already: `forwarded`, so that a
    /// request never travels twice), and is refused during an election.
    public func admission(writes: Bool, forwarded: Bool = false) -> Admission {
        let status = self.status
        guard status.caughtUp else {
            return .refuse(title: "Not ready", detail: "this server is still catching up with the cluster's log")
        }
        guard writes, status.role != .leader else { return .serve }
        if !forwarded, status.role == .follower, let leader = status.leader, leader.node != status.node {
            return .forward(leader: leader.node, http: leader.http, tcp: leader.tcp)
        }
        let leader = status.leader.map { "the leader is \($0.node)" } ?? "no server leads now (an election is under way)"
        return .refuse(title: "Not the leader", detail: "this server does not accept changes; \(leader)")
    }

    /// Why a server cannot join: a refusal the operator must act on (exit 2), not an outage to wait out.
    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    /// Connects (retrying with a back-off while PostgreSQL cannot be reached, and logging why), creates or
    /// checks the schema, and claims the node name. Throws ``Refusal`` for a schema of another format or
    /// a name another live server holds.
    ///
    /// With `retrying` false it tries once and returns false when the database cannot be reached, so that
    /// the server can start its listeners (answering `503` meanwhile) and ``run()`` goes on trying.
    @discardableResult
    public func prepare(retrying: Bool = true) async throws -> Bool {
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await database.prepareSchema(on: database.control)
                try await claimName()
                prepared.withLockedValue { $0 = true }
                return true
            } catch let refusal as Refusal {
                throw refusal
            } catch let error as PSQLError where Self.isConfigurationError(error) {
                // A wrong password or database name does not fix itself: say so and stop.
                throw Refusal(
                    description: "the cluster database \(configuration.databaseDescription) refused this server: "
                        + Self.describe(error)
                )
            } catch let mismatch as ClusterSchema.FormatMismatch {
                throw Refusal(description: mismatch.description)
            } catch {
                logger.warning(
                    "cannot reach the cluster database; retrying",
                    metadata: ["database": "\(configuration.databaseDescription)", "error": "\(Self.describe(error))"]
                )
                if !retrying { return false }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return false
    }

    /// Whether ``prepare(retrying:)`` has succeeded.
    private let prepared = NIOLockedValueBox(false)

    /// Registers this server's name. A name whose holder stopped renewing it (a crash, a `kill -9`) is
    /// taken over; one whose holder renews it while this server watches, for half a lease, belongs to a
    /// live server: that is a ``Refusal``.
    private func claimName() async throws {
        let schema = configuration.schema
        while true {
            let inserted = try await database.control.rows(
                """
                INSERT INTO \(unescaped: schema).nodes (name, instance, seen_at, http, tcp)
                VALUES (\(configuration.nodeName), \(instance), now(), \(advertised.http), \(advertised.tcp))
                ON CONFLICT (name) DO NOTHING RETURNING name
                """
            )
            if !inserted.isEmpty { return }
            let before = try await nameHolder()
            try await Task.sleep(for: configuration.leaseTTL / 2)
            let after = try await nameHolder()
            guard let before, before == after else {
                if after == nil { continue }
                throw Refusal(
                    description: "another live server is named \(configuration.nodeName); give each --node-name once"
                )
            }
            // Nobody renewed the name for half a lease (a heartbeat comes every third): take it over.
            let taken = try await database.control.rows(
                """
                UPDATE \(unescaped: schema).nodes SET instance = \(instance), seen_at = now()
                WHERE name = \(configuration.nodeName) AND instance = \(before.instance) RETURNING name
                """
            )
            if !taken.isEmpty { return }
        }
    }

    private struct NameHolder: Equatable {
        var instance: String
        var seen: String
    }

    private func nameHolder() async throws -> NameHolder? {
        let rows = try await database.control.rows(
            """
            SELECT instance, seen_at::text FROM \(unescaped: configuration.schema).nodes
            WHERE name = \(configuration.nodeName)
            """
        )
        guard let row = rows.first else { return nil }
        let (instance, seen) = try row.decode((String, String).self)
        return NameHolder(instance: instance, seen: seen)
    }

    /// Keeps this server's name claimed; false when another instance took it over.
    private func heartbeat() async throws -> Bool {
        let rows = try await database.control.rows(
            """
            UPDATE \(unescaped: configuration.schema).nodes SET seen_at = now(), http = \(advertised.http),
                tcp = \(advertised.tcp)
            WHERE name = \(configuration.nodeName) AND instance = \(instance) RETURNING name
            """
        )
        return !rows.isEmpty
    }

    /// Applies every log batch after the engine's position; returns how many it applied. A read that
    /// returns fewer batches than it asked for reached the end of the log, as it was when asked: no
    /// second read to find nothing (under load, that halved a follower's statements).
    @discardableResult
    public func catchUp() async throws -> Int {
        var applied = 0
        let limit = 1000
        while true {
            let position = await engine.logPosition
            let asked = ContinuousClock.now
            let batches = try await log.batches(after: position, limit: limit)
            if let first = batches.first, first.position > position + 1 {
                throw Refusal(
                    description: "this server's local copy ends at log batch \(position), but the log now begins at "
                        + "\(first.position): the batches between were pruned after a checkpoint. Stop this server, "
                        + "empty its --data-dir, and start it again: it joins from the newest checkpoint"
                )
            }
            try await engine.apply(batches)
            applied += batches.count
            if batches.count < limit {
                lastCaughtUp.withLockedValue { $0 = asked }
                let seq = await engine.latestSeq
                state.withLockedValue {
                    $0.caughtUp = true
                    $0.appliedSeq = seq
                }
                return applied
            }
        }
    }

    /// Both listeners are bound: the addresses the lease advertises, unless configured. The node takes no
    /// part in elections before this.
    public func listening(http: String, tcp: String) {
        addresses.withLockedValue {
            $0 = (configuration.advertisedHTTP.isEmpty ? http : configuration.advertisedHTTP,
                  configuration.advertisedTCP.isEmpty ? tcp : configuration.advertisedTCP)
        }
    }

    private var advertised: (http: String, tcp: String) {
        addresses.withLockedValue { $0 } ?? (configuration.advertisedHTTP, configuration.advertisedTCP)
    }

    public func run() async throws {
        while addresses.withLockedValue({ $0 }) == nil, !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(5))
        }
        if !prepared.withLockedValue({ $0 }) {
            guard try await prepare(retrying: true) else { return }
        }
        let listener = Task { await listen() }
        defer { listener.cancel() }
        let renewEvery = configuration.leaseTTL / 3
        var nextLeaseCheck = ContinuousClock.now
        var nextHeartbeat = ContinuousClock.now
        var refusal: Refusal?
        // Failures the loop retries every 200 ms, logged as they begin, go on and end (not every time).
        var unapplied = RepeatedFailure()
        var unreached = RepeatedFailure()
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    if ContinuousClock.now >= nextHeartbeat {
                        nextHeartbeat = .now + renewEvery
                        if try await !heartbeat() {
                            logger.error("another server claimed this node name; stepping down")
                            await demote(reason: "the node name was claimed by another server")
                        }
                    }
                    if state.withLockedValue({ $0.role }) == .leader {
                        if ContinuousClock.now >= nextLeaseCheck {
                            nextLeaseCheck = .now + renewEvery
                            try await renew()
                        }
                        await wakeup.wait(until: min(nextLeaseCheck, nextHeartbeat))
                    } else {
                        let round = ContinuousClock.now
                        try await catchUp()
                        if ContinuousClock.now >= nextLeaseCheck {
                            nextLeaseCheck = .now + renewEvery
                            try await campaign()
                        }
                        await wakeup.wait(until: min(.now + .milliseconds(50), nextLeaseCheck))
                        let spaced = round + Self.followerRoundSpacing
                        if ContinuousClock.now < spaced, !Task.isShuttingDownGracefully {
                            try? await Task.sleep(until: spaced)
                        }
                    }
                    considerCheckpoint()
                    logEnd(of: &unapplied, "the cluster's log applies again")
                    logEnd(of: &unreached, "the cluster database is reachable again")
                } catch let error as Refusal {
                    logger.critical("cannot follow the cluster's log", metadata: ["reason": "\(error)"])
                    refusal = error
                    break
                } catch let error as EngineError {
                    // The local copy cannot take the log (its disk, or a replay that diverged): keep
                    // serving reads, say why, and try again.
                    if let report = unapplied.failed() {
                        logger.error("cannot apply the cluster's log", metadata: Self.metadata(report, error: "\(error)"))
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                } catch {
                    await unreachable(error, report: unreached.failed())
                    // A leader whose renewal failed tries again soon, not a third of a lease later: its
                    // lease may still be saved before it runs out.
                    nextLeaseCheck = min(nextLeaseCheck, .now + .milliseconds(200))
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        } onGracefulShutdown: {
            self.wakeup.signal()
        }
        await resign()
        await releaseName()
        if let refusal { throw refusal }
    }

    /// Gives the node name up at a clean stop, so that the server's next start claims it at once instead of
    /// watching it for half a lease (a crashed server's name is still taken over that way).
    private func releaseName() async {
        do {
            try await database.control.rows(
                """
                DELETE FROM \(unescaped: configuration.schema).nodes
                WHERE name = \(configuration.nodeName) AND instance = \(instance)
                """
            )
        } catch {
            logger.warning("could not give up the node name; a restart waits half a lease for it", metadata: ["error": "\(Self.describe(error))"])
        }
    }

    // MARK: - Checkpoints

    /// Every two seconds: when this server is the one to write checkpoints and `--checkpoint-every`
    /// events have passed since the newest, writes one in the background (the loop goes on meanwhile).
    private func considerCheckpoint() {
        let now = ContinuousClock.now
        let due = checkpointing.withLockedValue { state -> Bool in
            guard !state.running, now >= state.nextCheck else { return false }
            state.nextCheck = now + .seconds(2)
            state.running = true
            return true
        }
        guard due else { return }
        Task {
            defer { checkpointing.withLockedValue { $0.running = false } }
            do {
                try await checkpointIfDue()
            } catch {
                logger.warning("cannot write a checkpoint; trying again later", metadata: ["error": "\(Self.describe(error))"])
            }
        }
    }

    private func checkpointIfDue() async throws {
        let directory = configuration.dataDirectory
        guard !directory.isEmpty else { return }
        let seq = await engine.latestSeq
        let known: UInt64
        if let cached = checkpointing.withLockedValue({ $0.newestSeq }) {
            known = cached
        } else {
            known = try await checkpoints.newest()?.seq ?? 0
            checkpointing.withLockedValue { $0.newestSeq = known }
        }
        guard seq >= known + configuration.checkpointEvery, try await writesCheckpoints() else { return }
        // Another server may have written one since this server last looked.
        if let newest = try await checkpoints.newest(), seq < newest.seq + configuration.checkpointEvery {
            checkpointing.withLockedValue { $0.newestSeq = newest.seq }
            return
        }
        let staging = directory + "/.checkpoint-\(instance)"
        let files = FileManager.default
        try? files.removeItem(atPath: staging)
        defer { try? files.removeItem(atPath: staging) }
        let started = ContinuousClock.now
        let engine = self.engine
        // A copy of the whole store blocks its thread for a while: not one of the tasks' pool.
        try await NIOThreadPool.singleton.runIfActive { try engine.snapshot(to: staging) }
        guard let copy = try LocalCopy.position(of: staging), copy.logPosition > 0 else { return }
        // The index of the copy goes with it, so that a server that joins need not rebuild it. Without it
        // (it cannot be built here) a join still works, only slower.
        var image: String?
        do {
            image = try await NIOThreadPool.singleton.runIfActive { try LocalCopy.saveIndexImage(in: staging) }
        } catch {
            logger.warning(
                "cannot build the index image of a checkpoint; servers that join from it rebuild their index",
                metadata: ["error": "\(Self.describe(error))"]
            )
        }
        let (written, stored) = try await checkpoints.write(
            file: LocalCopy.storeFile(in: staging), image: image, position: copy.logPosition, seq: copy.seq,
            node: configuration.nodeName
        )
        checkpointing.withLockedValue { $0.newestSeq = copy.seq }
        let pruned = try await checkpoints.pruneLog(
            upTo: copy.logPosition, latestSeq: await engine.latestSeq, retained: configuration.changesRetained
        )
        let elapsed = ContinuousClock.now - started
        logger.notice(
            "wrote a checkpoint",
            metadata: [
                "logPosition": "\(copy.logPosition)", "seq": "\(copy.seq)", "bytes": "\(written.bytes)",
                "imageBytes": "\(written.imageBytes)", "storedBytes": "\(stored)",
                "parts": "\(written.parts + written.imageParts)", "seconds": "\(elapsed)",
                "prunedLogBatches": "\(pruned)",
            ]
        )
    }

    /// Whether this server writes the checkpoints: the first live follower by name, so that the leader
    /// keeps its time for changes; the leader itself when it is alone.
    private func writesCheckpoints() async throws -> Bool {
        let seconds = max(Int64(configuration.leaseTTL.components.seconds), 1)
        let rows = try await database.checkpointing.rows(
            """
            SELECT name FROM \(unescaped: configuration.schema).nodes
            WHERE seen_at > now() - make_interval(secs => \(seconds)) ORDER BY name
            """
        )
        let names = try rows.map { try $0.decode(String.self) }
        let status = self.status
        if let first = names.first(where: { $0 != status.leader?.node }) { return first == configuration.nodeName }
        return status.role == .leader
    }

    /// Joins from the newest checkpoint (SPEC.md section 17): when `directory` holds no store, or an
    /// empty one, and the cluster has a checkpoint, the checkpoint becomes its store; the server then
    /// reads the log after it. Returns the checkpoint's position and the index image that came with it (to
    /// open the engine with, ``IdentityEngine/Options/image``), `nil` when there was nothing to do.
    /// Called before the server opens its store.
    public static func join(
        database: ClusterDatabase, directory: String, logger: Logger
    ) async throws -> (position: LocalCopy.Position, image: IndexImageBytes?)? {
        if try LocalCopy.discardUnfinishedJoin(in: directory) {
            logger.warning(
                """
                the last join stopped before its checkpoint was synced to disk; its store is discarded and the \
                server joins again
                """
            )
        }
        guard try LocalCopy.isEmpty(directory) else { return nil }
        let configuration = database.configuration
        try await database.prepareSchema(on: database.checkpointing)
        let checkpoints = Checkpoints(link: database.checkpointing, schema: configuration.schema)
        guard let newest = try await checkpoints.newest() else { return nil }
        let started = ContinuousClock.now
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/.checkpoint-download"
        defer { try? FileManager.default.removeItem(atPath: file) }
        // The store goes in unsynced, behind a marker that a crash leaves (see LocalCopy.beginJoin), and is
        // synced once the server has started (syncJoin): a sync of the whole store would delay /healthz.
        try LocalCopy.beginJoin(in: directory)
        let position: LocalCopy.Position
        let image: IndexImageBytes?
        do {
            // The control connection is idle until the server starts: it fetches parts too.
            image = try await checkpoints.download(newest, to: file, over: [database.checkpointing, database.control])
            position = try LocalCopy.install(file, into: directory)
        } catch {
            // Nothing was installed: the directory is empty, as it was.
            _ = try? LocalCopy.discardUnfinishedJoin(in: directory)
            throw error
        }
        logger.notice(
            "joined from a checkpoint",
            metadata: [
                "logPosition": "\(position.logPosition)", "seq": "\(position.seq)", "contacts": "\(position.contacts)",
                "bytes": "\(newest.bytes)", "imageBytes": "\(newest.imageBytes)",
                "seconds": "\(ContinuousClock.now - started)",
            ]
        )
        return (position, image)
    }

    /// Syncs the checkpoint a join installed in `directory` to disk and removes the join's marker
    /// (``LocalCopy/finishJoin(in:)``), once this node has caught up with the log for the first time, or
    /// after 5 s. Not sooner: the sync writes the whole store, and the commits of the node's start in
    /// PostgreSQL (its name, its heartbeat) would wait behind it for the same disk, delaying `/healthz` by
    /// as long. Until then a crash leaves the marker, and the next start joins again; and the engine's
    /// first commit, applying the log, flushes the file itself.
    public func syncJoin(in directory: String) -> Task<Void, Never> {
        Task { [logger] in
            let deadline = ContinuousClock.now + .seconds(5)
            while !status.caughtUp, ContinuousClock.now < deadline, !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
            }
            do {
                try await NIOThreadPool.singleton.runIfActive { try LocalCopy.finishJoin(in: directory) }
                logger.info("the joined checkpoint is synced to disk")
            } catch {
                logger.warning(
                    "cannot sync the joined checkpoint to disk; the next start joins again",
                    metadata: ["error": "\(Self.describe(error))"]
                )
            }
        }
    }

    /// Renews the lease; stops leading when it was lost.
    private func renew() async throws {
        let epoch = state.withLockedValue { $0.epoch }
        let sent = ContinuousClock.now
        if try await lease.renew(epoch: epoch) {
            await engine.extendLease(until: sent + safeLength)
            let seq = await engine.latestSeq
            state.withLockedValue { $0.appliedSeq = seq }
        } else {
            await demote(reason: "the lease of epoch \(epoch) passed to another server")
        }
    }

    /// What this server counts on of a lease it just took or renewed: less than its length, so that its
    /// own clock runs out before PostgreSQL's can hand the lease to another server.
    private var safeLength: Duration { configuration.leaseTTL * 0.8 }

    /// Reads who leads; takes the lease when it has ended, reads the log to its end, and then leads.
    private func campaign() async throws {
        let holder = try await lease.holder()
        if holder.live, holder.node != configuration.nodeName {
            let changed = state.withLockedValue { status -> Bool in
                let changed = status.role != .follower || status.leader?.node != holder.node
                status.role = .follower
                status.epoch = holder.epoch
                status.leader = holder.node.map { ($0, holder.http, holder.tcp) }
                return changed
            }
            if changed {
                logger.notice(
                    "following",
                    metadata: [
                        "leader": "\(holder.node ?? "?")", "epoch": "\(holder.epoch)",
                        "reason": "the lease is held by another server",
                    ]
                )
            }
            return
        }
        let sent = ContinuousClock.now
        let (http, tcp) = advertised
        guard let epoch = try await lease.take(http: http, tcp: tcp) else { return }
        // Nobody can append under an older epoch now: read the log to its end before writing.
        try await catchUp()
        await engine.lead(epoch: epoch, until: sent + safeLength)
        let seq = await engine.latestSeq
        state.withLockedValue {
            $0.role = .leader
            $0.epoch = epoch
            $0.leader = (configuration.nodeName, http, tcp)
            $0.appliedSeq = seq
        }
        let position = await engine.logPosition
        logger.notice(
            "leading", metadata: ["epoch": "\(epoch)", "reason": "the lease had ended", "logPosition": "\(position)"]
        )
    }

    private func demote(reason: String) async {
        let wasLeader = state.withLockedValue { status in
            defer {
                status.role = .candidate
                status.leader = nil
            }
            return status.role == .leader
        }
        await engine.follow(reason: reason)
        if wasLeader { logger.warning("stopped leading", metadata: ["reason": "\(reason)"]) }
    }

    /// PostgreSQL cannot be reached: a leader stops leading once its lease may have ended; a follower
    /// goes on serving reads from what it has. Logged as `report` says (see ``RepeatedFailure``).
    private func unreachable(_ error: any Error, report: RepeatedFailure.Report?) async {
        let role = state.withLockedValue { $0.role }
        if let report {
            var metadata = Self.metadata(report, error: Self.describe(error))
            metadata["role"] = "\(role)"
            logger.warning("cannot reach the cluster database", metadata: metadata)
        }
        // Not while the lease holds: appends that failed meanwhile are retried by the writer and succeed once
        // PostgreSQL is back, with no election; stepping down would leave the lease to run out unused.
        if role == .leader, await !engine.holdsLease {
            await demote(reason: "PostgreSQL could not be reached to renew the lease")
        } else if role == .follower {
            state.withLockedValue { $0.role = .candidate }
        }
    }

    /// The metadata of a repeated failure's line: the error, and after the first how often it happened
    /// since the last line and for how long it has lasted.
    private static func metadata(_ report: RepeatedFailure.Report, error: String) -> Logger.Metadata {
        guard case .repeated(let times, let lasted) = report else { return ["error": "\(error)"] }
        return ["error": "\(error)", "repeated": "\(times)", "seconds": "\(seconds(lasted))"]
    }

    /// Logs, as `message`, that a repeated failure ended, if one was going on.
    private func logEnd(of failure: inout RepeatedFailure, _ message: Logger.Message) {
        guard let (failures, lasted) = failure.succeeded() else { return }
        logger.notice(message, metadata: ["failures": "\(failures)", "seconds": "\(Self.seconds(lasted))"])
    }

    /// Whole seconds, for log lines.
    private static func seconds(_ duration: Duration) -> Int64 {
        duration.components.seconds
    }

    /// Ends the lease at a clean stop, so that another server takes over at once.
    private func resign() async {
        let (role, epoch) = state.withLockedValue { ($0.role, $0.epoch) }
        guard role == .leader else { return }
        await engine.follow(reason: "the server is stopping")
        do {
            try await lease.resign(epoch: epoch)
            logger.notice("resigned the lease", metadata: ["epoch": "\(epoch)"])
        } catch {
            logger.warning("could not resign the lease; it runs out by itself", metadata: ["error": "\(Self.describe(error))"])
        }
    }

    /// Wakes the follower loop on every append (`LISTEN`), reconnecting while the node runs.
    private func listen() async {
        while !Task.isCancelled {
            do {
                let (channel, wakeup, state) = (log.channel, wakeup, state)
                // No deadline: a LISTEN waits for as long as the node runs; a broken connection ends it.
                try await database.notifications.run(timeout: .seconds(365 * 86_400)) { connection in
                    try await connection.listen(on: channel) { notifications in
                        for try await _ in notifications where state.withLockedValue({ $0.role }) != .leader {
                            wakeup.signal()
                        }
                    }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// PostgreSQL refused the login (SQLSTATE class 28) or knows no such database (3D000).
    static func isConfigurationError(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state.hasPrefix("28") || state == "3D000"
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    /// An error as an operator can read it: PostgreSQL's own message when it sent one.
    public static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return "\(error.code)"
        }
        return "\(error)"
    }
}

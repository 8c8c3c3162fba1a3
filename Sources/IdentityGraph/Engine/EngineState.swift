import Foundation

/// Everything the engine owns, and every operation on it, as plain synchronous code: the graph, the
/// guards, the clock, the change feed's numbering, and the bookkeeping of which batch of writes an
/// answer must wait for and which answers a commit releases. It knows nothing of threads; the
/// ``IdentityEngine`` actor owns one and runs every call on it, and a ``GroupCommitWriter`` commits
/// the batches it fills. Its tests drive it directly, with no threads.
///
/// Every operation that changes anything encodes the changed rows, links, rules and its one change
/// event into the open batch, and marks the profiles it touched as pending on that batch. An answer
/// about a profile waits for the newest batch that changed it (``pendingBatch(of:)``), so nothing is
/// reported before it is on disk; reads never start a batch of their own.
struct EngineState {
    var graph = ContactGraph()
    /// The newest timestamp issued; time never goes backwards for the graph.
    var clock: Int64 = 0
    var blocklist = BlocklistMatcher(.empty)
    var limits = ProfileLimits.none
    /// Whether batches are committed to a store; an in-memory engine keeps its feed in `memoryFeed`.
    let persistent: Bool

    /// Writes gathered since the writer last took a batch.
    var openBatch = RowBatch()
    var openBatchNumber: UInt64 = 1
    /// The newest batch that holds changes; nothing newer has anything to wait for.
    var lastChangedBatch: UInt64 = 0
    /// For each profile changed by a batch not yet durable, by primary: the newest such batch.
    var pendingProfiles: [UInt32: UInt64] = [:]
    var durableBatch: UInt64 = 0
    /// Answers waiting for their batch to be durable, ordered by batch.
    var waiting: [Waiter] = []
    /// Why the last commit failed, until a retry succeeds; changes are refused meanwhile.
    var failure: StorageError?
    /// Cluster mode: why the last commit to the local copy failed, until a retry succeeds (the log
    /// stage's failures are `failure`'s). Changes are refused meanwhile; batches already in the log are
    /// still acknowledged, as the log holds them.
    var storeFailure: StorageError?
    /// Whether the writer holds a batch that has not reported back (in cluster mode: from the log).
    var writerBusy = false
    /// Cluster mode: batches in the log that the local copy does not hold yet.
    var storeBacklog = 0
    /// Batches committed since the engine opened.
    var commits = 0

    /// Values identify held back, by field and reason (for metrics); dry runs do not count.
    var ignoredCounts: [String: [String: Int]] = [:]

    /// The seq the next change event gets.
    var nextSeq: UInt64 = 1
    /// The newest seq whose event is durable (in cluster mode: in the local copy, which the feed reads).
    var durableSeq: UInt64 = 0
    /// The feed of an in-memory engine; a store keeps its own.
    var memoryFeed = EventLog(retained: 10_000_000)

    /// Scratch for one operation's changes, kept to reuse its capacity.
    private var changes = GraphChanges()

    /// Cluster mode (SPEC.md section 17): every operation that changes something also appends its
    /// ``ReplicatedCommand`` to `openCommands`, which goes to the log with the batch.
    var shipsCommands = false
    /// The commands of the open batch, back to back.
    var openCommands: [UInt8] = []
    /// While a follower replays a command: the leader's time for it, which ``tick()`` returns.
    var pinnedClock: Int64?
    /// The newest log batch the state holds (applied, or appended as leader).
    var logPosition: UInt64 = 0
    /// Cluster mode: the epoch of this server's lease while it leads, `nil` while it follows. A follower
    /// refuses changes; a leader accepts them only until `leaseDeadline` (its own monotonic clock),
    /// so that it stops before the lease can pass to another server.
    var leaderEpoch: Int64?
    var leaseDeadline: ContinuousClock.Instant?
    /// Whether this state is a cluster member (otherwise it always accepts changes while its store does).
    var clustered = false

    init(persistent: Bool) {
        self.persistent = persistent
    }

    /// The state of an opened store: every row, link and rule loaded into the graph, the clock and the
    /// feed's numbering carried on. A store of the v1 format is upgraded in place first (its links
    /// derived and committed); `upgradedLinks` says how many, `nil` when there was nothing to do.
    static func loading(_ store: ContactStore, guards: Guards) throws(StorageError)
        -> (state: EngineState, upgradedLinks: Int?)
    {
        var graph = ContactGraph()
        try store.load(into: &graph)
        var state = EngineState(store: store, graph: graph, guards: guards)
        guard store.needsLinkUpgrade else { return (state, nil) }
        var changes = GraphChanges()
        let added = state.graph.deriveMissingLinks(now: state.clock, changes: &changes)
        var batch = RowBatch()
        state.graph.encode(changes, into: &batch)
        try store.completeUpgrade(batch)
        return (state, added)
    }

    /// The state of an opened store at start: its graph read from `image` when given, else from the index
    /// image that the last clean stop saved, when the image matches the store; otherwise rebuilt from the
    /// rows (see ``loading(_:guards:)``). `origin` says which, and why.
    static func opening(_ store: ContactStore, guards: Guards, image: IndexImageBytes? = nil) throws(StorageError)
        -> (state: EngineState, upgradedLinks: Int?, origin: IndexOrigin)
    {
        var reason = IndexRebuildReason.upgrade
        if !store.needsLinkUpgrade {
            let stamp = try store.indexStamp()
            do throws(IndexImage.Refusal) {
                let graph = if let image {
                    try image.graph(expecting: stamp)
                } else {
                    try IndexImage.load(from: store.directory, expecting: stamp)
                }
                return (EngineState(store: store, graph: graph, guards: guards), nil, .image)
            } catch {
                reason = error.reason
            }
        }
        let (state, upgradedLinks) = try loading(store, guards: guards)
        return (state, upgradedLinks, .rebuilt(reason))
    }

    /// The state of `store` holding `graph`: the clock and the feed's numbering carried on.
    private init(store: ContactStore, graph: ContactGraph, guards: Guards) {
        self.init(persistent: true)
        self.graph = graph
        clock = graph.latestTimestamp
        self.guards = guards
        nextSeq = store.newestSeq + 1
        durableSeq = store.newestSeq
        logPosition = store.logPosition
    }

    /// Whether a blocklist is configured, kept apart so that identify without one pays one test.
    private var screens = false

    var guards: Guards {
        get { Guards(blocklist: blocklist.blocklist, limits: limits) }
        set {
            blocklist = BlocklistMatcher(newValue.blocklist)
            screens = !newValue.blocklist.isEmpty
            limits = newValue.limits
        }
    }

    /// The newest batch that changed the profile of `primary`, or 0 when it is durable.
    func pendingBatch(of primary: UInt32) -> UInt64 {
        pendingProfiles.isEmpty ? 0 : pendingProfiles[primary] ?? 0
    }

    /// The batch an answer about contact `id` waits for: its profile's; 0 for an unknown id.
    func pendingBatch(about id: Int) -> UInt64 {
        graph.exists(id) ? pendingBatch(of: graph.primary(of: UInt32(id))) : 0
    }

    /// The clock for new and changed rows: wall time in milliseconds, never earlier than before (the
    /// leader's time while a follower replays a command).
    mutating func tick() -> Int64 {
        if let pinnedClock {
            clock = max(clock, pinnedClock)
            return clock
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        clock = max(clock, milliseconds)
        return clock
    }

    // MARK: - Identify

    /// The request's values once the blocklist has had its say (SPEC.md section 10, step 1).
    private mutating func screen(_ request: IdentifyRequest, ignored: inout [IgnoredValue]) throws(EngineError)
        -> (email: String?, phone: String?)
    {
        var email = request.email
        var phone = request.phoneNumber
        guard !blocklist.isEmpty else { return (email, phone) }
        if let value = email, blocklist.isBlocked(value, field: .email) {
            email = nil
            ignored.append(Self.blocked(.email))
        }
        if let value = phone, blocklist.isBlocked(value, field: .phoneNumber) {
            phone = nil
            ignored.append(Self.blocked(.phoneNumber))
        }
        if email == nil && phone == nil {
            let field = ignored.map(\.field.rawValue).joined(separator: " and ")
            throw .blocked(RequestError(field: field, reason: "blocked: the blocklist does not allow this value"))
        }
        return (email, phone)
    }

    /// Identify (SPEC.md sections 4 and 10). Returns the primary of the profile to answer with, the
    /// values held back, and the batch the answer must wait for. `canWrite` false (the store is
    /// failing) refuses an identify that would change something. `guarded` false (a follower replaying
    /// the leader's command, whose values the leader's guards already screened) skips the blocklist and
    /// the limits; keep-apart rules hold either way.
    mutating func identify(_ request: IdentifyRequest, canWrite: Bool, guarded: Bool = true) throws(EngineError)
        -> (primary: UInt32, ignored: [IgnoredValue], wait: UInt64)
    {
        var ignored: [IgnoredValue] = []
        let (email, phone) = screens && guarded
            ? try screen(request, ignored: &ignored) : (request.email, request.phoneNumber)
        let plan = graph.plan(email: email, phone: phone, limits: guarded ? limits : .none, ignored: &ignored)
        for value in ignored { ignoredCounts[value.field.rawValue, default: [:]][value.metricReason, default: 0] += 1 }
        if plan.changes && !canWrite {
            throw Self.notAcceptingChanges
        }
        changes.removeAll()
        let primary = graph.apply(plan, email: email, phone: phone, now: plan.changes ? tick() : clock, changes: &changes)
        guard !changes.isEmpty else { return (primary, ignored, pendingBatch(of: primary)) }
        if shipsCommands { ReplicatedCommand.identify(email: email, phoneNumber: phone, at: clock).encode(into: &openCommands) }
        if case .merge(_, let loser, _, _) = plan {
            recordChanges(.merged, primaries: [Int(primary)], merged: [Int(loser)])
        } else {
            recordCreated(primary: primary)
        }
        // Only a store has batches to wait for; an in-memory engine answers at once.
        guard persistent else { return (primary, ignored, 0) }
        pendingProfiles[primary] = openBatchNumber
        return (primary, ignored, openBatchNumber)
    }

    /// A dry run of identify (SPEC.md section 9): appends to `writer` the profile identify would
    /// answer with, then `,"dryRun":{...}` and, when values would be held back, `,"ignored":[...]`.
    /// Changes nothing. Returns the batch the answer must wait for.
    mutating func dryRun(_ request: IdentifyRequest, into writer: inout JSONWriter) throws(EngineError) -> UInt64 {
        var ignored: [IgnoredValue] = []
        let (email, phone) = try screen(request, ignored: &ignored)
        let plan = graph.plan(email: email, phone: phone, limits: limits, ignored: &ignored)
        graph.writeProjectedProfileJSON(plan, email: email, phone: phone, into: &writer)
        writer.raw(",\"dryRun\":{\"created\":[")
        if case .create = plan { writer.integer(UInt64(graph.contactCount + 1)) }
        writer.raw("],\"mergedPrimaryIds\":[")
        if case .merge(_, let loser, _, _) = plan { writer.integer(UInt64(loser)) }
        writer.raw("]}")
        Self.write(ignored, into: &writer)
        return switch plan {
        case .existing(let primary): pendingBatch(of: primary)
        case .create(_, _, let linkedTo): pendingBatch(of: linkedTo)
        case .merge(let winner, let loser, _, _): max(pendingBatch(of: winner), pendingBatch(of: loser))
        }
    }

    /// What a change gets while the store fails its commits (reads go on).
    private static let notAcceptingChanges = EngineError.storage(
        StorageError(.unavailable, "the store is not accepting changes")
    )

    private static func blocked(_ field: GuardField) -> IgnoredValue {
        IgnoredValue(field: field, reason: .blocked, detail: "the blocklist does not allow this value")
    }

    /// `,"ignored":[...]`, or nothing when nothing was held back.
    static func write(_ ignored: [IgnoredValue], into writer: inout JSONWriter) {
        guard !ignored.isEmpty else { return }
        writer.raw(",\"ignored\":[")
        for (index, value) in ignored.enumerated() {
            if index > 0 { writer.raw(",") }
            value.writeJSON(into: &writer)
        }
        writer.raw("]")
    }

    // MARK: - Look-ups

    /// `[PROFILE,...]`: the profiles holding `email` or `phone` (SPEC.md section 9).
    func lookup(email: String?, phone: String?, into writer: inout JSONWriter) -> UInt64 {
        let primaries = graph.primaries(holding: email, phone)
        writeProfiles(primaries, into: &writer)
        return primaries.map { pendingBatch(of: $0) }.max() ?? 0
    }

    /// `{"contact":{...}}`: the profile holding live contact `id`.
    func profile(containing id: Int, into writer: inout JSONWriter) throws(EngineError) -> UInt64 {
        let primary = try livePrimary(of: id)
        writer.raw("{\"contact\":")
        graph.writeProfileJSON(primary: primary, into: &writer)
        writer.raw("}")
        return pendingBatch(of: primary)
    }

    /// Why contacts `from` and `to` are one person (SPEC.md section 11).
    func explain(from source: Int, to target: Int) throws(EngineError) -> (Explanation, UInt64) {
        for id in [source, target] where !graph.exists(id) { throw .notFound("no contact with id \(id)") }
        let explanation = graph.explain(from: UInt32(source), to: UInt32(target))
        return (explanation, max(pendingBatch(about: source), pendingBatch(about: target)))
    }

    /// The keep-apart rules, oldest first.
    func keepApartRules() -> [StoredPair] {
        graph.storedPairs(rules: true)
    }

    private func livePrimary(of id: Int) throws(EngineError) -> UInt32 {
        guard graph.exists(id) else { throw .notFound("no contact with id \(id)") }
        guard !graph.isErased(UInt32(id)) else { throw .erased("contact \(id) was erased") }
        return graph.primary(of: UInt32(id))
    }

    /// `[PROFILE,...]`.
    private func writeProfiles(_ primaries: [UInt32], into writer: inout JSONWriter) {
        writer.raw("[")
        for (index, primary) in primaries.enumerated() {
            if index > 0 { writer.raw(",") }
            graph.writeProfileJSON(primary: primary, into: &writer)
        }
        writer.raw("]")
    }

    // MARK: - Erasure and unmerge

    /// Erasure (SPEC.md section 12): `{"erasedContactIds":[...],"profiles":[...]}`.
    mutating func erase(_ target: IdentityEngine.Erasure, canWrite: Bool, into writer: inout JSONWriter)
        throws(EngineError)
        -> UInt64
    {
        var ids: [UInt32] = []
        var emailValue: Int?
        var phoneValue: Int?
        switch target {
        case .contact(let id), .profile(let id):
            guard graph.exists(id) else { throw .notFound("no contact with id \(id)") }
            if !graph.isErased(UInt32(id)) {
                if case .profile = target {
                    ids = graph.members(of: graph.primary(of: UInt32(id)))
                } else {
                    ids = [UInt32(id)]
                }
            }
        case .values(let email, let phone):
            emailValue = email.flatMap { graph.emailValue($0) }
            phoneValue = phone.flatMap { graph.phoneValue($0) }
        }
        if ids.isEmpty && emailValue == nil && phoneValue == nil {
            writer.raw("{\"erasedContactIds\":[],\"profiles\":[]}")
            return 0
        }
        guard canWrite else { throw Self.notAcceptingChanges }
        changes.removeAll()
        let now = tick()
        let outcome = ids.isEmpty
            ? graph.erase(emailValue: emailValue, phoneValue: phoneValue, now: now, changes: &changes)
            : graph.erase(contacts: ids, now: now, changes: &changes)
        if shipsCommands && !changes.isEmpty { ReplicatedCommand.erase(target, at: now).encode(into: &openCommands) }
        writer.raw("{\"erasedContactIds\":[")
        for (index, id) in outcome.erased.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.integer(UInt64(id))
        }
        writer.raw("],\"profiles\":")
        writeProfiles(outcome.pieces, into: &writer)
        writer.raw("}")
        return recordSplit(.erased, outcome)
    }

    /// Unmerge (SPEC.md section 12): `{"profiles":[...]}`. Throws when there is no such link.
    mutating func unmerge(email: String, phone: String, keepApart: Bool, canWrite: Bool, into writer: inout JSONWriter)
        throws(EngineError) -> UInt64
    {
        guard let emailValue = graph.emailValue(email), let phoneValue = graph.phoneValue(phone),
            let link = graph.links.find(email: emailValue, phone: phoneValue)
        else { throw .notFound("no link joins this email and this phone number") }
        guard canWrite else { throw Self.notAcceptingChanges }
        changes.removeAll()
        let now = tick()
        let outcome = graph.unmerge(link: link, now: now, changes: &changes)
        if keepApart { graph.addRule(email: emailValue, phone: phoneValue, now: now, changes: &changes) }
        if shipsCommands && !changes.isEmpty {
            ReplicatedCommand.unmerge(email: email, phoneNumber: phone, keepApart: keepApart, at: now)
                .encode(into: &openCommands)
        }
        writer.raw("{\"profiles\":")
        writeProfiles(outcome.pieces, into: &writer)
        writer.raw("}")
        return recordSplit(.unmerged, outcome)
    }

    /// Deletes the keep-apart rule (`email`, `phone`); throws when there is none.
    mutating func removeKeepApart(email: String, phone: String, canWrite: Bool) throws(EngineError) -> UInt64 {
        guard let emailValue = graph.emailValue(email), let phoneValue = graph.phoneValue(phone),
            let rule = graph.rules.find(email: emailValue, phone: phoneValue)
        else { throw .notFound("no keep-apart rule for this email and this phone number") }
        guard canWrite else { throw Self.notAcceptingChanges }
        changes.removeAll()
        graph.removeRule(rule, changes: &changes)
        if shipsCommands { ReplicatedCommand.removeKeepApart(email: email, phoneNumber: phone).encode(into: &openCommands) }
        recordChanges(nil, primaries: [])
        return persistent ? openBatchNumber : 0
    }

    /// Records the keep-apart rule (`email`, `phone`) for bulk import (SPEC.md section 16), as an
    /// unmerge with `keepApart` does. Returns false, changing nothing, when either value is carried by
    /// no live contact (a rule must name values that are). A rule that exists already is kept. Rules
    /// alone record no change event (SPEC.md section 13: events are about rows).
    mutating func addKeepApartRule(email: String, phone: String) -> Bool {
        guard let emailValue = graph.emailValue(email), let phoneValue = graph.phoneValue(phone) else { return false }
        changes.removeAll()
        graph.addRule(email: emailValue, phone: phoneValue, now: tick(), changes: &changes)
        if !changes.isEmpty { recordChanges(nil, primaries: []) }
        return true
    }

    /// Records an erasure's or an unmerge's changes and marks every profile it touched as pending.
    private mutating func recordSplit(_ kind: ChangeEvent.Kind, _ outcome: SplitOutcome) -> UInt64 {
        guard !changes.isEmpty else {
            return outcome.pieces.map { pendingBatch(of: $0) }.max() ?? 0
        }
        let rows = Set(changes.rows)
        let primaries = Set(rows.filter { !graph.isErased($0) }.map { graph.primary(of: $0) })
        recordChanges(
            rows.isEmpty ? nil : kind, primaries: primaries.map { Int($0) }.sorted(),
            erased: outcome.erased.map { Int($0) }, previous: outcome.previousPrimaries.map { Int($0) }
        )
        guard persistent else { return 0 }
        for primary in outcome.pieces { pendingProfiles[primary] = openBatchNumber }
        for primary in outcome.previousPrimaries { pendingProfiles[primary] = openBatchNumber }
        return openBatchNumber
    }

    // MARK: - Recording changes

    private static func sortedUnique(_ ids: [UInt32]) -> [Int] {
        if ids.count == 1 { return [Int(ids[0])] }
        var result: [Int] = []
        result.reserveCapacity(ids.count)
        for id in ids.sorted() where result.last != Int(id) { result.append(Int(id)) }
        return result
    }

    /// ``recordChanges(_:primaries:merged:erased:previous:)`` for the commonest change, identify creating
    /// one contact, without building the event's arrays: it runs for most requests that write.
    private mutating func recordCreated(primary: UInt32) {
        let (seq, at, contact) = (nextSeq, clock, changes.rows[0])
        nextSeq += 1
        if persistent {
            graph.encodeRow(contact, into: &openBatch)
            openBatch.put(.changes, key: seq) { ChangeEvent.encodeCreated(at: at, contact: contact, primary: Int(primary), into: &$0) }
        } else {
            memoryFeed.append(seq: seq) { ChangeEvent.encodeCreated(at: at, contact: contact, primary: Int(primary), into: &$0) }
            durableSeq = seq
        }
        lastChangedBatch = openBatchNumber
    }

    /// Encodes what `changes` holds into the open batch, with one change event of `kind` when rows
    /// changed (`nil`: no event, for changes of links or rules alone).
    private mutating func recordChanges(
        _ kind: ChangeEvent.Kind?, primaries: [Int], merged: [Int] = [], erased: [Int] = [], previous: [Int] = []
    ) {
        if persistent { graph.encode(changes, into: &openBatch) }
        if let kind, !changes.rows.isEmpty {
            let seq = nextSeq
            nextSeq += 1
            let event = ChangeEvent(
                seq: seq, at: Timestamp(millisecondsSince1970: clock), kind: kind,
                contactIds: Self.sortedUnique(changes.rows), primaryContactIds: primaries,
                mergedPrimaryIds: merged, erasedContactIds: erased, previousPrimaryContactIds: previous
            )
            if persistent {
                openBatch.put(.changes, key: seq) { event.encode(into: &$0) }
            } else {
                memoryFeed.append(seq: seq) { event.encode(into: &$0) }
                durableSeq = seq
            }
        }
        lastChangedBatch = openBatchNumber
    }
}

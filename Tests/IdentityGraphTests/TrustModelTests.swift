import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// The guards, dry runs, look-ups, erasure, unmerge and the change feed against
/// ``TrustReferenceModel``: random sequences over small universes of values, compared after every step.
@Suite struct TrustModelTests {
    @Test(
        "random identify, dry runs and look-ups with random guards match the reference",
        arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64]
    )
    func identifyWithGuards(seed: UInt64) async throws {
        var trial = Trial(seed: seed) { IdentityEngine(options: $0) }
        for _ in 0..<300 {
            let roll = trial.roll(100)
            let agreed: Bool
            if roll < 70 {
                agreed = try await trial.identify(dryRun: false)
            } else if roll < 85 {
                agreed = try await trial.identify(dryRun: true)
            } else {
                agreed = try await trial.lookUp(byId: false)
            }
            guard agreed, try await trial.compareContents(feed: false) else { return }
        }
    }

    @Test(
        "a dry run predicts exactly what the same real request then does",
        arguments: [11, 12, 13, 14, 15, 16] as [UInt64]
    )
    func dryRunPredictsTheRequest(seed: UInt64) async throws {
        var trial = Trial(seed: seed) { IdentityEngine(options: $0) }
        let engine = trial.engine
        for step in 0..<250 {
            let roll = trial.roll(100)
            let contents = try await engine.contents()
            if roll >= 90, let link = trial.pick(contents.links) {
                // Unmerges that keep values apart, so that dry runs meet refusals for rules too.
                let keepApart = trial.roll(2) == 0
                _ = try await engine.unmerge(email: link.email, phoneNumber: link.phoneNumber, keepApart: keepApart)
                continue
            }
            if roll >= 80 {
                let value = trial.someValue()
                _ = try await engine.erase(.values(email: value.email, phoneNumber: value.phoneNumber))
                continue
            }
            let (email, phone) = trial.someRequest()
            let request = try IdentifyRequest(email: email, phoneNumber: phone)
            let context = "seed \(seed), step \(step): identify(\(email ?? "-"), \(phone ?? "-"))"
            let seqBefore = (await engine.latestSeq)
            let predicted = try await Engines.outcome {
                try await engine.identifyResponseBody(request, dryRun: true)
            }.decoded { try AnswerJSON.identify($0, dryRun: true) }
            #expect(try await engine.contents() == contents, "a dry run changed the store; \(context)")
            #expect((await engine.latestSeq) == seqBefore, "a dry run recorded a change; \(context)")
            let real = try await Engines.outcome {
                try await engine.identifyResponseBody(request)
            }.decoded { try AnswerJSON.identify($0, dryRun: false) }
            let after = try await engine.contents()
            let agreed: Bool
            switch (predicted, real) {
            case (.failure(let expected), .failure(let actual)):
                agreed = actual == expected && after == contents
            case (.success(let prediction), .success(let answer)):
                let created = Array((contents.contacts.count + 1)..<(after.contacts.count + 1))
                let merged = contents.contacts.filter {
                    $0.deletedAt == nil && $0.linkedId == nil && after.contacts[$0.id - 1].linkedId != nil
                }.map(\.id)
                let changed = !created.isEmpty || !merged.isEmpty
                #expect(answer.contact == prediction.contact, "\(context)")
                #expect(answer.ignored == prediction.ignored, "\(context)")
                #expect(created == prediction.dryRun?.created, "created ids; \(context)")
                #expect(merged == prediction.dryRun?.mergedPrimaryIds, "merged primaries; \(context)")
                #expect(changed || after == contents, "a request predicted to change nothing wrote; \(context)")
                #expect((await engine.latestSeq) == seqBefore + (changed ? 1 : 0), "change events; \(context)")
                agreed = answer.contact == prediction.contact && answer.ignored == prediction.ignored
                    && created == prediction.dryRun?.created && merged == prediction.dryRun?.mergedPrimaryIds
            default:
                agreed = false
            }
            #expect(agreed, "the dry run answered \(predicted), the request \(real); \(context)")
            if !agreed { return }
        }
    }

    @Test(
        "random identify, erasures and unmerges match the reference, with the change feed",
        arguments: [21, 22, 23, 24, 25, 26] as [UInt64]
    )
    func erasureAndUnmerge(seed: UInt64) async throws {
        var trial = Trial(seed: seed) { IdentityEngine(options: $0) }
        _ = try await trial.run(steps: 300)
    }

    @Test("random identify, erasures and unmerges on a store match the reference, also after reopening it")
    func erasureAndUnmergeOnStore() async throws {
        let directory = TemporaryDirectory()
        let path = directory.path
        var trial = try Trial(seed: 31) { options in try IdentityEngine(dataDirectory: path, options: options) }
        defer { trial.engine.close() }
        guard try await trial.run(steps: 250) else { return }
        let closed = try await trial.engine.contents()
        trial.engine.close()
        trial.engine = try IdentityEngine(dataDirectory: path, options: trial.options)
        trial.log.append("-- reopened --")
        #expect(try await trial.engine.contents() == closed, "the reopened store differs")
        guard try await trial.compareContents(feed: true) else { return }
        _ = try await trial.run(steps: 50)
    }
}

/// One random run: an engine, the reference, the random choices, and the steps taken so far (shown
/// with every mismatch, so that a failure can be replayed by hand).
private struct Trial {
    typealias Model = TrustReferenceModel

    let seed: UInt64
    var engine: IdentityEngine
    var model: Model
    let options: IdentityEngine.Options
    var log: [String] = []
    /// The rows at the previous comparison, with their times.
    private var previousRows: [Contact] = []
    private var random: SeededGenerator
    private let emails: [String]
    private let phones: [String]

    /// Picks the universe and the guards from `seed`: 5–7 emails, 4–6 phone numbers, up to two blocked
    /// values of each, and limits of 0 (none) to 3; half the time no blocklist or no limit.
    init(seed: UInt64, makeEngine: (IdentityEngine.Options) throws -> IdentityEngine) rethrows {
        self.seed = seed
        var random = SeededGenerator(seed: seed)
        emails = (0..<Int.random(in: 5...7, using: &random)).map { "e\($0)@x.io" }
        phones = (0..<Int.random(in: 4...6, using: &random)).map { "555\($0)" }
        let blockedEmails = Set(emails.shuffled(using: &random).prefix([0, 0, 1, 2].randomElement(using: &random)!))
        let blockedPhones = Set(phones.shuffled(using: &random).prefix([0, 0, 1, 2].randomElement(using: &random)!))
        let maxEmails = [0, 0, 1, 2, 3].randomElement(using: &random)!
        let maxPhones = [0, 0, 1, 2, 3].randomElement(using: &random)!
        let rules = blockedEmails.sorted().map { "email \($0)" } + blockedPhones.sorted().map { "phoneNumber \($0)" }
        let blocklist = try! Blocklist(parsing: "# random rules\n" + rules.joined(separator: "\n"), source: "test")
        options = IdentityEngine.Options(
            guards: Guards(blocklist: blocklist, limits: ProfileLimits(maxEmails: maxEmails, maxPhones: maxPhones))
        )
        model = Model(
            blockedEmails: blockedEmails, blockedPhones: blockedPhones, maxEmails: maxEmails, maxPhones: maxPhones
        )
        self.random = random
        engine = try makeEngine(options)
        log.append("guards: blocked \(rules), maxEmails \(maxEmails), maxPhones \(maxPhones)")
    }

    // MARK: - Random choices

    mutating func roll(_ sides: Int) -> Int { Int.random(in: 0..<sides, using: &random) }

    mutating func pick<T>(_ values: [T]) -> T? { values.randomElement(using: &random) }

    /// An email, a phone number, or both (never neither).
    mutating func someRequest() -> (email: String?, phoneNumber: String?) {
        while true {
            let email = roll(4) < 3 ? pick(emails) : nil
            let phone = roll(4) < 3 ? pick(phones) : nil
            if email != nil || phone != nil { return (email, phone) }
        }
    }

    /// One value of either field, or sometimes one of each.
    mutating func someValue() -> (email: String?, phoneNumber: String?) {
        switch roll(5) {
        case 0, 1: (pick(emails), nil)
        case 2, 3: (nil, pick(phones))
        default: (pick(emails), pick(phones))
        }
    }

    private var context: Comment {
        Comment(rawValue: "seed \(seed), after these steps:\n" + log.suffix(40).joined(separator: "\n"))
    }

    // MARK: - Steps

    /// Random steps of every kind, each compared with the reference; stops at the first disagreement.
    mutating func run(steps: Int) async throws -> Bool {
        for _ in 0..<steps {
            let roll = roll(100)
            let agreed: Bool
            switch roll {
            case ..<40: agreed = try await identify(dryRun: false)
            case ..<48: agreed = try await identify(dryRun: true)
            case ..<53: agreed = try await lookUp(byId: roll < 50)
            case ..<67: agreed = try await erase(roll)
            case ..<94: agreed = try await unmerge()
            default: agreed = try await removeKeepApart()
            }
            guard agreed, try await compareContents(feed: true) else { return false }
        }
        return true
    }

    /// Identify or a dry run of random values, or sometimes of the two values of a keep-apart rule.
    mutating func identify(dryRun: Bool) async throws -> Bool {
        var (email, phone) = someRequest()
        if roll(4) == 0, let rule = pick(model.keepApart) { (email, phone) = (rule.email, rule.phoneNumber) }
        log.append("\(dryRun ? "dry run" : "identify")(\(email ?? "-"), \(phone ?? "-"))")
        let request = try IdentifyRequest(email: email, phoneNumber: phone)
        let engine = engine
        let actual = try await Engines.outcome {
            try await engine.identifyResponseBody(request, dryRun: dryRun)
        }.decoded { try AnswerJSON.identify($0, dryRun: dryRun) }
        let expected = model.identify(email: email, phoneNumber: phone, dryRun: dryRun)
        #expect(actual == expected, context)
        return actual == expected
    }

    /// A look-up by values, or (`byId`) of the profile holding a contact.
    mutating func lookUp(byId: Bool) async throws -> Bool {
        let engine = engine
        if byId {
            let id = Int.random(in: 0...(model.rows.count + 1), using: &random)
            log.append("profile containing #\(id)")
            let actual = try await Engines.outcome {
                try await engine.profileResponseBody(containing: id)
            }.decoded(AnswerJSON.contact)
            let expected = model.profile(containing: id)
            #expect(actual == expected, context)
            return actual == expected
        }
        let (email, phone) = someRequest()
        log.append("look up (\(email ?? "-"), \(phone ?? "-"))")
        let actual = try AnswerJSON.profiles(try await engine.lookupResponseBody(email: email, phoneNumber: phone))
        let expected = model.lookup(email: email, phoneNumber: phone)
        #expect(actual == expected, context)
        return actual == expected
    }

    /// Erases a contact, a profile, or values, as `choice` (53–66) says; the id is mostly of a live
    /// contact, sometimes of a tombstone or of no contact.
    mutating func erase(_ choice: Int) async throws -> Bool {
        let erasure: Model.Erasure
        let live = model.rows.filter { !$0.erased }.map(\.id)
        let id = (roll(5) > 0 ? pick(live) : nil) ?? Int.random(in: 1...(model.rows.count + 1), using: &random)
        if choice < 58 {
            erasure = .contact(id)
        } else if choice < 61 {
            erasure = .profile(id)
        } else {
            let (email, phone) = someValue()
            erasure = .values(email: email, phoneNumber: phone)
        }
        log.append("erase \(erasure)")
        let engine = engine
        let actual = try await Engines.outcome {
            try await engine.erase(Engines.erasure(erasure))
        }.decoded(AnswerJSON.erasure)
        let expected = model.erase(erasure)
        #expect(actual == expected, context)
        return actual == expected
    }

    /// Unmerges a link (sometimes a pair that is none), sometimes keeping its values apart; while there
    /// is no link, mostly identifies instead.
    mutating func unmerge() async throws -> Bool {
        if model.links.isEmpty && roll(5) > 0 { return try await identify(dryRun: false) }
        let pair = roll(10) < 9 ? pick(model.links) : nil
        let email = pair?.email ?? pick(emails)!
        let phone = pair?.phoneNumber ?? pick(phones)!
        let keepApart = roll(2) == 0
        log.append("unmerge (\(email), \(phone))\(keepApart ? " keeping apart" : "")")
        let engine = engine
        let actual = try await Engines.outcome {
            try await engine.unmerge(email: email, phoneNumber: phone, keepApart: keepApart)
        }.decoded(AnswerJSON.profiles)
        let expected = model.unmerge(email: email, phoneNumber: phone, keepApart: keepApart)
        #expect(actual == expected, context)
        return actual == expected
    }

    /// Removes a keep-apart rule (sometimes a pair that is none).
    mutating func removeKeepApart() async throws -> Bool {
        let rule = roll(4) < 3 ? pick(model.keepApart) : nil
        let email = rule?.email ?? pick(emails)!
        let phone = rule?.phoneNumber ?? pick(phones)!
        log.append("remove keep-apart (\(email), \(phone))")
        let engine = engine
        let actual = try await Engines.outcome {
            try await engine.removeKeepApart(email: email, phoneNumber: phone)
        }.failed
        let expected = model.removeKeepApart(email: email, phoneNumber: phone)
        #expect(actual == expected, context)
        return actual == expected
    }

    /// Compares every row, link and keep-apart rule, and with `feed` every change event, with the
    /// reference's; checks that rows the reference did not change kept their times, and that changed
    /// ones kept `createdAt` and did not go back in `updatedAt`.
    mutating func compareContents(feed: Bool) async throws -> Bool {
        #expect(model.satisfiesInvariants, "the reference broke an invariant of section 2")
        let contents = try await engine.contents()
        let rows = contents.contacts.map { Model.Row($0) }
        let links = contents.links.map { Model.Pair(email: $0.email, phoneNumber: $0.phoneNumber) }
        let rules = contents.keepApart.map { Model.Pair(email: $0.email, phoneNumber: $0.phoneNumber) }
        #expect(rows == model.rows, context)
        #expect(links == model.links, context)
        #expect(rules == model.keepApart, context)
        var agreed = rows == model.rows && links == model.links && rules == model.keepApart
        if agreed {
            for old in previousRows {
                let new = contents.contacts[old.id - 1]
                let changed = Model.Row(old) != model.rows[old.id - 1]
                #expect(changed || new == old, "#\(old.id) was rewritten though unchanged; \(context.rawValue)")
                #expect(new.createdAt == old.createdAt && new.updatedAt >= old.updatedAt, "#\(old.id): times")
            }
            let created = contents.contacts.map(\.createdAt)
            #expect(zip(created, created.dropFirst()).allSatisfy { $0 <= $1 }, "a later id has an earlier createdAt")
            previousRows = contents.contacts
        }
        if feed {
            let page = try await engine.changes(after: 0, limit: 10_000)
            let events = page.events.map { Model.Event($0) }
            #expect(events == model.events, context)
            #expect(page.latestSeq == UInt64(model.events.count), context)
            agreed = agreed && events == model.events
        }
        return agreed
    }
}

/// Calling the engine: its errors as the reference's failures.
private enum Engines {
    static func outcome<T>(_ body: () async throws -> T) async throws -> Result<T, TrustReferenceModel.Failure> {
        do {
            return .success(try await body())
        } catch let error as EngineError {
            switch error {
            case .blocked: return .failure(.blocked)
            case .notFound: return .failure(.notFound)
            case .erased: return .failure(.erased)
            case .storage: throw error
            }
        }
    }

    static func erasure(_ erasure: TrustReferenceModel.Erasure) -> IdentityEngine.Erasure {
        switch erasure {
        case .contact(let id): .contact(id)
        case .profile(let id): .profile(id)
        case .values(let email, let phone): .values(email: email, phoneNumber: phone)
        }
    }
}

extension Result {
    /// The success decoded by `transform`, or the same failure.
    fileprivate func decoded<Decoded>(_ transform: (Success) throws -> Decoded) throws -> Result<Decoded, Failure> {
        switch self {
        case .success(let value): .success(try transform(value))
        case .failure(let failure): .failure(failure)
        }
    }

    fileprivate var failed: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}

extension TrustReferenceModel.Row {
    init(_ contact: Contact) {
        self.init(
            id: contact.id, email: contact.email, phoneNumber: contact.phoneNumber, linkedId: contact.linkedId,
            erased: contact.deletedAt != nil
        )
    }
}

extension TrustReferenceModel.Event {
    init(_ event: ChangeEvent) {
        self.init(
            seq: Int(event.seq), type: event.kind.name, contactIds: event.contactIds,
            primaryContactIds: event.primaryContactIds, mergedPrimaryIds: event.mergedPrimaryIds,
            erasedContactIds: event.erasedContactIds, previousPrimaryContactIds: event.previousPrimaryContactIds
        )
    }
}

/// Reads the engine's answers with `JSONSerialization`, strictly: every member the answer must have,
/// no other, and `ignored` only when something was ignored. `detail` is checked to be a string only.
private enum AnswerJSON {
    typealias Model = TrustReferenceModel

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static func identify(_ bytes: [UInt8], dryRun: Bool) throws -> Model.IdentifyAnswer {
        let object = try object(bytes, keys: ["contact", "dryRun", "ignored"])
        guard (object["dryRun"] != nil) == dryRun else { throw Malformed(description: "dryRun member: \(text(bytes))") }
        var answer = Model.IdentifyAnswer(contact: try profile(object["contact"]), ignored: [])
        if let dry = object["dryRun"] {
            let dry = try members(dry, keys: ["created", "mergedPrimaryIds"])
            answer.dryRun = Model.DryRun(
                created: try integers(dry["created"]), mergedPrimaryIds: try integers(dry["mergedPrimaryIds"])
            )
        }
        if let ignored = object["ignored"] {
            guard let entries = ignored as? [Any], !entries.isEmpty else {
                throw Malformed(description: "ignored must be a non-empty array: \(text(bytes))")
            }
            answer.ignored = try entries.map { entry in
                let entry = try members(entry, keys: ["field", "reason", "detail"])
                guard let field = entry["field"] as? String, let reason = entry["reason"] as? String,
                    entry["detail"] is String
                else { throw Malformed(description: "ignored entry: \(text(bytes))") }
                return Model.Ignored(field: field, reason: reason)
            }
        }
        return answer
    }

    /// `{"contact":{...}}`.
    static func contact(_ bytes: [UInt8]) throws -> Model.ProfileView {
        try profile(try object(bytes, keys: ["contact"])["contact"])
    }

    /// `{"profiles":[...]}`.
    static func profiles(_ bytes: [UInt8]) throws -> [Model.ProfileView] {
        try profileList(try object(bytes, keys: ["profiles"])["profiles"])
    }

    /// `{"erasedContactIds":[...],"profiles":[...]}`.
    static func erasure(_ bytes: [UInt8]) throws -> Model.ErasureAnswer {
        let object = try object(bytes, keys: ["erasedContactIds", "profiles"])
        return Model.ErasureAnswer(
            erasedContactIds: try integers(object["erasedContactIds"]), profiles: try profileList(object["profiles"])
        )
    }

    private static func object(_ bytes: [UInt8], keys: Set<String>) throws -> [String: Any] {
        let parsed = try JSONSerialization.jsonObject(with: Data(bytes))
        do {
            return try members(parsed, keys: keys)
        } catch {
            throw Malformed(description: "\(error) in \(text(bytes))")
        }
    }

    /// The members of a JSON object, which must all be among `keys`.
    private static func members(_ value: Any?, keys: Set<String>) throws -> [String: Any] {
        guard let object = value as? [String: Any], Set(object.keys).isSubset(of: keys) else {
            throw Malformed(description: "expected an object with members among \(keys.sorted())")
        }
        return object
    }

    private static func profile(_ value: Any?) throws -> Model.ProfileView {
        let keys: Set<String> = ["primaryContactId", "emails", "phoneNumbers", "secondaryContactIds"]
        let object = try members(value, keys: keys)
        guard Set(object.keys) == keys, let primary = integer(object["primaryContactId"]),
            let emails = object["emails"] as? [String], let phones = object["phoneNumbers"] as? [String]
        else { throw Malformed(description: "not a profile: \(String(describing: value))") }
        return Model.ProfileView(
            primaryContactId: primary, emails: emails, phoneNumbers: phones,
            secondaryContactIds: try integers(object["secondaryContactIds"])
        )
    }

    private static func profileList(_ value: Any?) throws -> [Model.ProfileView] {
        guard let list = value as? [Any] else { throw Malformed(description: "not a list of profiles") }
        return try list.map(profile)
    }

    private static func integers(_ value: Any?) throws -> [Int] {
        guard let list = value as? [Any] else { throw Malformed(description: "not a list of ids") }
        return try list.map { item in
            guard let id = integer(item) else { throw Malformed(description: "not an id: \(item)") }
            return id
        }
    }

    private static func integer(_ value: Any?) -> Int? {
        if let number = value as? Int { return number }
        return (value as? NSNumber)?.intValue
    }

    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}

import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// Crashes under load, races, and the store checker: the promises of SPEC.md sections 2 and 5
/// when things go wrong.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ReliabilityTests {
    /// One acknowledged identify: what the server answered for it.
    struct Acknowledged: Sendable {
        var primary: Int
        var members: [Int]
        var emails: [String]
        var phones: [String]

        init?(_ contact: [String: Any]?) {
            guard let contact, let primary = contact["primaryContactId"] as? Int else { return nil }
            self.primary = primary
            members = [primary] + (contact["secondaryContactIds"] as? [Int] ?? [])
            emails = contact["emails"] as? [String] ?? []
            phones = contact["phoneNumbers"] as? [String] ?? []
        }
    }

    /// Every acknowledged answer holds in `rows`: its contacts exist in one profile whose primary is
    /// no newer than the acknowledged one, and that profile still carries every email and phone.
    static func expectAcknowledgedHold(_ acknowledged: [Acknowledged], in rows: [Contact], context: String) {
        let primaryOf = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.linkedId ?? $0.id) })
        var emailsOf: [Int: Set<String>] = [:]
        var phonesOf: [Int: Set<String>] = [:]
        for row in rows {
            let primary = row.linkedId ?? row.id
            if let email = row.email { emailsOf[primary, default: []].insert(email) }
            if let phone = row.phoneNumber { phonesOf[primary, default: []].insert(phone) }
        }
        for answer in acknowledged {
            guard let primary = primaryOf[answer.primary] else {
                Issue.record("\(context): acknowledged contact \(answer.primary) is missing")
                continue
            }
            #expect(primary <= answer.primary, "\(context)")
            for member in answer.members where primaryOf[member] != primary {
                Issue.record("\(context): acknowledged contact \(member) left profile \(primary)")
            }
            #expect(Set(answer.emails).isSubset(of: emailsOf[primary] ?? []), "\(context): emails of \(answer.primary) lost")
            #expect(Set(answer.phones).isSubset(of: phonesOf[primary] ?? []), "\(context): phones of \(answer.primary) lost")
        }
    }

    /// The seed of each random test below: it picks the requests and the moment of each kill (the
    /// interleaving of the clients is the machine's). A failure names it, to replay the same choices.
    @Test("kill -9 under load over both transports loses no acknowledged answer, round after round", arguments: [7] as [UInt64])
    func crashUnderLoad(seed: UInt64) throws {
        let directory = TemporaryDirectory()
        var random = SeededGenerator(seed: seed)
        var acknowledged: [Acknowledged] = []
        for round in 0..<8 {
            let server = try ServerProcess(dataDirectory: directory.store)
            let received = Protected<[Acknowledged]>([])
            let clients = (0..<4).map { client in
                TestSocket.async {
                    var local = SeededGenerator(seed: seed, part: round * 16 + client)
                    let socket = client % 2 == 0 ? try? TestSocket(port: server.tcpPort, timeout: 5) : nil
                    for index in 0..<100_000 {
                        // Small universes so links and merges are frequent, plus a stream of new people.
                        let email = index % 3 == 0 ? "new-\(round)-\(client)-\(index)@x.io"
                            : "e\(Int.random(in: 0..<300, using: &local))@x.io"
                        let body = #"{"email":"\#(email)","phoneNumber":"\#(Int.random(in: 0..<200, using: &local))"}"#
                        var contact: [String: Any]?
                        if let socket {
                            guard (try? socket.send(body + "\n")) != nil, let line = try? socket.readLine() else { return }
                            contact = (try? lineJSON(line))?.flatMap { $0["contact"] as? [String: Any] }
                        } else {
                            guard let answer = try? HTTPExchange.post(port: server.httpPort, json: body) else { return }
                            contact = answer.json["contact"] as? [String: Any]
                        }
                        guard let acknowledgedAnswer = Acknowledged(contact) else { return }
                        received.withLock { $0.append(acknowledgedAnswer) }
                    }
                }
            }
            // Kill at a random moment under load: once the clients have a random number of answers.
            let target = Int.random(in: 100...1500, using: &random)
            let reached = waitUntil { received.withLock { $0.count } >= target }
            server.stop(signal: SIGKILL)
            for client in clients { _ = try? client.get() }
            acknowledged += received.withLock { $0 }
            #expect(reached, "seed \(seed), round \(round): the clients had only \(received.withLock { $0.count }) answers")

            let rows = try StoredContacts.read(dataDirectory: directory.store)
            Self.expectAcknowledgedHold(acknowledged, in: rows, context: "seed \(seed), round \(round)")
            let check = try runIdentityGraph(["check", "--data-dir", directory.store])
            #expect(check.status == 0, "seed \(seed), round \(round): \(check.output)")
        }
        #expect(acknowledged.count > 100, "the clients got too few answers to test anything")
    }

    @Test("many clients sending the same new email at the same instant get one primary")
    func sameNewEmailAtOnce() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let lines = try TestSocket.sameInstant(port: server.tcpPort, count: 60, request: #"{"email":"race@x.io"}"# + "\n")
        let http = (0..<20).map { _ in
            TestSocket.async { try HTTPExchange.post(port: server.httpPort, json: #"{"email":"race@x.io"}"#) }
        }
        var primaries = Set<Int>()
        for line in lines {
            let contact = try #require(try lineJSON(line)?["contact"] as? [String: Any])
            primaries.insert(contact["primaryContactId"] as? Int ?? -1)
        }
        for exchange in http {
            primaries.insert((try exchange.get().json["contact"] as? [String: Any])?["primaryContactId"] as? Int ?? -1)
        }
        #expect(primaries == [1])
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/2").status == 404)
    }

    @Test("many clients merging overlapping profiles at once end with one profile and a valid store")
    func overlappingMergesAtOnce() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let count = 40
        let setup = try TestSocket(port: server.tcpPort)
        for index in 0..<count {
            try setup.send(#"{"email":"m\#(index)@x.io","phoneNumber":"\#(1000 + index)"}"# + "\n")
            _ = try setup.readLine()
        }
        // Client i joins profile i with profile i + 1: together they chain every profile into one.
        let sockets = try (0..<count - 1).map { _ in try TestSocket(port: server.tcpPort) }
        for (index, socket) in sockets.enumerated() {
            try socket.send(#"{"email":"m\#(index)@x.io","phoneNumber":"\#(1001 + index)"}"# + "\n")
        }
        for socket in sockets { _ = try #require(try lineJSON(socket.readLine())?["contact"]) }
        let final = try #require(HTTPExchange.post(port: server.httpPort, json: #"{"email":"m0@x.io"}"#).json["contact"] as? [String: Any])
        #expect(final["primaryContactId"] as? Int == 1)
        #expect((final["secondaryContactIds"] as? [Int]) == Array(2...count))
        #expect((final["emails"] as? [String])?.count == count)
        #expect(server.stop() == 0)
        let check = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("\(count) contacts, 1 profiles"))
    }

    @Test("check reports every violation of a broken store and exits 1; serve refuses it")
    func checkFindsBrokenStore() throws {
        let directory = TemporaryDirectory()
        let stamp = Timestamp(millisecondsSince1970: 1_700_000_000_000)
        let store = try ContactStore(directory: directory.store)
        try store.write([
            Contact(id: 1, email: "a@x.io", phoneNumber: "1", linkedId: nil, createdAt: stamp, updatedAt: stamp),
            Contact(id: 2, email: "a@x.io", phoneNumber: "2", linkedId: nil, createdAt: stamp, updatedAt: stamp),
            Contact(id: 3, email: nil, phoneNumber: "3", linkedId: 2, createdAt: stamp, updatedAt: stamp),
            Contact(id: 5, email: nil, phoneNumber: "5", linkedId: 7, createdAt: stamp, updatedAt: stamp),
        ])
        let check = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(check.status == 1)
        #expect(check.output.contains("4 contacts"))
        #expect(check.output.contains("violation: email a@x.io belongs to profiles 1 and 2"))
        #expect(check.output.contains("violation: contact ids are not dense"))
        #expect(check.output.contains("violation: contact 5 links to contact 7, which does not exist"))

        let serve = try runIdentityGraph(["serve", "--data-dir", directory.store, "--http-port", "0", "--tcp-port", "0"])
        #expect(serve.status == 1)
        #expect(serve.output.contains("identity-graph check"))
    }

    @Test("check on a healthy store prints the summary and exits 0")
    func checkOnHealthyStore() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for body in [#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"1"}"#,
                     #"{"email":"c@x.io"}"#] {
            #expect(try HTTPExchange.post(port: server.httpPort, json: body).status == 200)
        }
        let live = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(live.status == 0)
        #expect(live.output.contains("3 contacts, 2 profiles, largest profile 2 contacts, 0 violations"))
    }
}

/// kill -9 while identify and erasures run together: the store and its change feed agree.
@Suite(.serialized, .timeLimit(.minutes(10))) struct FeedCrashTests {
    @Test(
        "kill -9 under identify and erasures: every acknowledged change has its event, every event its rows, no seq gap",
        arguments: [11] as [UInt64]
    )
    func crashWithErasures(seed: UInt64) throws {
        let directory = TemporaryDirectory()
        var random = SeededGenerator(seed: seed)
        var erasedAcknowledged = Set<Int>()
        var identifyAcknowledged = 0
        for round in 0..<4 {
            let server = try ServerProcess(dataDirectory: directory.store)
            let erased = Protected<[Int]>([])
            let identified = Protected(0)
            let clients = (0..<3).map { client in
                TestSocket.async {
                    var local = SeededGenerator(seed: seed, part: round * 16 + client)
                    for index in 0..<100_000 {
                        if client == 2 {
                            // The eraser: a random contact, often one that exists.
                            let id = Int.random(in: 1...(50 + index * 2), using: &local)
                            guard let answer = try? HTTPExchange.send(port: server.httpPort, method: "DELETE",
                                                                       path: "/contacts/\(id)") else { return }
                            if answer.status == 200 {
                                let ids = answer.json["erasedContactIds"] as? [Int] ?? []
                                erased.withLock { $0 += ids }
                            } else if answer.status != 404 {
                                return
                            }
                        } else {
                            let body = #"{"email":"r\#(round)-\#(client)-\#(index % 97)@x.io","phoneNumber":"\#(Int.random(in: 0..<150, using: &local))"}"#
                            guard let answer = try? HTTPExchange.post(port: server.httpPort, json: body),
                                answer.status == 200
                            else { return }
                            identified.withLock { $0 += 1 }
                        }
                    }
                }
            }
            // Kill at a random moment under load: once a random number of changes are acknowledged.
            let target = Int.random(in: 100...1000, using: &random)
            let acknowledgedNow = { identified.withLock { $0 } + erased.withLock { $0.count } }
            let reached = waitUntil { acknowledgedNow() >= target }
            server.stop(signal: SIGKILL)
            for client in clients { _ = try? client.get() }
            #expect(reached, "seed \(seed), round \(round): only \(acknowledgedNow()) changes acknowledged")
            erasedAcknowledged.formUnion(erased.withLock { $0 })
            identifyAcknowledged += identified.withLock { $0 }

            // Read the store and its whole feed through a restarted server.
            let restarted = try ServerProcess(dataDirectory: directory.store)
            var events: [[String: Any]] = []
            while true {
                let page = try HTTPExchange.get(
                    port: restarted.httpPort, path: "/changes?after=\(events.count)&limit=10000"
                )
                let changes = page.json["changes"] as? [[String: Any]] ?? []
                events += changes
                if changes.isEmpty { break }
            }
            #expect(restarted.stop() == 0)
            let rows = try StoredContacts.read(dataDirectory: directory.store)
            let seqs = events.compactMap { $0["seq"] as? Int }
            #expect(seqs == Array(stride(from: 1, through: seqs.count, by: 1)), "seed \(seed), round \(round): a seq gap")
            var lastWrite: [Int: [String: Any]] = [:]
            var created = Set<Int>()
            var tombstoned = Set<Int>()
            for event in events {
                let ids = event["contactIds"] as? [Int] ?? []
                for id in ids {
                    #expect(id >= 1 && id <= rows.count, "event \(event["seq"] ?? "?") names contact \(id), not in the store")
                    lastWrite[id] = event
                }
                if event["type"] as? String == "created" { created.formUnion(ids) }
                tombstoned.formUnion(event["erasedContactIds"] as? [Int] ?? [])
            }
            for row in rows {
                #expect(created.contains(row.id), "seed \(seed), round \(round): contact \(row.id) has no created event")
                if row.deletedAt != nil {
                    #expect(tombstoned.contains(row.id), "seed \(seed), round \(round): erased contact \(row.id) has no erased event")
                } else if let event = lastWrite[row.id] {
                    // The newest event that wrote the row names the profile it is in now.
                    let primaries = event["primaryContactIds"] as? [Int] ?? []
                    #expect(primaries.contains(row.linkedId ?? row.id), "seed \(seed), round \(round): contact \(row.id)")
                }
            }
            for id in erasedAcknowledged {
                #expect(rows.first { $0.id == id }?.deletedAt != nil, "seed \(seed): acknowledged erasure of \(id) lost")
                #expect(tombstoned.contains(id), "seed \(seed): acknowledged erasure of \(id) has no event")
            }
            let check = try runIdentityGraph(["check", "--data-dir", directory.store])
            #expect(check.status == 0, "seed \(seed), round \(round): \(check.output)")
        }
        #expect(identifyAcknowledged > 100 && erasedAcknowledged.count > 10, "too few acknowledged changes to test anything")
    }
}

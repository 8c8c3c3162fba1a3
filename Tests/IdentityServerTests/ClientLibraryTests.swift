import Foundation
import IdentityGraphClient
import NIOSSL
import Testing

/// The `IdentityGraphClient` library (issue 15, item 3) against real `identity-graph serve` processes.
@Suite(.timeLimit(.minutes(5))) struct ClientLibraryTests {
    typealias Profile = IdentityGraphClient.Profile

    @Test("identify creates and merges, and each answer is the HTTP answer to the same request")
    func identifyMatchesHTTP() async throws {
        let directory = TemporaryDirectory()
        let overLine = try ServerProcess(dataDirectory: directory.path + "/line")
        let overHTTP = try ServerProcess(dataDirectory: directory.path + "/http")
        let client = try IdentityGraphClient(host: "127.0.0.1", port: overLine.tcpPort)
        let httpPort = overHTTP.httpPort
        // The README's story, then a merge of two profiles, values to normalize, and dry runs.
        let requests: [(email: String?, phone: String?, dryRun: Bool)] = [
            ("lorraine@hillvalley.edu", "123456", false),
            ("mcfly@hillvalley.edu", "123456", false),
            ("george@hillvalley.edu", "919191", false),
            ("biffsucks@hillvalley.edu", "717171", false),
            ("george@hillvalley.edu", "717171", false),
            (nil, "123456", false),
            ("  Doc@HillValley.EDU ", "(555) 123-4567", false),
            ("marty@hillvalley.edu", "123456", true),
            ("lorraine@hillvalley.edu", "919191", true),
        ]
        let answers = try await withDeadline(60, "the identify calls") {
            var answers: [IdentityGraphClient.IdentifyAnswer] = []
            for request in requests {
                answers.append(
                    try await client.identify(email: request.email, phoneNumber: request.phone, dryRun: request.dryRun)
                )
            }
            return answers
        }
        for (request, answer) in zip(requests, answers) {
            var body: [String: Any] = [:]
            body["email"] = request.email
            body["phoneNumber"] = request.phone
            let http = try HTTPExchange.post(
                port: httpPort, path: request.dryRun ? "/identify?dryRun=true" : "/identify",
                json: Array(JSONSerialization.data(withJSONObject: body))
            )
            #expect(http.status == 200, "\(request): \(http.text)")
            #expect(answer.profile == profile(http.json["contact"]), "\(request): HTTP said \(http.text)")
            #expect(answer.ignored.isEmpty && http.json["ignored"] == nil)
            let dryRun = (http.json["dryRun"] as? [String: Any]).map {
                IdentityGraphClient.DryRunOutcome(
                    created: $0["created"] as? [Int] ?? [-1], mergedPrimaryIds: $0["mergedPrimaryIds"] as? [Int] ?? [-1]
                )
            }
            #expect(answer.dryRun == dryRun, "\(request): HTTP said \(http.text)")
        }
        // And what they say, so that two servers that agree on something wrong do not pass.
        #expect(answers[1].profile == Profile(
            primaryContactId: 1, emails: ["lorraine@hillvalley.edu", "mcfly@hillvalley.edu"], phoneNumbers: ["123456"],
            secondaryContactIds: [2]
        ))
        #expect(answers[4].profile == Profile(
            primaryContactId: 3, emails: ["george@hillvalley.edu", "biffsucks@hillvalley.edu"],
            phoneNumbers: ["919191", "717171"], secondaryContactIds: [4]
        ))
        #expect(answers[6].profile.emails == ["doc@hillvalley.edu"] && answers[6].profile.phoneNumbers == ["5551234567"])
        #expect(answers[7].dryRun == IdentityGraphClient.DryRunOutcome(created: [6], mergedPrimaryIds: []))
        #expect(answers[8].dryRun == IdentityGraphClient.DryRunOutcome(created: [], mergedPrimaryIds: [3]))
        await client.close()
        #expect(overLine.stop() == 0)
        #expect(overHTTP.stop() == 0)
    }

    @Test("1,000 identify calls from 1,000 tasks share one connection, each answered with its own profile")
    func pipelinedCalls() async throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let client = try IdentityGraphClient(host: "127.0.0.1", port: server.tcpPort)
        // 100 people with 10 emails each, joined by the phone number; all at once, so that more calls
        // wait than the 512 the client lets onto the wire.
        @Sendable func email(_ index: Int) -> String { "shopper\(index)@x.io" }
        @Sendable func phone(_ index: Int) -> String { "\(5_550_000 + index % 100)" }
        let answers = try await withDeadline(120, "1,000 concurrent identify calls") {
            try await withThrowingTaskGroup(of: (Int, IdentityGraphClient.IdentifyAnswer).self) { group in
                for index in 0..<1000 {
                    group.addTask { (index, try await client.identify(email: email(index), phoneNumber: phone(index))) }
                }
                var answers: [Int: IdentityGraphClient.IdentifyAnswer] = [:]
                for try await (index, answer) in group { answers[index] = answer }
                return answers
            }
        }
        #expect(answers.count == 1000)
        let profiles = try await withDeadline(60, "the look-ups") {
            var profiles: [String: [Profile]] = [:]
            for person in 0..<100 { profiles[phone(person)] = try await client.lookup(phoneNumber: phone(person)) }
            return profiles
        }
        var primaries = Set<Int>()
        for (phoneNumber, found) in profiles {
            #expect(found.count == 1, "\(phoneNumber): \(found)")
            guard let profile = found.first else { continue }
            primaries.insert(profile.primaryContactId)
            #expect(profile.emails.count == 10 && profile.secondaryContactIds.count == 9, "\(profile)")
            #expect(profile.phoneNumbers == [phoneNumber])
        }
        #expect(primaries.count == 100)
        for (index, answer) in answers {
            // A caller given another's answer would see another email, or another person's phone.
            #expect(answer.profile.emails.contains(email(index)), "call \(index) got \(answer.profile)")
            #expect(answer.profile.phoneNumbers == [phone(index)], "call \(index) got \(answer.profile)")
            // The oldest contact stays primary, so every answer already names the final primary.
            #expect(answer.profile.primaryContactId == profiles[phone(index)]?.first?.primaryContactId)
        }
        let last = try await client.contact(id: 1000)
        #expect(last.email != nil && last.phoneNumber != nil)
        await #expect(throws: IdentityGraphClient.ServerError.self) { try await client.contact(id: 1001) }
        // One connection carried it all.
        #expect(try server.metric(#"identity_graph_connections{transport="line"}"#) == 1)
        await client.close()
        #expect(server.stop() == 0)
    }

    @Test("lookup, contact and ping; a closed client refuses calls")
    func readsAndPing() async throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let client = try IdentityGraphClient(host: "127.0.0.1", port: server.tcpPort)
        try await withDeadline(60, "the calls") {
            try await client.ping()
            _ = try await client.identify(email: "a@x.io", phoneNumber: "1")
            _ = try await client.identify(email: "b@x.io", phoneNumber: "1")
            _ = try await client.identify(email: "c@x.io", phoneNumber: "2")
            #expect(try await client.lookup(email: "b@x.io") == [
                Profile(primaryContactId: 1, emails: ["a@x.io", "b@x.io"], phoneNumbers: ["1"], secondaryContactIds: [2])
            ])
            #expect(try await client.lookup(email: "a@x.io", phoneNumber: "2").map(\.primaryContactId) == [1, 3])
            #expect(try await client.lookup(email: "nobody@x.io").isEmpty)
            let secondary = try await client.contact(id: 2)
            #expect(secondary.id == 2 && secondary.email == "b@x.io" && secondary.phoneNumber == "1")
            #expect(secondary.linkedId == 1 && secondary.linkPrecedence == "secondary" && secondary.deletedAt == nil)
            #expect(secondary.createdAt.hasSuffix("Z") && secondary.updatedAt == secondary.createdAt)
            let primary = try await client.contact(id: 1)
            #expect(primary.linkedId == nil && primary.linkPrecedence == "primary")
            do {
                _ = try await client.contact(id: 99)
                Issue.record("contact 99 was found")
            } catch let error as IdentityGraphClient.ServerError {
                #expect(error.status == 404 && error.detail.contains("99"), "\(error)")
            }
        }
        await client.close()
        do {
            try await client.ping()
            Issue.record("a closed client answered a ping")
        } catch let error as IdentityGraphClient.ConnectionError {
            #expect(error.reason == .closed)
        }
        #expect(server.stop() == 0)
    }

    @Test("a refused request throws the server's status, title and detail; the connection goes on")
    func serverErrors() async throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let client = try IdentityGraphClient(host: "127.0.0.1", port: server.tcpPort)
        try await withDeadline(60, "the calls") {
            for (email, phone, field) in [("not-an-email", nil, "email"), (nil, "12ab", "phoneNumber"), (nil, nil, "email")] {
                do {
                    _ = try await client.identify(email: email, phoneNumber: phone)
                    Issue.record("identify(\(email ?? "nil"), \(phone ?? "nil")) was accepted")
                } catch let error as IdentityGraphClient.ServerError {
                    #expect(error.status == 400 && !error.title.isEmpty, "\(error)")
                    #expect(error.detail.contains(field) && !error.detail.isEmpty, "\(error)")
                    #expect(error.retryAfter == nil)
                }
            }
            do {
                _ = try await client.lookup(email: "not-an-email")
                Issue.record("a look-up of an invalid email was answered")
            } catch let error as IdentityGraphClient.ServerError {
                #expect(error.status == 400 && error.detail.hasPrefix("email"), "\(error)")
            }
            try await client.ping()
        }
        await client.close()
        #expect(server.stop() == 0)
    }

    @Test("with --auth-tokens the right token works, a wrong or missing one gets 401, a read token 403")
    func tokens() async throws {
        let directory = TemporaryDirectory()
        let tokens = directory.path + "/tokens"
        try TestTokens.write(to: tokens)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--auth-tokens", tokens])
        let port = server.tcpPort
        try await withDeadline(60, "the calls") {
            let writer = try IdentityGraphClient(host: "127.0.0.1", port: port, token: TestTokens.write)
            #expect(try await writer.identify(email: "token@x.io").profile.primaryContactId == 1)
            await writer.close()

            for token in ["wrong-token-0000", nil] {
                let stranger = try IdentityGraphClient(host: "127.0.0.1", port: port, token: token)
                do {
                    _ = try await stranger.identify(email: "stranger@x.io")
                    Issue.record("identify with token \(token ?? "none") was accepted")
                } catch let error as IdentityGraphClient.ServerError {
                    #expect(error.status == 401, "\(error)")
                }
                await stranger.close()
            }

            let reader = try IdentityGraphClient(host: "127.0.0.1", port: port, token: TestTokens.read)
            #expect(try await reader.lookup(email: "token@x.io").count == 1)
            #expect(try await reader.lookup(email: "stranger@x.io").isEmpty)
            do {
                _ = try await reader.identify(email: "reader@x.io")
                Issue.record("identify with a read token was accepted")
            } catch let error as IdentityGraphClient.ServerError {
                #expect(error.status == 403, "\(error)")
            }
            await reader.close()
        }
        #expect(server.stop() == 0)
    }

    @Test("TLS: a client that trusts the server's certificate is served; one that does not cannot connect")
    func tls() async throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: TestCertificate.serveFlags)
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestCertificate.files.certificate))
        let client = try IdentityGraphClient(
            host: "127.0.0.1", port: server.tcpPort, tls: trusting, serverHostname: "localhost"
        )
        // The system's roots do not hold a throwaway certificate.
        let doubting = try IdentityGraphClient(
            host: "127.0.0.1", port: server.tcpPort, tls: .makeClientConfiguration(), serverHostname: "localhost"
        )
        try await withDeadline(60, "the calls over TLS") {
            #expect(try await client.identify(email: "tls@x.io", phoneNumber: "1").profile.primaryContactId == 1)
            try await client.ping()
            #expect(try await client.contact(id: 1).email == "tls@x.io")
            do {
                try await doubting.ping()
                Issue.record("a client that does not trust the certificate was served")
            } catch let error as IdentityGraphClient.ConnectionError {
                #expect(error.reason == .cannotConnect, "\(error)")
            }
        }
        await client.close()
        await doubting.close()
        #expect(server.stop() == 0)
    }

    @Test("calls in flight when the server dies fail and are not sent again; later calls reconnect")
    func reconnect() async throws {
        let directory = TemporaryDirectory()
        let first = try ServerProcess(dataDirectory: directory.store)
        let port = first.tcpPort
        let client = try IdentityGraphClient(configuration: .init(
            host: "127.0.0.1", port: port, reconnectBackoff: .init(initialDelay: .milliseconds(50))
        ))
        let before = try await withDeadline(60, "the first call") { try await client.identify(email: "before@x.io") }
        #expect(before.profile.primaryContactId == 1)
        // Stopped, the server reads nothing: the calls below are on the wire, unanswered, when it dies.
        kill(first.process.processIdentifier, SIGSTOP)
        let calls = Task {
            try await withThrowingTaskGroup(of: (any Error)?.self) { group in
                group.addTask {
                    do { _ = try await client.identify(email: "in-flight@x.io") } catch { return error }
                    return nil
                }
                for _ in 0..<10 {
                    group.addTask {
                        do { try await client.ping() } catch { return error }
                        return nil
                    }
                }
                var errors: [(any Error)?] = []
                for try await error in group { errors.append(error) }
                return errors
            }
        }
        // 11 request lines of at least 20 bytes each, waiting in the stopped server's socket.
        #expect(try await waitForUnreadBytes(port: port, atLeast: 11 * 20), "the calls never reached the stopped server")
        first.stop(signal: SIGKILL)
        let errors = try await withDeadline(60, "the calls in flight to fail") { try await calls.value }
        #expect(errors.count == 11)
        for error in errors {
            #expect((error as? IdentityGraphClient.ConnectionError)?.reason == .connectionLost, "\(String(describing: error))")
        }
        // Nothing listens now.
        try await withDeadline(60, "a call with the server gone") {
            do {
                try await client.ping()
                Issue.record("a ping was answered with no server")
            } catch {
                #expect((error as? IdentityGraphClient.ConnectionError)?.reason == .cannotConnect, "\(error)")
            }
        }
        let second = try ServerProcess(dataDirectory: directory.store, arguments: ["--tcp-port", "\(port)"])
        #expect(second.tcpPort == port)
        try await withDeadline(60, "the calls after the restart") {
            try await client.ping()
            #expect(try await client.identify(email: "before@x.io").profile.primaryContactId == 1)
            // The identify lost in flight was never applied, and the client did not send it again.
            #expect(try await client.lookup(email: "in-flight@x.io").isEmpty)
        }
        await client.close()
        #expect(second.stop() == 0)
    }

    @Test("send(line:) relays a line as it is and returns the answer with the line's own id")
    func rawLines() async throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let client = try IdentityGraphClient(host: "127.0.0.1", port: server.tcpPort)
        try await withDeadline(60, "the raw lines") {
            // A 20-digit phone number survives only if the line's bytes go out as they are.
            let created = try await client.send(
                line: Array(#"{"email":"raw@x.io","phoneNumber":12345678901234567890,"id":"caller-7"}"#.utf8)
            )
            #expect(String(decoding: created, as: UTF8.self) == #"{"id":"caller-7","contact":{"primaryContactId":1,"emails":["raw@x.io"],"phoneNumbers":["12345678901234567890"],"secondaryContactIds":[]}}"#)

            let noID = try await client.send(line: Array(#"{"op":"get","contactId":1}"#.utf8))
            #expect(String(decoding: noID, as: UTF8.self).hasPrefix(#"{"id":null,"record":{"id":1,"email":"raw@x.io""#))

            // An error line is an answer to relay, not an error of the client.
            let refused = try await client.send(line: Array(#"{"id":9,"email":5}"#.utf8))
            let error = try lineJSON(String(decoding: refused, as: UTF8.self))?["error"] as? [String: Any]
            #expect(try lineJSON(String(decoding: refused, as: UTF8.self))?["id"] as? Int == 9)
            #expect(error?["status"] as? Int == 400 && (error?["detail"] as? String)?.contains("email") == true)

            // Line breaks between tokens do not split the request on the wire.
            let spread = try await client.send(line: Array("{\n  \"op\": \"ping\",\r\n  \"id\": 5\n}".utf8))
            #expect(String(decoding: spread, as: UTF8.self) == #"{"id":5,"ok":true}"#)
        }
        try await withDeadline(60, "lines that are not sent") {
            for line in ["not json", "", #"{"id":true,"op":"ping"}"#, #"{"op":"ping"} {"op":"ping"}"#] {
                do {
                    _ = try await client.send(line: Array(line.utf8))
                    Issue.record("\(line) was sent")
                } catch let error as IdentityGraphClient.ServerError {
                    #expect(error.status == 400, "\(line): \(error)")
                } catch {
                    Issue.record("\(line): \(error)")
                }
            }
        }
        try await withDeadline(60, "a ping after them") { try await client.ping() }
        await client.close()
        #expect(server.stop() == 0)
    }
}

/// The profile in an HTTP answer's `contact`, for comparison with the client's.
private func profile(_ json: Any?) -> IdentityGraphClient.Profile? {
    guard let object = json as? [String: Any], let primary = object["primaryContactId"] as? Int else { return nil }
    return IdentityGraphClient.Profile(
        primaryContactId: primary, emails: object["emails"] as? [String] ?? [],
        phoneNumbers: object["phoneNumbers"] as? [String] ?? [], secondaryContactIds: object["secondaryContactIds"] as? [Int] ?? []
    )
}

/// Runs `body`, failing (and giving up) when it takes longer than `seconds`: a server that stops
/// answering fails its test instead of hanging the suite.
private func withDeadline<T: Sendable>(
    _ seconds: Double, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let result = first else {
            group.cancelAll()
            Issue.record("\(what) did not finish within \(Int(seconds)) s", sourceLocation: sourceLocation)
            throw DeadlinePassed()
        }
        group.cancelAll()
        return result
    }
}

private struct DeadlinePassed: Error {}

/// Waits (at most 30 s) until the server's ends of its connections on loopback `port` hold at
/// least `count` bytes it has not read (`rx_queue` in /proc/net/tcp); returns whether they do.
private func waitForUnreadBytes(port: Int, atLeast count: Int) async throws -> Bool {
    let deadline = Date().addingTimeInterval(30)
    let localPort = String(format: "%04X", port)
    while Date() < deadline {
        // Read to the end: a /proc file reports no size, and one read would stop at its first page.
        let table = String(decoding: FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        var unread = 0
        for row in table.split(separator: "\n").dropFirst() {
            let fields = row.split(separator: " ")
            // local_address is HEXIP:HEXPORT; st 01 is ESTABLISHED; tx_queue:rx_queue in hex.
            guard fields.count > 4, fields[1].hasSuffix(":" + localPort), fields[3] == "01" else { continue }
            unread += Int(fields[4].split(separator: ":").last ?? "", radix: 16) ?? 0
        }
        if unread >= count { return true }
        // Not Thread.sleep: the calls that should arrive run on the same few threads.
        try await Task.sleep(for: .milliseconds(10))
    }
    return false
}

import ConformanceSupport
import Foundation
import Testing

/// The shared scenarios of `../shared/conformance/operations.json` against the real server, each on a
/// fresh store with the scenario's guards given as flags: every op over HTTP, and identify, dry runs
/// and look-ups over the line protocol (the only ops it has). Final rows are read back over HTTP.
@Suite(.timeLimit(.minutes(5))) struct OperationsOverWireTests {
    @Test("operations scenario over HTTP", arguments: OperationScenario.all)
    func overHTTP(_ scenario: OperationScenario) throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: guardFlags(scenario, in: directory.path))
        for (index, step) in scenario.steps.enumerated() {
            let seqBefore = try latestSeq(server)
            let answer = try Self.send(step, port: server.httpPort)
            #expect(answer.status == step.status, "step \(index) (\(step.op)): \(answer.text)")
            if step.status == 200, let expected = step.response {
                #expect(answer.headers["content-type"] == "application/json")
                #expect(OperationScenario.canonicalJSON(bytes: answer.body) == expected, "step \(index) (\(step.op))")
            } else if step.status != 200 {
                #expect(answer.headers["content-type"] == "application/problem+json")
                #expect((answer.json["detail"] as? String)?.isEmpty == false)
                #expect(try latestSeq(server) == seqBefore, "a rejected step \(index) recorded a change")
            }
        }
        try expectFinalRows(scenario, server: server)
        #expect(server.stop() == 0)
        try expectFinalLinks(scenario, store: directory.store)
    }

    @Test(
        "operations scenario over the line protocol",
        arguments: OperationScenario.all.filter { !$0.uses(["eraseContact", "eraseProfile", "eraseValues", "unmerge"]) }
    )
    func overLineProtocol(_ scenario: OperationScenario) throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: guardFlags(scenario, in: directory.path))
        let socket = try TestSocket(port: server.tcpPort)
        for (index, step) in scenario.steps.enumerated() where Self.lineOps.contains(step.op) {
            var request = (step.object["request"] as? [String: Any]) ?? [:]
            request["id"] = index
            if step.op == "dryRun" { request["dryRun"] = true }
            if step.op == "lookup" { request["op"] = "lookup" }
            try socket.send(Array(try JSONSerialization.data(withJSONObject: request)) + [0x0A])
            var answer = try #require(try lineJSON(socket.readLine()))
            #expect(answer.removeValue(forKey: "id") as? Int == index)
            if step.status == 200, let expected = step.response {
                #expect(OperationScenario.canonicalJSON(answer) == expected, "step \(index) (\(step.op))")
            } else {
                let error = try #require(answer["error"] as? [String: Any], "step \(index): \(answer)")
                #expect(error["status"] as? Int == step.status, "step \(index) (\(step.op))")
            }
        }
        // Steps the line protocol lacks ran nowhere: when they only read, the store must still end in
        // the file's rows and links.
        let endsInFileRows = scenario.steps.allSatisfy { Self.lineOps.contains($0.op) || Self.readOnlyOps.contains($0.op) }
        if endsInFileRows { try expectFinalRows(scenario, server: server) }
        #expect(server.stop() == 0)
        if endsInFileRows { try expectFinalLinks(scenario, store: directory.store) }
    }

    /// The ops the line protocol has, and the HTTP-only ops that write nothing.
    static let lineOps: Set = ["identify", "dryRun", "lookup"]
    static let readOnlyOps: Set = ["profile", "explain", "changes"]

    private func guardFlags(_ scenario: OperationScenario, in directory: String) throws -> [String] {
        var flags: [String] = []
        if !scenario.blocklist.isEmpty {
            let path = directory + "/blocklist.txt"
            try scenario.blocklistText.write(toFile: path, atomically: true, encoding: .utf8)
            flags += ["--blocklist", path]
        }
        if scenario.maxEmailsPerProfile > 0 { flags += ["--max-emails-per-profile", "\(scenario.maxEmailsPerProfile)"] }
        if scenario.maxPhonesPerProfile > 0 { flags += ["--max-phones-per-profile", "\(scenario.maxPhonesPerProfile)"] }
        return flags
    }

    private func latestSeq(_ server: ServerProcess) throws -> Int {
        let answer = try HTTPExchange.get(port: server.httpPort, path: "/changes?limit=1")
        return try #require(answer.json["latestSeq"] as? Int, "GET /changes answered \(answer.status): \(answer.text)")
    }

    /// The rows of `contactsAfter` are the store's rows, all of them.
    private func expectFinalRows(_ scenario: OperationScenario, server: ServerProcess) throws {
        for row in scenario.contactsAfter {
            let answer = try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(row.id)")
            #expect(answer.status == 200)
            #expect(OperationScenario.Row(json: answer.json) == row)
        }
        let next = try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(scenario.contactsAfter.count + 1)")
        #expect(next.status == 404, "a row beyond the file's: \(next.text)")
    }

    /// The links of `linksAfter` are the store's links, oldest first, as `export` reads them.
    private func expectFinalLinks(_ scenario: OperationScenario, store: String) throws {
        let export = try runIdentityGraph(["export", "--data-dir", store])
        #expect(export.status == 0, "\(export.output)")
        // Standard error shares the output: only its JSON lines are records.
        let links = export.output.split(separator: "\n").compactMap { line -> OperationScenario.Link? in
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            guard let link = object?["link"] as? [String: Any] else { return nil }
            return OperationScenario.Link(email: link["email"] as? String ?? "", phoneNumber: link["phoneNumber"] as? String ?? "")
        }
        #expect(links == scenario.linksAfter)
    }

    /// One step as the HTTP request SPEC.md names for its op.
    static func send(_ step: OperationScenario.Step, port: Int) throws -> HTTPExchange {
        let id = step.integer("contactId").map(String.init) ?? ""
        switch step.op {
        case "identify": return try HTTPExchange.post(port: port, json: step.requestBody)
        case "dryRun": return try HTTPExchange.post(port: port, path: "/identify?dryRun=true", json: step.requestBody)
        case "lookup": return try HTTPExchange.get(port: port, path: "/profiles" + query(step.object["request"]))
        case "profile": return try HTTPExchange.get(port: port, path: "/profiles/\(id)")
        case "explain":
            return try HTTPExchange.get(port: port, path: "/explain?from=\(step.integer("from")!)&to=\(step.integer("to")!)")
        case "eraseContact": return try HTTPExchange.send(port: port, method: "DELETE", path: "/contacts/\(id)")
        case "eraseProfile": return try HTTPExchange.send(port: port, method: "DELETE", path: "/profiles/\(id)")
        case "eraseValues": return try HTTPExchange.post(port: port, path: "/erase", json: step.requestBody)
        case "unmerge": return try HTTPExchange.post(port: port, path: "/unmerge", json: step.requestBody)
        case "changes": return try HTTPExchange.get(port: port, path: "/changes?after=\(step.integer("after") ?? 0)")
        default:
            Issue.record("unknown op \(step.op)")
            return try HTTPExchange.get(port: port, path: "/healthz")
        }
    }

    /// `?email=...&phoneNumber=...`, percent-encoded, from a request object.
    private static func query(_ request: Any?) -> String {
        let fields = (request as? [String: Any]) ?? [:]
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let parts = fields.sorted { $0.key < $1.key }.map { key, value in
            "\(key)=\("\(value)".addingPercentEncoding(withAllowedCharacters: allowed)!)"
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }
}

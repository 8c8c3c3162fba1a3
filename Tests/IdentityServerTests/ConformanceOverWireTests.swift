import ConformanceSupport
import Foundation
import Testing

/// The shared scenarios of `../shared/conformance/identify.json` against the real server, each on
/// a fresh store: over HTTP on both paths, and over the line protocol. The final rows are read
/// back over the same transport.
@Suite(.timeLimit(.minutes(5))) struct ConformanceOverWireTests {
    @Test("conformance scenario over HTTP", arguments: ConformanceScenario.all, ["/identify", "/api/identify"])
    func overHTTP(_ scenario: ConformanceScenario, path: String) throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for (index, step) in scenario.steps.enumerated() {
            let answer = try HTTPExchange.post(port: server.httpPort, path: path, json: step.body)
            #expect(answer.status == step.status, "step \(index): \(answer.text)")
            if step.status == 200 {
                #expect(answer.headers["content-type"] == "application/json")
                #expect(ConformanceScenario.profile(fromResponse: answer.json) == step.response, "step \(index)")
            } else {
                #expect(answer.headers["content-type"] == "application/problem+json")
                #expect(answer.json["status"] as? Int == step.status)
                #expect((answer.json["detail"] as? String)?.isEmpty == false)
            }
        }
        for row in scenario.contactsAfter {
            let answer = try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(row.id)")
            #expect(answer.status == 200)
            #expect(ConformanceScenario.Row(json: answer.json) == row)
            for field in ["createdAt", "updatedAt"] {
                #expect((answer.json[field] as? String)?.hasSuffix("Z") == true)
            }
            #expect(answer.json.keys.contains("deletedAt"))
        }
        let beyond = try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(scenario.contactsAfter.count + 1)")
        #expect(beyond.status == 404)
        #expect(server.stop() == 0)
    }

    @Test("conformance scenario over the line protocol", arguments: ConformanceScenario.all)
    func overLineProtocol(_ scenario: ConformanceScenario) throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        for (index, step) in scenario.steps.enumerated() {
            var request = try #require(try JSONSerialization.jsonObject(with: Data(step.body)) as? [String: Any])
            request["id"] = index
            try socket.send(Array(try JSONSerialization.data(withJSONObject: request)) + [0x0A])
            let answer = try #require(try lineJSON(socket.readLine()))
            #expect(answer["id"] as? Int == index)
            if step.status == 200 {
                #expect(ConformanceScenario.profile(fromResponse: answer) == step.response, "step \(index)")
            } else {
                let error = try #require(answer["error"] as? [String: Any], "step \(index): \(answer)")
                #expect(error["status"] as? Int == step.status)
            }
        }
        for row in scenario.contactsAfter {
            try socket.send(#"{"op":"get","contactId":\#(row.id)}"# + "\n")
            let answer = try #require(try lineJSON(socket.readLine()))
            let record = try #require(answer["record"] as? [String: Any])
            #expect(ConformanceScenario.Row(json: record) == row)
        }
        try socket.send(#"{"op":"get","contactId":\#(scenario.contactsAfter.count + 1)}"# + "\n")
        let missing = try #require(try lineJSON(socket.readLine()))
        #expect((missing["error"] as? [String: Any])?["status"] as? Int == 404)
        #expect(server.stop() == 0)
    }
}

/// A response line parsed as a JSON object.
func lineJSON(_ line: String?) throws -> [String: Any]? {
    guard let line else { return nil }
    return try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
}

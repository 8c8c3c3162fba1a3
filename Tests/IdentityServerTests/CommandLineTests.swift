import Foundation
import Testing

/// The executable's commands, flags, variables and exit codes (SPEC.md section 8).
@Suite struct CommandLineTests {
    @Test("usage errors exit 2 with a message on stderr")
    func usageErrors() throws {
        for arguments in [["serve", "--http-port", "abc"], ["frobnicate"], ["snapshot", "--data-dir", "/tmp/x"],
                          ["check"], ["serve", "--durability", "sometimes"]] {
            let result = try runIdentityGraph(arguments, environment: ["IDENTITY_GRAPH_DATA_DIR": ""])
            #expect(result.status == 2, "\(arguments): \(result.output)")
            #expect(!result.output.isEmpty)
        }
        let badVariable = try runIdentityGraph(["serve"], environment: ["IDENTITY_GRAPH_HTTP_PORT": "eighty"])
        #expect(badVariable.status == 2)
        #expect(badVariable.output.contains("IDENTITY_GRAPH_HTTP_PORT"))
    }

    @Test("other failures exit 1 with a one-line message")
    func failures() throws {
        let missing = try runIdentityGraph(["check", "--data-dir", "/nonexistent/identity-graph"])
        #expect(missing.status == 1)
        #expect(missing.output.hasPrefix("identity-graph: "))
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let clash = try runIdentityGraph(["serve", "--data-dir", directory.path + "/other", "--http-port",
                                          "\(server.httpPort)", "--tcp-port", "0"])
        #expect(clash.status == 1, "\(clash.output)")
    }

    @Test("environment variables configure serve; flags win over them")
    func environmentVariables() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(
            dataDirectory: directory.store, arguments: ["--tcp-port", "0"],
            environment: ["IDENTITY_GRAPH_TCP_PORT": "1", "IDENTITY_GRAPH_MAX_BODY_BYTES": "100"]
        )
        let big = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","pad":"\#(String(repeating: "x", count: 120))"}"#)
        #expect(big.status == 413)
        #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io"}"#).status == 200)
    }

    @Test("snapshot of a live store opens as a store with the same profiles; check passes on it")
    func snapshotOfLiveServer() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        var last: [String: Any] = [:]
        for index in 0..<60 {
            last = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"s\#(index)@x.io","phoneNumber":"\#(index % 7)"}"#).json
        }
        let copy = directory.path + "/copy"
        let snapshot = try runIdentityGraph(["snapshot", "--data-dir", directory.store, "--out", copy])
        #expect(snapshot.status == 0, "\(snapshot.output)")
        #expect(try runIdentityGraph(["snapshot", "--data-dir", directory.store, "--out", copy]).status == 1)
        server.stop()

        let check = try runIdentityGraph(["check", "--data-dir", copy])
        #expect(check.status == 0)
        #expect(check.output.contains("60 contacts, 7 profiles"))
        let restored = try ServerProcess(dataDirectory: copy)
        let again = try HTTPExchange.post(port: restored.httpPort, json: #"{"email":"s59@x.io"}"#).json
        #expect(NSDictionary(dictionary: again) == NSDictionary(dictionary: last))
    }
}

/// `--log-format json` (SPEC.md section 15).
@Suite struct LogFormatTests {
    @Test("--log-format json writes one JSON object a line, start and stop with structured fields")
    func jsonLogs() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--log-format", "json"])
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"log@x.io"}"#)
        #expect(server.stop() == 0)
        let lines = server.log.split(separator: "\n")
        #expect(lines.count >= 2)
        var messages: [String] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(object["level"] is String && object["time"] is String)
            messages.append(object["message"] as? String ?? "")
            if object["message"] as? String == "opened store" { #expect(object["contacts"] as? String == "0") }
        }
        #expect(messages.contains("opened store") && messages.contains { $0.hasPrefix("stopped") })
        #expect(!server.log.contains("log@x.io"), "personal data in the log")
        let bad = try runIdentityGraph(["serve", "--data-dir", directory.store, "--log-format", "xml"])
        #expect(bad.status == 2)
    }
}

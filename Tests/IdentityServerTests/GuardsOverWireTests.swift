import Foundation
import Testing

/// The guards of SPEC.md section 10 as an operator meets them: flags and files, SIGHUP reloads, and
/// the errors of bad configuration and bad queries.
@Suite(.timeLimit(.minutes(5))) struct GuardsOverWireTests {
    @Test("a bad blocklist or a negative limit is a usage error naming the line or the flag")
    func badConfiguration() throws {
        let directory = TemporaryDirectory()
        let cases: [(text: String, mentions: String)] = [
            ("# junk\nemail test@test.com\nemial x@y.io\n", "line 3"),
            ("phoneNumber /[0-9/\n", "line 1"),
            ("email not-an-email\n", "line 1"),
        ]
        for (index, bad) in cases.enumerated() {
            let path = directory.path + "/blocklist-\(index).txt"
            try bad.text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runIdentityGraph(
                ["serve", "--data-dir", directory.store, "--http-port", "0", "--tcp-port", "0", "--blocklist", path]
            )
            #expect(result.status == 2, "\(bad.text): \(result.output)")
            #expect(result.output.contains(bad.mentions) && result.output.contains(path), "\(result.output)")
        }
        for flag in ["--max-emails-per-profile", "--max-phones-per-profile"] {
            let result = try runIdentityGraph(["serve", "--data-dir", directory.store, "\(flag)=-1"])
            #expect(result.status == 2)
            #expect(result.output.contains(flag), "\(result.output)")
        }
        let missing = try runIdentityGraph(["serve", "--data-dir", directory.store, "--blocklist", "/nonexistent/list"])
        #expect(missing.status == 2)
        #expect(missing.output.contains("/nonexistent/list"))
    }

    @Test("SIGHUP reloads the blocklist; a bad file on reload keeps the previous rules")
    func reloadOnHangup() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/blocklist.txt"
        try "email a@x.io\n".write(toFile: path, atomically: true, encoding: .utf8)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--blocklist", path])
        func ignored(_ email: String) throws -> [String] {
            let answer = try HTTPExchange.post(
                port: server.httpPort, path: "/identify?dryRun=true", json: #"{"email":"\#(email)","phoneNumber":"5"}"#
            )
            return ((answer.json["ignored"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String }
        }
        #expect(try ignored("a@x.io") == ["email"])
        #expect(try ignored("b@x.io") == [])

        try "email b@x.io\n".write(toFile: path, atomically: true, encoding: .utf8)
        try server.reload("blocklist", expecting: "ok")
        #expect(try ignored("b@x.io") == ["email"])
        #expect(try ignored("a@x.io") == [])

        try "email /[/\n".write(toFile: path, atomically: true, encoding: .utf8)
        // Waits until the bad file has been read and refused, so the next check is not merely early.
        try server.reload("blocklist", expecting: "failed")
        #expect(try ignored("b@x.io") == ["email"], "a bad file replaced the rules in force")
        #expect(server.stop() == 0)
        #expect(server.log.contains("blocklist reload failed"))
    }

    @Test("a rule added by a reload leaves the values already stored as they were")
    func newRuleKeepsStoredValues() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/blocklist.txt"
        try "email nobody@x.io\n".write(toFile: path, atomically: true, encoding: .utf8)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--blocklist", path])
        for body in [#"{"email":"junk@x.io","phoneNumber":"000"}"#, #"{"email":"b@x.io","phoneNumber":"000"}"#,
                     #"{"email":"junk@x.io","phoneNumber":"123"}"#] {
            #expect(try HTTPExchange.post(port: server.httpPort, json: body).status == 200)
        }
        let rows = try (1...3).map { try HTTPExchange.get(port: server.httpPort, path: "/contacts/\($0)").body }
        let profile = try HTTPExchange.get(port: server.httpPort, path: "/profiles/1").body
        let seq = try HTTPExchange.get(port: server.httpPort, path: "/changes").json["latestSeq"] as? Int

        try "email junk@x.io\nphoneNumber /0+/\n".write(toFile: path, atomically: true, encoding: .utf8)
        try server.reload("blocklist", expecting: "ok")
        // The rule is in force for new requests...
        let blocked = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"junk@x.io","phoneNumber":"000"}"#)
        #expect(blocked.status == 422, "\(blocked.text)")
        // ...and the stored rows, their profile and the feed are exactly as before.
        for id in 1...3 {
            let now = try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(id)")
            #expect(now.status == 200)
            #expect(now.body == rows[id - 1], "contact \(id) changed: \(now.text)")
        }
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/4").status == 404)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/profiles/1").body == profile)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/changes").json["latestSeq"] as? Int == seq)
        #expect(server.stop() == 0)
    }

    @Test("bad queries of look-ups, explain, dry runs and the feed are 400 problems; unknown ids 404")
    func badQueries() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","phoneNumber":"+1"}"#)
        for path in [
            "/explain?from=abc&to=1", "/explain?from=1", "/explain?from=0&to=1", "/profiles", "/profiles?email=",
            "/profiles?email=not-an-email", "/profiles?email=%zz", "/profiles/abc", "/changes?after=-1",
            "/changes?limit=0", "/changes?limit=100000", "/keep-apart?email=a@x.io",
        ] {
            let method = path.hasPrefix("/keep-apart") ? "DELETE" : "GET"
            let answer = try HTTPExchange.send(port: server.httpPort, method: method, path: path)
            #expect(answer.status == 400, "\(path): \(answer.text)")
            #expect(answer.headers["content-type"] == "application/problem+json")
        }
        let dryRun = try HTTPExchange.post(port: server.httpPort, path: "/identify?dryRun=yes", json: #"{"email":"b@x.io"}"#)
        #expect(dryRun.status == 400)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/explain?from=1&to=9").status == 404)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/profiles/9").status == 404)
        // `+` in a query is a plus sign, not a space.
        let plus = try HTTPExchange.get(port: server.httpPort, path: "/profiles?phoneNumber=+1")
        #expect((plus.json["profiles"] as? [Any])?.count == 1, "\(plus.text)")
        let unmerge = try HTTPExchange.post(
            port: server.httpPort, path: "/unmerge", json: #"{"email":"a@x.io","phoneNumber":"+1","keepApart":"yes"}"#
        )
        #expect(unmerge.status == 400)
        // Nothing above wrote anything.
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/changes").json["latestSeq"] as? Int == 1)
        #expect(server.stop() == 0)
    }
}

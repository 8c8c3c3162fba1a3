import Foundation
import IdentityServer
import Testing

/// The executable's commands, flags, variables and exit codes (SPEC.md section 8).
@Suite(.timeLimit(.minutes(5))) struct CommandLineTests {
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
@Suite(.timeLimit(.minutes(5))) struct LogFormatTests {
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
            if object["message"] as? String == "opened store" {
                // A number, not the string "0", so that log collectors can compare it.
                #expect(object["contacts"] as? Int == 0 && !(object["contacts"] is String), "\(line)")
            }
        }
        #expect(messages.contains("opened store") && messages.contains { $0.hasPrefix("stopped") })
        #expect(!server.log.contains("log@x.io"), "personal data in the log")
        let bad = try runIdentityGraph(["serve", "--data-dir", directory.store, "--log-format", "xml"])
        #expect(bad.status == 2)
    }

    @Test("with --log-format json a fatal start-up error is one JSON object too")
    func jsonFatalErrors() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for (arguments, status, mentions) in [
            (["--http-port", "\(server.httpPort)"], Int32(1), "http port \(server.httpPort) is in use"),
            (["--durability", "sometimes"], 2, "--durability"),
            (["--max-body-bytes", "lots"], 2, "--max-body-bytes"),
        ] {
            let result = try runIdentityGraph(
                ["serve", "--data-dir", directory.path + "/other", "--tcp-port", "0", "--log-format", "json"]
                    + (arguments.first == "--http-port" ? arguments : ["--http-port", "0"] + arguments)
            )
            #expect(result.status == status, "\(result.output)")
            let lines = result.output.split(separator: "\n")
            #expect(lines.count == 1, "\(result.output)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: Any], "\(result.output)"
            )
            #expect(object["level"] as? String == "critical")
            #expect((object["message"] as? String)?.contains(mentions) == true, "\(result.output)")
        }
        #expect(server.stop() == 0)
    }
}

/// Messages a person can act on (issue 16, item 4): each names what is wrong and where it came from.
@Suite(.timeLimit(.minutes(5))) struct CommandLineMessageTests {
    @Test("a port in use prints only 'http port N is in use' (or tcp), exits 1, and creates no store directory")
    func portInUse() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for (listener, flags) in [
            ("http", ["--http-port", "\(server.httpPort)", "--tcp-port", "0"]),
            ("tcp", ["--http-port", "0", "--tcp-port", "\(server.tcpPort)"]),
        ] {
            let store = directory.path + "/new-\(listener)"
            let result = try runIdentityGraph(["serve", "--data-dir", store] + flags)
            let port = listener == "http" ? server.httpPort : server.tcpPort
            #expect(result.status == 1, "\(result.output)")
            #expect(result.output == "identity-graph: \(listener) port \(port) is in use\n", "\(result.output)")
            #expect(!FileManager.default.fileExists(atPath: store), "a failed start left \(store) behind")
        }
        #expect(server.stop() == 0)
    }

    @Test("a bad value names the flag when it came from the flag and the variable when it came from there")
    func flagOrVariable() throws {
        let cases: [(arguments: [String], environment: [String: String], names: String, notNames: String)] = [
            (["serve", "--http-port", "99999"], [:], "--http-port", "IDENTITY_GRAPH_HTTP_PORT"),
            (["serve"], ["IDENTITY_GRAPH_HTTP_PORT": "99999"], "IDENTITY_GRAPH_HTTP_PORT", "--http-port"),
            (["serve", "--tcp-port", "70000"], [:], "--tcp-port", "IDENTITY_GRAPH_TCP_PORT"),
            (["serve", "--idle-timeout", "0"], [:], "--idle-timeout", "IDENTITY_GRAPH_IDLE_TIMEOUT"),
            (["serve", "--durability", "sometimes"], [:], "--durability", "IDENTITY_GRAPH_DURABILITY"),
            (["serve"], ["IDENTITY_GRAPH_DURABILITY": "sometimes"], "IDENTITY_GRAPH_DURABILITY", "--durability"),
            (["serve", "--log-level", "loud"], [:], "--log-level", "IDENTITY_GRAPH_LOG_LEVEL"),
            (["serve"], ["IDENTITY_GRAPH_LOG_FORMAT": "xml"], "IDENTITY_GRAPH_LOG_FORMAT", "--log-format"),
            (["export", "--data-dir", "/nonexistent", "--format", "xml"], [:], "--format", "IDENTITY_GRAPH_EXPORT_FORMAT"),
        ]
        for (arguments, environment, names, notNames) in cases {
            let result = try runIdentityGraph(arguments, environment: ["IDENTITY_GRAPH_DATA_DIR": ""].merging(environment) { $1 })
            #expect(result.status == 2, "\(arguments) \(environment): \(result.output)")
            #expect(result.output.contains(names) && !result.output.contains(notNames), "\(arguments) \(environment): \(result.output)")
        }
    }

    @Test("--version prints the version and exits 0")
    func version() throws {
        let result = try runIdentityGraph(["--version"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output == BuildInfo.version + "\n")
    }

    @Test("the usage of check, export, snapshot and import shows --data-dir as required")
    func requiredDataDirectory() throws {
        for command in ["check", "export", "snapshot", "import"] {
            let help = try runIdentityGraph([command, "--help"])
            #expect(help.status == 0)
            let usage = help.output.split(separator: "\n").first { $0.hasPrefix("USAGE:") } ?? ""
            #expect(usage.hasPrefix("USAGE: identity-graph \(command) --data-dir <data-dir>"), "\(usage)")
            #expect(!help.output.contains("[--data-dir"), "\(help.output)")
        }
    }

    @Test("an unknown flag of a subcommand points at that subcommand's help")
    func unknownFlag() throws {
        let result = try runIdentityGraph(["serve", "--bogus"])
        #expect(result.status == 2)
        #expect(result.output.contains("'identity-graph serve --help'"), "\(result.output)")
        let root = try runIdentityGraph(["--bogus"])
        #expect(root.output.contains("'identity-graph --help'"), "\(root.output)")
    }

    @Test("a missing tokens file and a missing blocklist are reported alike: the path and the system's reason")
    func missingFiles() throws {
        let directory = TemporaryDirectory()
        for flag in ["--auth-tokens", "--blocklist"] {
            let path = directory.path + "/missing-\(flag.dropFirst(2))"
            let result = try runIdentityGraph(["serve", "--data-dir", directory.store, flag, path])
            #expect(result.status == 2, "\(result.output)")
            #expect(result.output.hasPrefix("identity-graph: \(flag): \(path): cannot be read: No such file or directory\n"),
                    "\(result.output)")
        }
    }

    @Test("an IPv6 address is printed in brackets")
    func ipv6Brackets() throws {
        let directory = TemporaryDirectory()
        let server = Process()
        server.executableURL = ServerProcess.executable
        server.arguments = ["serve", "--data-dir", directory.store, "--host", "::1", "--http-port", "0", "--tcp-port", "0"]
        let output = PipeCollector()
        server.standardOutput = output.pipe
        server.standardError = FileHandle.nullDevice
        let exited = ExitSignal(server)
        try server.run()
        output.start()
        defer {
            kill(server.processIdentifier, SIGTERM)
            if !exited.wait(seconds: 60) { kill(server.processIdentifier, SIGKILL) }
        }
        let pattern = #/http listening on \[::1\]:\d+\ntcp listening on \[::1\]:\d+\n/#
        let printed = output.wait(until: Date().addingTimeInterval(60)) { text, ended in
            text.contains(pattern) || ended
        }
        #expect(printed && output.text.contains(pattern), "\(output.text)")
    }

    @Test("one warning at start when tokens travel without TLS off loopback, or --allow-unauthenticated opens it")
    func exposureWarnings() throws {
        let directory = TemporaryDirectory()
        let tokens = directory.path + "/tokens"
        try TestTokens.write(to: tokens)
        let cases: [([String], String?)] = [
            (["--host", "0.0.0.0", "--auth-tokens", tokens], "bearer tokens travel in plain text"),
            (["--host", "0.0.0.0", "--allow-unauthenticated"], "--allow-unauthenticated on 0.0.0.0"),
            (["--host", "0.0.0.0", "--auth-tokens", tokens] + TestCertificate.serveFlags, nil),
            (["--auth-tokens", tokens], nil),
        ]
        for (index, (flags, warning)) in cases.enumerated() {
            let server = try ServerProcess(dataDirectory: directory.path + "/store\(index)", arguments: flags)
            #expect(server.stop() == 0)
            let warnings = server.log.split(separator: "\n").filter { $0.contains("warning") }
            if let warning {
                #expect(warnings.count == 1 && warnings[0].contains(warning), "\(flags): \(warnings)")
            } else {
                #expect(warnings.isEmpty, "\(flags): \(warnings)")
            }
        }
    }

    @Test("SIGHUP logs what it reloaded, or that there is nothing to reload")
    func reloadReports() throws {
        let directory = TemporaryDirectory()
        let bare = try ServerProcess(dataDirectory: directory.path + "/bare")
        kill(bare.process.processIdentifier, SIGHUP)
        #expect(bare.waitForLog(containing: "nothing to reload"), "\(bare.logSoFar)")
        #expect(bare.stop() == 0)

        let blocklist = directory.path + "/blocklist"
        try "email junk@x.io\n".write(toFile: blocklist, atomically: true, encoding: .utf8)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--blocklist", blocklist])
        try server.reload("blocklist", expecting: "ok")
        #expect(server.logSoFar.contains("blocklist reloaded"), "\(server.logSoFar)")
        #expect(!server.logSoFar.contains("nothing to reload"))
        try "email /[/\n".write(toFile: blocklist, atomically: true, encoding: .utf8)
        try server.reload("blocklist", expecting: "failed")
        #expect(try server.metric(#"identity_graph_reloads_total{file="blocklist",result="failed"}"#) == 1)
        #expect(try server.metric(#"identity_graph_reloads_total{file="tokens",result="ok"}"#) == 0)
        #expect(server.stop() == 0)
    }

    @Test("--pid-file holds the pid while the server runs, for kill -HUP \"$(cat FILE)\", and is removed at a clean exit")
    func pidFile() throws {
        let directory = TemporaryDirectory()
        let pidFile = directory.path + "/identity-graph.pid"
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--pid-file", pidFile])
        let text = try String(contentsOfFile: pidFile, encoding: .utf8)
        #expect(text == "\(server.process.processIdentifier)\n")
        let signalled = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", #"kill -HUP "$(cat "$0")""#, pidFile])
        #expect(signalled.status == 0, "\(signalled.output)")
        #expect(server.waitForLog(containing: "nothing to reload"), "\(server.logSoFar)")
        #expect(server.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: pidFile))
    }

    @Test("a wrong bearer token over HTTP is 'unknown token', as on the line protocol; a missing one asks for one")
    func unknownToken() throws {
        let directory = TemporaryDirectory()
        let tokens = directory.path + "/tokens"
        try TestTokens.write(to: tokens)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--auth-tokens", tokens])
        let wrong = try HTTPExchange.send(
            port: server.httpPort, method: "GET", path: "/contacts/1",
            headers: ["Authorization": "Bearer not-a-token-at-all"]
        )
        #expect(wrong.status == 401)
        #expect(wrong.json["detail"] as? String == "unknown token", "\(wrong.text)")
        let missing = try HTTPExchange.get(port: server.httpPort, path: "/contacts/1")
        #expect(missing.status == 401)
        #expect((missing.json["detail"] as? String)?.contains("needs a bearer token") == true, "\(missing.text)")
        #expect(server.stop() == 0)
    }
}

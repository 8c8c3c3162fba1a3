import Foundation
import IdentityGraph
import IdentityServer
import Testing

/// `GET /metrics` (SPEC.md section 15) after traffic on both transports.
@Suite(.timeLimit(.minutes(5))) struct MetricsTests {
    @Test("after a load, /metrics shows every series SPEC names, and a Prometheus text parser reads it")
    func metricsAfterLoad() throws {
        let directory = TemporaryDirectory()
        let blocklist = directory.path + "/blocklist"
        try "phoneNumber 0000000000\n".write(toFile: blocklist, atomically: true, encoding: .utf8)
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--blocklist", blocklist])
        for index in 0..<50 {
            _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"m\#(index)@x.io","phoneNumber":"\#(index % 7)"}"#)
        }
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"j@x.io","phoneNumber":"0000000000"}"#)
        _ = try HTTPExchange.get(port: server.httpPort, path: "/contacts/999")
        let socket = try TestSocket(port: server.tcpPort)
        for index in 0..<20 { try socket.send(#"{"email":"t\#(index)@x.io","id":\#(index)}"# + "\n") }
        try socket.send(#"{"op":"ping"}"# + "\n")
        for _ in 0..<21 { _ = try socket.readLine() }

        let answer = try HTTPExchange.get(port: server.httpPort, path: "/metrics")
        #expect(answer.status == 200)
        #expect(answer.headers["content-type"]?.hasPrefix("text/plain") == true)
        let text = answer.text
        for series in [
            #"identity_graph_requests_total{transport="http",op="identify",status="200"} 51"#,
            #"identity_graph_requests_total{transport="http",op="contact",status="404"} 1"#,
            #"identity_graph_requests_total{transport="line",op="identify",status="200"} 20"#,
            #"identity_graph_requests_total{transport="line",op="ping",status="200"} 1"#,
            "identity_graph_request_duration_seconds_bucket{", "identity_graph_commits_total ",
            "identity_graph_commit_rows_bucket{", "identity_graph_commit_duration_seconds_bucket{",
            "identity_graph_contacts 71", "identity_graph_profiles ", #"identity_graph_connections{transport="line"} 1"#,
            #"identity_graph_ignored_values_total{field="phoneNumber",reason="blocked"} 1"#,
            "identity_graph_latest_change_seq 71",
        ] {
            #expect(text.contains(series), "missing \(series)")
        }
        #expect(!text.contains("@x.io"), "personal data in the metrics")

        // The official Prometheus client's parser must read every line.
        let parser = try runPython(["-c", """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            families = list(text_string_to_metric_families(sys.stdin.read()))
            print(len(families), sum(len(f.samples) for f in families))
            """], input: Data(answer.body), timeout: 120)
        let parsed = parser.output
        #expect(parser.status == 0, "\(parsed)")
        #expect((Int(parsed.split(separator: " ").first ?? "") ?? 0) >= 9, "\(parsed)")
        #expect(server.stop() == 0)
    }

    @Test("promtool check metrics accepts /metrics of a real server after traffic on both transports")
    func promtoolAcceptsMetrics() throws {
        let directory = TemporaryDirectory()
        let blocklist = directory.path + "/blocklist"
        try "phoneNumber 0000000000\n".write(toFile: blocklist, atomically: true, encoding: .utf8)
        let server = try ServerProcess(
            dataDirectory: directory.store, arguments: ["--blocklist", blocklist, "--max-emails-per-profile", "1"]
        )
        for index in 0..<20 {
            _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"p\#(index)@x.io","phoneNumber":"\#(index)"}"#)
        }
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"p1@x.io","phoneNumber":"2"}"#)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"j@x.io","phoneNumber":"0000000000"}"#)
        _ = try HTTPExchange.post(port: server.httpPort, json: "{")
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"op":"ping"}"# + "\n" + "{\n" + #"{"email":"line@x.io"}"# + "\n")
        for _ in 0..<3 { _ = try socket.readLine() }

        let answer = try HTTPExchange.get(port: server.httpPort, path: "/metrics")
        #expect(answer.status == 200)
        let promtool = try runProcess(
            URL(fileURLWithPath: "/usr/bin/env"), ["promtool", "check", "metrics"], input: Data(answer.body), timeout: 120
        )
        #expect(promtool.status == 0, "promtool (Debian's prometheus package; .ci/setup --tests): \(promtool.output)")
        #expect(promtool.output.isEmpty, "\(promtool.output)")

        // Malformed JSON counts under one operation on both transports.
        #expect(try server.metric(#"identity_graph_requests_total{transport="http",op="identify",status="400"}"#) == 1)
        #expect(try server.metric(#"identity_graph_requests_total{transport="line",op="identify",status="400"}"#) == 1)
        // The email limit refused the merge of p1's profile with phone 2's: it is named as such.
        #expect(try server.metric(#"identity_graph_ignored_values_total{field="phoneNumber",reason="emailLimit"}"#) == 1)
        #expect(try server.metric(#"identity_graph_ignored_values_total{field="phoneNumber",reason="phoneLimit"}"#) == 0)
        // Each commit is counted as it happens: as many as the commit histograms saw.
        let commits = try server.metric("identity_graph_commits_total")
        #expect(commits >= 1)
        #expect(commits == (try server.metric("identity_graph_commit_rows_count")), "\(answer.text)")
        #expect(commits == (try server.metric("identity_graph_commit_duration_seconds_count")))
        #expect(server.stop() == 0)
    }

    @Test("a fresh server shows HELP on every family and the series dashboards need, at 0, before any traffic")
    func seriesAtStart() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        // Nothing but this scrape has happened: the scrape itself is counted only once it is answered.
        let text = try HTTPExchange.get(port: server.httpPort, path: "/metrics").text
        let lines = text.split(separator: "\n").map(String.init)
        let families = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(families.count >= 15, "\(families)")
        for family in families {
            let help = lines.contains { $0.hasPrefix("# HELP \(family) ") && $0.count > "# HELP \(family) ".count }
            #expect(help, "no help text for \(family)")
        }
        var expected = [
            #"identity_graph_build_info{version="\#(BuildInfo.version)"} 1.0"#,
            #"identity_graph_connections{transport="line"} 0.0"#,
            "identity_graph_commits_total 0",
            #"identity_graph_commit_rows_bucket{le="2048.0"} 0"#,
            #"identity_graph_commit_duration_seconds_bucket{le="0.000005"} 0"#,
            #"identity_graph_commit_duration_seconds_bucket{le="10.0"} 0"#,
            #"identity_graph_request_duration_seconds_bucket{transport="line",op="ping",le="0.000005"} 0"#,
            #"identity_graph_requests_total{transport="http",op="identify",status="503"} 0"#,
            #"identity_graph_requests_total{transport="http",op="contact",status="404"} 0"#,
            #"identity_graph_requests_total{transport="line",op="identify",status="200"} 0"#,
            #"identity_graph_requests_total{transport="line",op="get",status="404"} 0"#,
        ]
        for field in ["email", "phoneNumber"] {
            for reason in ["blocked", "emailLimit", "phoneLimit", "keptApart"] {
                expected.append(#"identity_graph_ignored_values_total{field="\#(field)",reason="\#(reason)"} 0"#)
            }
        }
        for file in ["blocklist", "tokens"] {
            for result in ["ok", "failed"] {
                expected.append(#"identity_graph_reloads_total{file="\#(file)",result="\#(result)"} 0"#)
            }
        }
        let present = Set(lines)
        for series in expected { #expect(present.contains(series), "missing \(series)") }
        for family in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                       "process_start_time_seconds"] {
            let value = lines.first { $0.hasPrefix(family + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
            #expect((value ?? 0) > 0, "\(family): \(String(describing: value))")
        }
        let started = lines.first { $0.hasPrefix("process_start_time_seconds ") }
            .flatMap { Double($0.split(separator: " ")[1]) } ?? 0
        #expect(abs(started - Date().timeIntervalSince1970) < 600, "start time \(started)")
        // The latency buckets run from 5 µs to 10 s in 1-2.5-5 steps: no gap wider than 2.5x.
        let bounds = lines.filter { $0.hasPrefix("identity_graph_commit_duration_seconds_bucket{") && !$0.contains("+Inf") }
            .compactMap { $0.split(separator: "\"")[1] }.compactMap { Double($0) }
        #expect(bounds.first == 5e-06 && bounds.last == 10, "\(bounds)")
        for (lower, upper) in zip(bounds, bounds.dropFirst()) { #expect(upper / lower <= 2.5 + 1e-9, "\(lower) to \(upper)") }
        #expect(server.stop() == 0)
    }

    @Test("the limit that refused a merge is named in the metrics: emailLimit or phoneLimit")
    func limitReasons() async throws {
        for (limits, reason) in [(ProfileLimits(maxEmails: 1), "emailLimit"), (ProfileLimits(maxPhones: 1), "phoneLimit")] {
            let engine = IdentityEngine(options: .init(guards: Guards(limits: limits)))
            let metrics = ServerMetrics()
            for (email, phone) in [("a@x.io", "1"), ("b@x.io", "2"), ("a@x.io", "2")] {
                _ = try await engine.identifyResponseBody(IdentifyRequest(email: email, phoneNumber: phone))
            }
            let text = String(decoding: await metrics.render(engine), as: UTF8.self)
            #expect(text.contains(#"identity_graph_ignored_values_total{field="phoneNumber",reason="\#(reason)"} 1"#), "\(text)")
            let other = reason == "emailLimit" ? "phoneLimit" : "emailLimit"
            #expect(text.contains(#"identity_graph_ignored_values_total{field="phoneNumber",reason="\#(other)"} 0"#))
        }
    }
}

import Foundation
import Testing

/// `GET /metrics` (SPEC.md section 15) after traffic on both transports.
@Suite struct MetricsTests {
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
        let parser = Process()
        parser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        parser.arguments = ["python3", "-c", """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            families = list(text_string_to_metric_families(sys.stdin.read()))
            print(len(families), sum(len(f.samples) for f in families))
            """]
        let input = Pipe()
        let output = Pipe()
        parser.standardInput = input
        parser.standardOutput = output
        parser.standardError = output
        try parser.run()
        input.fileHandleForWriting.write(Data(answer.body))
        try input.fileHandleForWriting.close()
        parser.waitUntilExit()
        let parsed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(parser.terminationStatus == 0, "\(parsed)")
        #expect((Int(parsed.split(separator: " ").first ?? "") ?? 0) >= 9, "\(parsed)")
        #expect(server.stop() == 0)
    }
}

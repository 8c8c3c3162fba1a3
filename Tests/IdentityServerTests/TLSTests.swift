import Foundation
import Testing

/// `--tls-cert` and `--tls-key` (SPEC.md section 14): both listeners speak TLS only.
@Suite(.serialized, .timeLimit(.minutes(5))) struct TLSTests {
    @Test("both listeners answer over real TLS, and the start-up lines stay the same")
    func bothListenersSpeakTLS() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: TestCertificate.serveFlags)
        let http = try TLSTunnel(to: server.httpPort)
        let answer = try HTTPExchange.post(port: http.port, json: #"{"email":"tls@x.io","phoneNumber":"1"}"#)
        #expect(answer.status == 200)
        #expect((answer.json["contact"] as? [String: Any])?["primaryContactId"] as? Int == 1)
        let line = try TLSTunnel(to: server.tcpPort)
        let socket = try TestSocket(port: line.port)
        try socket.send(#"{"op":"get","contactId":1,"id":"a"}"# + "\n" + #"{"op":"ping","id":"b"}"# + "\n")
        #expect((try lineJSON(socket.readLine())?["record"] as? [String: Any])?["email"] as? String == "tls@x.io")
        #expect(try lineJSON(socket.readLine())?["ok"] as? Bool == true)
        #expect(server.stop() == 0)
    }

    @Test("plain text, garbage handshakes and 1,000 unfinished handshakes fail cleanly; others go on being served")
    func badClientsDoNotDisturbOthers() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: TestCertificate.serveFlags)
        let http = try TLSTunnel(to: server.httpPort)
        let line = try TLSTunnel(to: server.tcpPort)
        for port in [server.httpPort, server.tcpPort] {
            let plain = try TestSocket(port: port)
            try plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + #"{"op":"ping"}"# + "\n")
            // Closed at once: a timeout here throws, rather than passing for "not served".
            let reply = try plain.readToEnd()
            #expect(!String(decoding: reply, as: UTF8.self).contains("HTTP/1.1 200"), "plain text was served on a TLS port")
            let garbage = try TestSocket(port: port)
            try garbage.send((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 13) })
            // The server may answer with a TLS alert; then it closes.
            #expect((try? garbage.readToEnd()) != nil, "a garbage handshake was left open")
        }
        // Connections that open and then never say anything: the handshake never finishes.
        var silent: [TestSocket] = []
        for index in 0..<1000 { silent.append(try TestSocket(port: index % 2 == 0 ? server.httpPort : server.tcpPort)) }
        #expect(try HTTPExchange.get(port: http.port, path: "/healthz").status == 200)
        let socket = try TestSocket(port: line.port)
        try socket.send(#"{"op":"ping"}"# + "\n")
        #expect(try lineJSON(socket.readLine())?["ok"] as? Bool == true)
        silent.removeAll()
        #expect(server.stop() == 0)
    }

    @Test("missing, unreadable or mismatched TLS files are usage errors naming the file")
    func badFiles() throws {
        let directory = TemporaryDirectory()
        let files = TestCertificate.files
        let garbage = directory.path + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", files.key], "/nonexistent/cert.pem"),
            (["--tls-cert", garbage, "--tls-key", files.key], garbage),
            (["--tls-cert", files.certificate, "--tls-key", "/nonexistent/key.pem"], "/nonexistent/key.pem"),
            (["--tls-cert", files.certificate, "--tls-key", files.otherKey], files.otherKey),
            (["--tls-cert", files.certificate], "--tls-key"),
        ]
        for (flags, mentions) in cases {
            let result = try runIdentityGraph(["serve", "--data-dir", directory.store, "--http-port", "0", "--tcp-port", "0"] + flags)
            #expect(result.status == 2, "\(flags): \(result.output)")
            #expect(result.output.contains(mentions), "\(flags): \(result.output)")
        }
    }
}

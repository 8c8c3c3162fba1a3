import Foundation
import Testing

/// The TLS profile of both listeners (SPEC.md section 14, issue 16 item 8, issue 18): Mozilla's
/// "intermediate" configuration, checked with a real TLS client that offers one thing at a time.
@Suite(.timeLimit(.minutes(5))) struct TLSProfileTests {
    /// A handshake with `openssl s_client` offering only what `options` allow; it ends when its input does.
    static func handshake(port: Int, _ options: [String]) throws -> (status: Int32, output: String) {
        try runProcess(
            URL(fileURLWithPath: "/usr/bin/openssl"),
            ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost"] + options,
            input: Data(), timeout: 60
        )
    }

    @Test("TLS 1.2 takes only ECDHE with AEAD ciphers, on both listeners: static RSA and CBC suites are refused")
    func intermediateCiphers() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: TestCertificate.serveFlags)
        for port in [server.httpPort, server.tcpPort] {
            for refused in ["AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                            "ECDHE-RSA-AES256-SHA384"] {
                let result = try Self.handshake(port: port, ["-tls1_2", "-cipher", refused])
                #expect(result.status != 0, "port \(port) accepted \(refused): \(result.output)")
                // The server's alert, so the client did offer the suite and the server said no.
                #expect(result.output.contains("alert handshake failure"), "port \(port), \(refused): \(result.output)")
            }
            for accepted in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"] {
                let result = try Self.handshake(port: port, ["-tls1_2", "-cipher", accepted])
                #expect(result.status == 0, "port \(port) refused \(accepted): \(result.output)")
                #expect(result.output.contains("Cipher is \(accepted)"), "port \(port): \(result.output)")
            }
        }
        #expect(server.stop() == 0)
    }

    @Test("a client offering only TLS 1.0 or 1.1 is refused; TLS 1.3 is taken, on both listeners")
    func protocolVersions() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: TestCertificate.serveFlags)
        for port in [server.httpPort, server.tcpPort] {
            for old in ["-tls1", "-tls1_1"] {
                // Security level 0, so that this OpenSSL offers the old protocol at all.
                let result = try Self.handshake(port: port, [old, "-cipher", "DEFAULT@SECLEVEL=0"])
                #expect(result.status != 0, "port \(port) accepted \(old): \(result.output)")
                #expect(result.output.contains("alert protocol version"), "port \(port), \(old): \(result.output)")
            }
            let modern = try Self.handshake(port: port, ["-tls1_3"])
            #expect(modern.status == 0 && modern.output.contains("TLSv1.3"), "port \(port): \(modern.output)")
        }
        #expect(server.stop() == 0)
    }

    @Test("README's TLS line-protocol example, as written, returns at once with the answers")
    func readmeExample() throws {
        let readme = try String(
            contentsOf: DeployTests.root.appendingPathComponent("README.md"), encoding: .utf8
        )
        // The command: from the line that starts it to the one that calls openssl, joined as sh would.
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let end = try #require(lines.firstIndex { $0.contains("openssl s_client") && $0.contains("7070") },
                               "README has no openssl s_client example")
        var start = end
        while start > 0, lines[start - 1].hasSuffix("\\") { start -= 1 }
        let command = lines[start...end].joined(separator: "\n")
        #expect(command.contains("-no_ign_eof"), "\(command)")

        let directory = TemporaryDirectory()
        let tokens = directory.path + "/tokens"
        // The token the example sends.
        try "write checkout-service-9Lp4\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let server = try ServerProcess(
            dataDirectory: directory.store, arguments: TestCertificate.serveFlags + ["--auth-tokens", tokens]
        )
        let runnable = command.replacingOccurrences(of: "localhost:7070", with: "localhost:\(server.tcpPort)")
            .replacingOccurrences(of: "cert.pem", with: TestCertificate.files.certificate)
        let started = Date()
        let result = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", runnable], timeout: 30)
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains(#"{"id":null,"ok":true}"#), "\(result.output)")
        #expect(result.output.contains(#""emails":["doc@hillvalley.edu"]"#), "\(result.output)")
        #expect(seconds < 10, "the example took \(seconds) s: it waits for the idle timeout")
        #expect(server.stop() == 0)
    }
}

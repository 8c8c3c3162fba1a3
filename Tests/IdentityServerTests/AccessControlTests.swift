import Foundation
import IdentityServer
import Testing

/// Tokens and roles on both transports (SPEC.md section 14).
@Suite(.timeLimit(.minutes(5))) struct AccessControlTests {
    /// ``TestTokens`` by role name.
    static let tokens = Dictionary(uniqueKeysWithValues: TestTokens.byRole.map { ($0.key.description, $0.value) })
    static let ranks = ["read": 1, "write": 2, "admin": 3]

    /// A server with one token per role, and a little data to act on.
    private func serverWithTokens(_ directory: borrowing TemporaryDirectory, extra: [String] = []) throws -> ServerProcess {
        let path = directory.path + "/tokens"
        try TestTokens.write(to: path)
        return try ServerProcess(dataDirectory: directory.store, arguments: ["--auth-tokens", path] + extra)
    }

    /// Every HTTP route with the role it needs (`nil`: open to all).
    static let routes: [(method: String, path: String, body: String?, role: String?)] = [
        ("GET", "/healthz", nil, nil),
        ("GET", "/", nil, nil),
        ("POST", "/identify", #"{"email":"m@x.io","phoneNumber":"9"}"#, "write"),
        ("POST", "/api/identify", #"{"email":"n@x.io"}"#, "write"),
        ("POST", "/identify?dryRun=true", #"{"email":"o@x.io"}"#, "read"),
        ("GET", "/profiles?email=a@x.io", nil, "read"),
        ("GET", "/profiles/1", nil, "read"),
        ("GET", "/contacts/1", nil, "read"),
        ("GET", "/explain?from=1&to=2", nil, "read"),
        ("GET", "/changes", nil, "read"),
        ("GET", "/keep-apart", nil, "read"),
        ("DELETE", "/keep-apart?email=a@x.io&phoneNumber=1", nil, "admin"),
        ("POST", "/unmerge", #"{"email":"a@x.io","phoneNumber":"2"}"#, "admin"),
        ("POST", "/erase", #"{"email":"zz@x.io"}"#, "admin"),
        ("DELETE", "/contacts/99", nil, "admin"),
        ("DELETE", "/profiles/99", nil, "admin"),
    ]

    @Test("every HTTP route answers 401, 403 or passes for no token, an unknown one and each role", arguments: [false, true])
    func httpMatrix(tls: Bool) throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory, extra: tls ? TestCertificate.serveFlags : [])
        let tunnel = tls ? try TLSTunnel(to: server.httpPort) : nil
        let port = tunnel?.port ?? server.httpPort
        let seed = try HTTPExchange.send(
            port: port, method: "POST", path: "/identify",
            headers: ["Content-Type": "application/json", "Authorization": "Bearer \(Self.tokens["write"]!)"],
            body: Array(#"{"email":"a@x.io","phoneNumber":"1"}"#.utf8)
        )
        #expect(seed.status == 200)
        for route in Self.routes {
            for who in ["none", "unknown", "read", "write", "admin"] {
                var headers = ["Content-Type": "application/json"]
                if who == "unknown" { headers["Authorization"] = "Bearer not-a-known-token" }
                if let token = Self.tokens[who] { headers["Authorization"] = "Bearer \(token)" }
                let answer = try HTTPExchange.send(
                    port: port, method: route.method, path: route.path, headers: headers,
                    body: Array((route.body ?? "").utf8)
                )
                let label = "\(route.method) \(route.path) as \(who), TLS \(tls): \(answer.status) \(answer.text.prefix(200))"
                guard let needed = route.role else {
                    #expect(answer.status == 200, "\(label)")
                    continue
                }
                if who == "none" || who == "unknown" {
                    #expect(answer.status == 401, "\(label)")
                    #expect(answer.headers["www-authenticate"] == "Bearer", "\(label)")
                    #expect(answer.headers["content-type"] == "application/problem+json")
                } else if Self.ranks[who]! < Self.ranks[needed]! {
                    #expect(answer.status == 403, "\(label)")
                } else {
                    #expect(answer.status != 401 && answer.status != 403 && answer.status < 500, "\(label)")
                }
            }
        }
        #expect(server.stop() == 0)
    }

    @Test("authentication comes before the body is read: a bad body without a token is 401, not 400")
    func authenticationFirst() throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory)
        let answer = try HTTPExchange.post(port: server.httpPort, json: "{not json")
        #expect(answer.status == 401)
        #expect(server.stop() == 0)
    }

    @Test("a role too low is 403 before the body is read: a malformed body, an oversized one, or one that never comes")
    func forbiddenFirst() throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory)
        let reader = ["Content-Type": "application/json", "Authorization": "Bearer \(TestTokens.read)"]
        let malformed = try HTTPExchange.send(
            port: server.httpPort, method: "POST", path: "/identify", headers: reader, body: Array("{not json".utf8)
        )
        #expect(malformed.status == 403, "\(malformed.text)")
        let oversized = try HTTPExchange.send(
            port: server.httpPort, method: "POST", path: "/identify", headers: reader,
            body: Array(repeating: UInt8(ascii: " "), count: 70_000)
        )
        #expect(oversized.status == 403, "\(oversized.text)")
        #expect(try Self.statusLine(announcing: 1000, headers: reader, port: server.httpPort).hasPrefix("HTTP/1.1 403"))
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/1").status == 401)
        #expect(server.stop() == 0)
    }

    @Test("an oversized body without a token is 401, not 413")
    func unauthenticatedBeforeSize() throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory)
        let oversized = try HTTPExchange.post(port: server.httpPort, json: Array(repeating: UInt8(ascii: " "), count: 70_000))
        #expect(oversized.status == 401, "\(oversized.text)")
        #expect(oversized.headers["www-authenticate"] == "Bearer")
        let line = try Self.statusLine(announcing: 10_000_000, headers: ["Content-Type": "application/json"], port: server.httpPort)
        #expect(line.hasPrefix("HTTP/1.1 401"), "\(line)")
        // The same body with a token that may write is refused for its size: the 401 was not luck.
        let writer = try HTTPExchange.send(
            port: server.httpPort, method: "POST", path: "/identify",
            headers: ["Content-Type": "application/json", "Authorization": "Bearer \(TestTokens.write)"],
            body: Array(repeating: UInt8(ascii: " "), count: 70_000)
        )
        #expect(writer.status == 413, "\(writer.text)")
        #expect(server.stop() == 0)
    }

    /// The status line of the answer to a `POST /identify` whose head announces `length` bytes of
    /// body that are never sent: an answer at all means the server did not wait for the body.
    private static func statusLine(announcing length: Int, headers: [String: String], port: Int) throws -> String {
        let socket = try TestSocket(port: port)
        var head = "POST /identify HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(length)\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        try socket.send(head + "\r\n")
        return try #require(try socket.readLine(), "the server closed the connection without an answer")
    }

    /// Every line op with the role it needs.
    static let lineOps: [(line: String, role: String)] = [
        (#"{"email":"l@x.io","phoneNumber":"7"}"#, "write"),
        (#"{"email":"l2@x.io","dryRun":true}"#, "read"),
        (#"{"op":"lookup","email":"a@x.io"}"#, "read"),
        (#"{"op":"get","contactId":1}"#, "read"),
        (#"{"op":"ping"}"#, "read"),
    ]

    @Test("every line op answers 401, 403 or passes for no token, an unknown one and each role", arguments: [false, true])
    func lineMatrix(tls: Bool) throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory, extra: tls ? TestCertificate.serveFlags : [])
        let tunnel = tls ? try TLSTunnel(to: server.tcpPort) : nil
        for op in Self.lineOps {
            for who in ["none", "unknown", "read", "write", "admin"] {
                let socket = try TestSocket(port: tunnel?.port ?? server.tcpPort)
                if who != "none" {
                    let token = Self.tokens[who] ?? "not-a-known-token"
                    try socket.send(#"{"op":"auth","token":"\#(token)","id":0}"# + "\n")
                    let answer = try #require(try lineJSON(socket.readLine()))
                    if who == "unknown" {
                        #expect((answer["error"] as? [String: Any])?["status"] as? Int == 401)
                    } else {
                        #expect(answer["ok"] as? Bool == true, "\(answer)")
                    }
                }
                try socket.send(op.line + "\n")
                let answer = try #require(try lineJSON(socket.readLine()))
                let status = (answer["error"] as? [String: Any])?["status"] as? Int
                let label = "\(op.line) as \(who), TLS \(tls): \(answer)"
                if who == "none" || who == "unknown" {
                    #expect(status == 401, "\(label)")
                } else if Self.ranks[who]! < Self.ranks[op.role]! {
                    #expect(status == 403, "\(label)")
                } else {
                    #expect(status == nil, "\(label)")
                }
            }
        }
        #expect(server.stop() == 0)
    }

    @Test("five failed auth lines close a line connection; without tokens auth answers ok")
    func failedAuthsClose() throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory)
        let socket = try TestSocket(port: server.tcpPort)
        for attempt in 1...5 {
            try socket.send(#"{"op":"auth","token":"wrong-token-\#(attempt)"}"# + "\n")
            let answer = try #require(try lineJSON(socket.readLine()))
            #expect((answer["error"] as? [String: Any])?["status"] as? Int == 401)
        }
        #expect(socket.isClosedByServer())
        #expect(server.stop() == 0)

        let open = try ServerProcess(dataDirectory: directory.path + "/open")
        let client = try TestSocket(port: open.tcpPort)
        try client.send(#"{"op":"auth","token":"anything-at-all"}"# + "\n")
        #expect(try lineJSON(client.readLine())?["ok"] as? Bool == true)
        #expect(open.stop() == 0)
    }

    @Test("SIGHUP reloads the tokens: a removed token stops working and its line connections close")
    func reloadRemovesToken() throws {
        let directory = TemporaryDirectory()
        let server = try serverWithTokens(directory)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"op":"auth","token":"\#(Self.tokens["read"]!)"}"# + "\n")
        #expect(try lineJSON(socket.readLine())?["ok"] as? Bool == true)

        try TestTokens.write([.admin], to: directory.path + "/tokens")
        try server.reload("tokens", expecting: "ok")
        #expect(socket.isClosedByServer(), "the connection of a removed token stayed open")
        let read = try HTTPExchange.send(
            port: server.httpPort, method: "GET", path: "/changes",
            headers: ["Authorization": "Bearer \(Self.tokens["read"]!)"]
        )
        #expect(read.status == 401)

        try "admin\n".write(toFile: directory.path + "/tokens", atomically: true, encoding: .utf8)
        try server.reload("tokens", expecting: "failed")
        let admin = try HTTPExchange.send(
            port: server.httpPort, method: "GET", path: "/changes",
            headers: ["Authorization": "Bearer \(Self.tokens["admin"]!)"]
        )
        #expect(admin.status == 200, "a bad token file replaced the tokens in force")
        #expect(server.stop() == 0)
        let log = server.log
        #expect(log.contains("token reload failed"))
        for token in Self.tokens.values { #expect(!log.contains(token), "the log holds a token") }
    }

    @Test("bad token files and an open non-loopback address are usage errors that say what to do")
    func badConfiguration() throws {
        let directory = TemporaryDirectory()
        for (index, text) in ["reader sometoken123\n", "read\n", "# only a comment\n", "read short\n"].enumerated() {
            let path = directory.path + "/tokens-\(index)"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runIdentityGraph(["serve", "--data-dir", directory.store, "--auth-tokens", path])
            #expect(result.status == 2, "\(text): \(result.output)")
            #expect(result.output.contains(path), "\(result.output)")
            #expect(!result.output.contains("sometoken123"), "the message repeats a token")
        }
        let missing = try runIdentityGraph(["serve", "--data-dir", directory.store, "--auth-tokens", "/nonexistent/tokens"])
        #expect(missing.status == 2)
        let open = try runIdentityGraph(["serve", "--data-dir", directory.store, "--host", "0.0.0.0"])
        #expect(open.status == 2)
        #expect(open.output.contains("--auth-tokens") && open.output.contains("--allow-unauthenticated"))
        let allowed = try ServerProcess(
            dataDirectory: directory.store, arguments: ["--host", "0.0.0.0", "--allow-unauthenticated"]
        )
        #expect(try HTTPExchange.get(port: allowed.httpPort, path: "/healthz").status == 200)
        #expect(allowed.stop() == 0)
    }
}

import Foundation
import Testing

/// Stopping, killing and restarting the real server process.
@Suite(.serialized, .timeLimit(.minutes(5))) struct LifecycleTests {
    /// Sends identify requests over both transports and returns each request with the profile
    /// the server acknowledged for it.
    private func acknowledgedRequests(_ server: ServerProcess, count: Int) throws -> [(body: String, profile: [String: Any])] {
        var acknowledged: [(String, [String: Any])] = []
        let socket = try TestSocket(port: server.tcpPort)
        for index in 0..<count {
            let body = #"{"email":"person\#(index % 37)@x.io","phoneNumber":"\#(index % 23)"}"#
            if index % 2 == 0 {
                let answer = try HTTPExchange.post(port: server.httpPort, json: body)
                #expect(answer.status == 200)
                acknowledged.append((body, answer.json["contact"] as? [String: Any] ?? [:]))
            } else {
                try socket.send(body + "\n")
                let answer = try #require(try lineJSON(socket.readLine()))
                acknowledged.append((body, answer["contact"] as? [String: Any] ?? [:]))
            }
        }
        return acknowledged
    }

    /// Every acknowledged answer still holds: asking again returns a profile that contains it, and
    /// asking again creates nothing.
    private func expectStillHolds(_ acknowledged: [(body: String, profile: [String: Any])], on server: ServerProcess) throws {
        var contacts = 0
        while try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(contacts + 1)").status == 200 { contacts += 1 }
        for (body, profile) in acknowledged {
            let now = try #require(try HTTPExchange.post(port: server.httpPort, json: body).json["contact"] as? [String: Any])
            for field in ["emails", "phoneNumbers", "secondaryContactIds"] {
                let before = Set((profile[field] as? [AnyHashable]) ?? [])
                let after = Set((now[field] as? [AnyHashable]) ?? [])
                #expect(before.isSubset(of: after), "\(body): \(field) \(before) lost, now \(after)")
            }
            #expect((now["primaryContactId"] as? Int ?? .max) <= (profile["primaryContactId"] as? Int ?? 0))
        }
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(contacts + 1)").status == 404,
                "asking again for acknowledged contacts created new ones")
    }

    @Test("acknowledged answers survive SIGTERM and a restart", arguments: [SIGTERM, SIGKILL])
    func durableAcrossStop(signal: Int32) throws {
        let directory = TemporaryDirectory()
        let first = try ServerProcess(dataDirectory: directory.store)
        let acknowledged = try acknowledgedRequests(first, count: 120)
        let status = first.stop(signal: signal)
        if signal == SIGTERM { #expect(status == 0) }

        let second = try ServerProcess(dataDirectory: directory.store)
        try expectStillHolds(acknowledged, on: second)
        #expect(second.stop() == 0)
        let check = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(check.status == 0, "\(check.output)")
    }

    @Test("SIGTERM with requests in flight: every accepted request is answered, and the exit code is 0")
    func gracefulShutdown() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let sockets = try (0..<4).map { _ in try TestSocket(port: server.tcpPort) }
        for (connection, socket) in sockets.enumerated() {
            var batch = ""
            for index in 0..<500 {
                batch += #"{"email":"c\#(connection)-\#(index)@x.io","phoneNumber":"\#(index % 40)","id":\#(index)}"# + "\n"
            }
            try socket.send(batch)
        }
        // Each connection has been read from and answers are flowing: requests are in flight.
        var firstAnswers: [Int] = []
        for socket in sockets {
            firstAnswers.append(try #require(try lineJSON(socket.readLine()))["id"] as? Int ?? -1)
        }
        #expect(firstAnswers == [0, 0, 0, 0])
        // An HTTP request in flight at the same moment: its head and half its body are read by the
        // server (the kernel holds nothing unread for it) before SIGTERM, the rest comes after.
        let body = Array(#"{"email":"http@x.io"}"#.utf8)
        let http = try TestSocket(port: server.httpPort)
        try http.send(
            "POST /identify HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.count)\r\n\r\n" + String(decoding: body.prefix(8), as: UTF8.self)
        )
        try #require(http.waitUntilPeerHasRead(serverPort: server.httpPort), "the server never read the HTTP request")
        #expect(kill(server.process.processIdentifier, SIGTERM) == 0)
        try http.send(Array(body.dropFirst(8)))

        for socket in sockets {
            var ids: [Int] = []
            while let line = try socket.readLine() {
                let reply = try #require(try lineJSON(line))
                #expect(reply["contact"] != nil || (reply["error"] as? [String: Any])?["status"] as? Int == 503, "\(reply)")
                ids.append(reply["id"] as? Int ?? -1)
            }
            // The first answer was read above; the rest follow it in order, without gaps, up to a clean close.
            #expect(ids == Array(1..<(1 + ids.count)), "answers must come in order, without gaps")
        }
        let answer = String(decoding: try http.readToEnd(), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "the HTTP request in flight at SIGTERM: \(answer)")
        #expect(server.stop() == 0)

        let contacts = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(contacts.status == 0, "\(contacts.output)")
    }

    @Test("an idle connection is closed after the idle timeout, on both listeners; new clients are served")
    func idleTimeout() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--idle-timeout", "1"])
        let silent = try TestSocket(port: server.tcpPort, timeout: 5)
        let halfSent = try TestSocket(port: server.httpPort, timeout: 5)
        try halfSent.send("POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"em")
        // Each read waits at most 5 s: a connection still open by then fails here.
        #expect(silent.isClosedByServer())
        #expect(halfSent.isClosedByServer())

        let fresh = try TestSocket(port: server.tcpPort)
        try fresh.send(#"{"op":"ping","id":1}"# + "\n")
        #expect(try fresh.readLine() == #"{"id":1,"ok":true}"#)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/1").status == 404)
    }
}

extension TestSocket {
    /// Runs a blocking exchange on its own thread; `get()` waits for its result.
    static func async<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> Pending<T> {
        let pending = Pending<T>()
        Thread {
            pending.finish(Result { try body() })
        }.start()
        return pending
    }

    final class Pending<T: Sendable>: @unchecked Sendable {
        // @unchecked: `result` is written once before `done` is signalled and read only after.
        private var result: Result<T, any Error>?
        private let done = DispatchSemaphore(value: 0)

        fileprivate func finish(_ result: Result<T, any Error>) {
            self.result = result
            done.signal()
        }

        /// The result, once the exchange has finished; throws if it has not within `seconds` (every
        /// socket of these tests times out far sooner, so only a hung thread gets here).
        func get(seconds: Double = 300) throws -> T {
            guard done.wait(timeout: .now() + seconds) == .success else {
                throw TestSocket.SocketError(description: "a background exchange did not finish within \(Int(seconds)) s")
            }
            done.signal()
            return try result!.get()
        }
    }
}

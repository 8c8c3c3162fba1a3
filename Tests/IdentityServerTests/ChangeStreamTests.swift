import Foundation
import Testing

/// The change feed as Server-Sent Events (SPEC.md section 13) and its retention, on the real server.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ChangeStreamTests {
    @Test("a stream sends stored events, then new ones once durable, with heartbeats while idle")
    func streamsEventsAndHeartbeats() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--changes-heartbeat", "1"])
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","phoneNumber":"1"}"#)
        let stream = try EventStream(port: server.httpPort)
        let first = try #require(try stream.nextEvent())
        #expect(first.id == 1 && first.type == "created")
        #expect(first.data["contactIds"] as? [Int] == [1])
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"b@x.io","phoneNumber":"1"}"#)
        let second = try #require(try stream.nextEvent())
        #expect(second.id == 2 && (second.data["primaryContactIds"] as? [Int]) == [1])
        // Nothing happens for a while: comment lines keep the stream alive.
        let started = Date()
        while stream.comments.filter({ $0.contains("heartbeat") }).isEmpty && Date().timeIntervalSince(started) < 5 {
            _ = try stream.nextLine()
        }
        #expect(stream.comments.contains { $0.contains("heartbeat") })
        #expect(server.stop() == 0)
    }

    @Test("Last-Event-ID wins over after, whichever is further")
    func lastEventIdWinsOverAfter() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for index in 1...3 {
            #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"w\#(index)@x.io"}"#).status == 200)
        }
        let ahead = try EventStream(port: server.httpPort, query: "?after=1", lastEventId: 2)
        #expect(try ahead.nextEvent()?.id == 3, "after=1 was followed instead of Last-Event-ID: 2")
        let behind = try EventStream(port: server.httpPort, query: "?after=2", lastEventId: 1)
        #expect(try behind.nextEvent()?.id == 2, "after=2 was followed instead of Last-Event-ID: 1")
        #expect(server.stop() == 0)
    }

    @Test("a stream is exempt from the idle timeout: it outlives a silent connection and still gets new events")
    func streamOutlivesIdleTimeout() throws {
        let directory = TemporaryDirectory()
        // Heartbeats every 15 s: nothing goes over the stream for far longer than the idle timeout.
        let server = try ServerProcess(
            dataDirectory: directory.store, arguments: ["--idle-timeout", "1", "--changes-heartbeat", "15"]
        )
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io"}"#)
        let stream = try EventStream(port: server.httpPort)
        #expect(try stream.nextEvent()?.id == 1)
        // Opened after the stream went quiet: once the idle timeout has closed it, the stream has been
        // quiet for longer than the timeout too.
        let silent = try TestSocket(port: server.httpPort, timeout: 10)
        #expect(silent.isClosedByServer(), "the idle timeout did not close a silent connection")
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"b@x.io"}"#)
        let next = try #require(try stream.nextEvent(), "the idle timeout closed the stream")
        #expect(next.id == 2)
        #expect(!stream.comments.contains { $0.contains("heartbeat") }, "a heartbeat kept the stream busy: \(stream.comments)")
        #expect(server.stop() == 0)
    }

    @Test("a consumer that disconnects and resumes with Last-Event-ID during a load sees every event once, in order")
    func resumeDuringLoad() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--changes-heartbeat", "1"])
        let requests = 600
        let load = Thread {
            for index in 0..<requests {
                // New people, and every third request joins two of them: creates and merges.
                let body = index % 3 == 2
                    ? #"{"email":"p\#(index - 1)@x.io","phoneNumber":"\#(index - 2)"}"#
                    : #"{"email":"p\#(index)@x.io","phoneNumber":"\#(index)"}"#
                _ = try? HTTPExchange.post(port: server.httpPort, json: body)
            }
        }
        load.start()
        var seen: [Int] = []
        var lastId = 0
        var connections = 0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            connections += 1
            let stream = try EventStream(port: server.httpPort, lastEventId: connections == 1 ? nil : lastId)
            // Leave after a few events each time, mid-load.
            for _ in 0..<(40 + connections) {
                // A heartbeat means the stream has caught up: look at the load again.
                guard let event = try stream.nextEvent(stopAtHeartbeat: true) else { break }
                seen.append(event.id)
                lastId = event.id
            }
            let latest = try HTTPExchange.get(port: server.httpPort, path: "/changes?limit=1").json["latestSeq"] as? Int
            if load.isFinished, let latest, lastId >= latest { break }
        }
        #expect(connections > 3)
        let latest = try #require(try HTTPExchange.get(port: server.httpPort, path: "/changes?limit=1").json["latestSeq"] as? Int)
        #expect(latest >= requests)
        #expect(seen == Array(1...latest), "events missed, repeated or out of order")
        #expect(server.stop() == 0)
    }

    @Test("SIGTERM ends each stream after the durable events with a last comment, and the server exits 0")
    func shutdownEndsStreams() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io"}"#)
        let stream = try EventStream(port: server.httpPort)
        #expect(try stream.nextEvent()?.id == 1)
        kill(server.process.processIdentifier, SIGTERM)
        while try stream.nextLine() != nil {}
        #expect(stream.comments.last?.contains("shutting down") == true, "\(stream.comments)")
        #expect(server.stop() == 0)
    }

    @Test("--changes-retain keeps the newest events; older ones are 410, after=0 starts at the oldest kept")
    func retention() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--changes-retain", "3"])
        for index in 1...6 {
            _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"r\#(index)@x.io"}"#)
        }
        let all = try HTTPExchange.get(port: server.httpPort, path: "/changes")
        #expect((all.json["changes"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int } == [4, 5, 6])
        #expect(all.json["latestSeq"] as? Int == 6)
        let gone = try HTTPExchange.get(port: server.httpPort, path: "/changes?after=1")
        #expect(gone.status == 410)
        #expect((gone.json["detail"] as? String)?.contains("4") == true)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/changes?after=3").status == 200)
        let resumed = try HTTPExchange.send(
            port: server.httpPort, method: "GET", path: "/changes",
            headers: ["Accept": "text/event-stream", "Last-Event-ID": "1"]
        )
        #expect(resumed.status == 410)
        #expect(server.stop() == 0)
        // Retention survives a restart: the pruned events stay gone.
        let again = try ServerProcess(dataDirectory: directory.store, arguments: ["--changes-retain", "3"])
        let after = try HTTPExchange.get(port: again.httpPort, path: "/changes")
        #expect((after.json["changes"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int } == [4, 5, 6])
        #expect(again.stop() == 0)
    }
}

/// A Server-Sent Events client over one HTTP/1.1 connection, decoding the chunked body.
final class EventStream {
    struct Event {
        var id: Int
        var type: String
        var data: [String: Any]
    }

    private let socket: TestSocket
    private var text: [UInt8] = []
    private(set) var comments: [String] = []

    init(port: Int, query: String = "", lastEventId: Int? = nil) throws {
        socket = try TestSocket(port: port, timeout: 20)
        var head = "GET /changes\(query) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if let lastEventId { head += "Last-Event-ID: \(lastEventId)\r\n" }
        try socket.send(head + "\r\n")
        let status = try #require(try socket.readLine())
        #expect(status.contains(" 200 "), "\(status)")
        while let line = try socket.readLine(), line != "\r" {}
    }

    /// The next line of the event stream, `nil` at its end.
    func nextLine() throws -> String? {
        while true {
            if let newline = text.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: text[..<newline], as: UTF8.self)
                text.removeSubrange(...newline)
                if line.hasPrefix(":") { comments.append(line) }
                return line
            }
            guard let sizeLine = try socket.readLine(),
                let size = Int(sizeLine.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16), size > 0
            else { return nil }
            guard let chunk = try socket.read(count: size + 2) else { return nil }
            text += chunk.dropLast(2)
        }
    }

    /// The next event, `nil` at the end of the stream (or, with `stopAtHeartbeat`, at a heartbeat).
    func nextEvent(stopAtHeartbeat: Bool = false) throws -> Event? {
        var id: Int?
        var type: String?
        var data: [String: Any]?
        while let line = try nextLine() {
            if stopAtHeartbeat && line.hasPrefix(": heartbeat") { return nil }
            if line.hasPrefix("id: ") { id = Int(line.dropFirst(4)) }
            if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") {
                data = try JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
            }
            if line.isEmpty, let id, let type, let data { return Event(id: id, type: type, data: data) }
        }
        return nil
    }
}

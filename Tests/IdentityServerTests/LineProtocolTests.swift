import Foundation
import Testing

/// The line protocol over a real socket.
@Suite(.timeLimit(.minutes(5))) struct LineProtocolTests {
    private func answer(_ socket: TestSocket) throws -> [String: Any] {
        try #require(try lineJSON(socket.readLine()))
    }

    private func errorStatus(_ answer: [String: Any]) -> Int? {
        (answer["error"] as? [String: Any])?["status"] as? Int
    }

    @Test("ping answers ok and echoes string and number ids")
    func ping() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"op":"ping","id":"abc"}"# + "\n" + #"{"op":"ping","id":12.5}"# + "\n" + #"{"op":"ping"}"# + "\n")
        #expect(try socket.readLine() == #"{"id":"abc","ok":true}"#)
        #expect(try socket.readLine() == #"{"id":12.5,"ok":true}"#)
        #expect(try socket.readLine() == #"{"id":null,"ok":true}"#)
    }

    @Test("get returns the contact record, or a 404 error")
    func get() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"email":"doc@hillvalley.edu","id":1}"# + "\n" + #"{"op":"get","contactId":1,"id":2}"# + "\n")
        _ = try answer(socket)
        let record = try #require(try answer(socket)["record"] as? [String: Any])
        #expect(record["email"] as? String == "doc@hillvalley.edu")
        #expect(record["linkPrecedence"] as? String == "primary")
        #expect(record.keys.contains("phoneNumber") && record.keys.contains("deletedAt"))
        try socket.send(#"{"op":"get","contactId":2,"id":3}"# + "\n" + #"{"op":"get","contactId":"x","id":4}"# + "\n")
        let missing = try answer(socket)
        #expect(missing["id"] as? Int == 3)
        #expect(errorStatus(missing) == 404)
        #expect(errorStatus(try answer(socket)) == 400)
    }

    @Test("an unknown op is a 400 error naming op")
    func unknownOp() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"op":"delete","id":9}"# + "\n")
        let reply = try answer(socket)
        #expect(reply["id"] as? Int == 9)
        #expect(errorStatus(reply) == 400)
        #expect(((reply["error"] as? [String: Any])?["detail"] as? String)?.hasPrefix("op:") == true)
    }

    @Test("an id that is neither a string nor a number is a 400 with a null id")
    func badId() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"op":"ping","id":{"a":1}}"# + "\n")
        let reply = try answer(socket)
        #expect(reply["id"] is NSNull)
        #expect(errorStatus(reply) == 400)
    }

    @Test("a broken line gets an error and the next line is served on the same connection")
    func brokenThenGood() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send("{\"email\": oops}\n" + #"{"email":"good@x.io","id":"g"}"# + "\r\n")
        let broken = try answer(socket)
        #expect(broken["id"] is NSNull)
        #expect(errorStatus(broken) == 400)
        let good = try answer(socket)
        #expect(good["id"] as? String == "g")
        #expect((good["contact"] as? [String: Any])?["emails"] as? [String] == ["good@x.io"])
    }

    @Test("blank lines are ignored")
    func blankLines() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send("\n\r\n   \n" + #"{"op":"ping","id":1}"# + "\n\n")
        #expect(try socket.readLine() == #"{"id":1,"ok":true}"#)
        try socket.send(#"{"op":"ping","id":2}"# + "\n")
        #expect(try socket.readLine() == #"{"id":2,"ok":true}"#)
    }

    @Test("2,000 pipelined requests in one write are answered in order")
    func pipelined() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        var batch = ""
        for index in 0..<2000 {
            switch index % 4 {
            case 0: batch += #"{"email":"p\#(index / 8)@x.io","phoneNumber":"\#(index % 50)","id":\#(index)}"# + "\n"
            case 1: batch += #"{"op":"ping","id":\#(index)}"# + "\n"
            case 2: batch += #"{"phoneNumber":"\#(index % 50)","id":\#(index)}"# + "\n"
            default: batch += ##"{"email":"#bad","id":\##(index)}"## + "\n"
            }
        }
        try socket.send(batch)
        for index in 0..<2000 {
            let reply = try answer(socket)
            #expect(reply["id"] as? Int == index)
            switch index % 4 {
            case 0, 2: #expect(reply["contact"] != nil, "\(index): \(reply)")
            case 1: #expect(reply["ok"] as? Bool == true)
            default: #expect(errorStatus(reply) == 400)
            }
        }
    }

    @Test("a line over 64 KiB gets an error, then the connection closes; the server serves on")
    func overLongLine() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        let long = #"{"email":"a@x.io","pad":""# + String(repeating: "y", count: 70_000) + "\"}\n"
        try socket.send(#"{"op":"ping","id":1}"# + "\n" + long + #"{"op":"ping","id":2}"# + "\n")
        #expect(try socket.readLine() == #"{"id":1,"ok":true}"#)
        let tooLong = try answer(socket)
        #expect(errorStatus(tooLong) == 413)
        #expect(try socket.readLine() == nil, "the connection should close after the error")

        let next = try TestSocket(port: server.tcpPort)
        try next.send(#"{"op":"ping","id":3}"# + "\n")
        #expect(try next.readLine() == #"{"id":3,"ok":true}"#)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/1").status == 404)
    }

    @Test("a line of exactly 64 KiB is served")
    func lineAtLimit() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        let prefix = #"{"op":"ping","id":5,"pad":""#
        let line = prefix + String(repeating: "z", count: 65_536 - prefix.utf8.count - 2) + "\"}"
        try socket.send(line + "\r\n")
        #expect(try socket.readLine() == #"{"id":5,"ok":true}"#)
    }

    @Test("a client that half-closes after its requests still gets every answer")
    func halfClose() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let socket = try TestSocket(port: server.tcpPort)
        try socket.send(#"{"email":"doc@hillvalley.edu"}"# + "\n" + #"{"op":"ping"}"#)
        socket.shutdownWrite()
        let lines = String(decoding: try socket.readToEnd(), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains(#""contact":{"primaryContactId":1"#) == true)
        #expect(lines.last == #"{"id":null,"ok":true}"#)
    }
}

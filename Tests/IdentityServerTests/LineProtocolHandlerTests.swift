import Foundation
import IdentityGraph
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import IdentityServer

/// The line protocol of SPEC.md sections 7 and 14 in-process: the real decoder and `LineProtocolHandler` on a
/// `NIOAsyncTestingChannel`, over an in-memory engine. The engine answers on its own thread and hands the answers
/// back to the channel's event loop, as it does in the server; each helper waits until every request sent has
/// been answered. Each `writeInbound` is one read from the socket; each outbound buffer is one write to it.
@Suite struct LineProtocolHandlerTests {
    static let tokens = TestTokens.table

    /// One connection: the decoder and the handler, as `LineServer` puts them in a pipeline, on an active channel.
    struct Connection {
        let channel: NIOAsyncTestingChannel
        let engine: IdentityEngine

        init(
            engine: IdentityEngine = IdentityEngine(), access: AccessControl = AccessControl(tokens: nil),
            metrics: ServerMetrics = ServerMetrics(), maxLineBytes: Int = ServerConfiguration().maxLineBytes
        ) async throws {
            self.engine = engine
            channel = try await NIOAsyncTestingChannel { channel in
                try channel.pipeline.syncOperations.addHandlers([
                    ByteToMessageHandler(LineFrameDecoder(maxLength: maxLineBytes)),
                    LineProtocolHandler(
                        engine: engine, access: access, metrics: metrics, maxInFlight: 4096,
                        maxLineBytes: maxLineBytes, logger: Logger(label: "line-protocol-handler-tests")
                    ),
                ])
            }
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7070)).get()
        }

        /// Sends `text` as one read, and waits until every request it completes is answered.
        func send(_ text: String) async throws {
            try await channel.writeInbound(ByteBuffer(string: text))
            try await settle()
        }

        /// Waits until the handler owes no answer (or the channel has closed), for at most five seconds.
        func settle(sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let deadline = ContinuousClock.now + .seconds(5)
            while true {
                // Sampled before the check, so that the last check comes after the deadline has passed.
                let late = ContinuousClock.now >= deadline
                await channel.testingEventLoop.run()
                let settled = try await channel.testingEventLoop.executeInContext { [channel] in
                    guard let handler = try? channel.pipeline.syncOperations.handler(type: LineProtocolHandler.self)
                    else { return true }
                    return handler.owesNothing
                }
                if settled { return }
                if late { break }
                try await Task.sleep(for: .milliseconds(1))
            }
            Issue.record("answers still owed after five seconds", sourceLocation: sourceLocation)
        }

        /// Every write since the last call, each as its text.
        func writes() async throws -> [String] {
            var writes: [String] = []
            while let buffer = try await channel.readOutbound(as: ByteBuffer.self) {
                writes.append(String(buffer: buffer))
            }
            return writes
        }

        /// The answer lines of every write since the last call, without their line breaks.
        func answers(sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String] {
            let text = try await writes().joined()
            #expect(text.isEmpty || text.hasSuffix("\n"), "an answer without its line break", sourceLocation: sourceLocation)
            return text.split(separator: "\n").map(String.init)
        }

        /// Sends `lines`, each with its line break, as one read, and returns the answer lines.
        func exchange(_ lines: String...) async throws -> [String] {
            try await send(lines.map { $0 + "\n" }.joined())
            return try await answers()
        }

        /// Fires `event` through the pipeline and waits for what it leads to.
        func fire(_ event: any Sendable) async throws {
            channel.pipeline.fireUserInboundEventTriggered(event)
            try await settle()
        }
    }

    private func errorStatus(_ answer: String) throws -> Int? {
        let object = try #require(try lineJSON(answer))
        return (object["error"] as? [String: Any])?["status"] as? Int
    }

    private func errorDetail(_ answer: String) throws -> String? {
        let object = try #require(try lineJSON(answer))
        return (object["error"] as? [String: Any])?["detail"] as? String
    }

    // MARK: - Requests and answers

    @Test("an identify line answers the profile, with the id echoed")
    func identify() async throws {
        let connection = try await Connection()
        #expect(try await connection.exchange(#"{"email":"doc@hillvalley.edu","phoneNumber":"123456","id":7}"#) == [
            #"{"id":7,"contact":{"primaryContactId":1,"emails":["doc@hillvalley.edu"],"phoneNumbers":["123456"],"#
                + #""secondaryContactIds":[]}}"#
        ])
        #expect(try await connection.exchange(#"{"email":"marty@hillvalley.edu","phoneNumber":123456,"id":"m"}"#) == [
            #"{"id":"m","contact":{"primaryContactId":1,"emails":["doc@hillvalley.edu","marty@hillvalley.edu"],"#
                + #""phoneNumbers":["123456"],"secondaryContactIds":[2]}}"#
        ])
        #expect(connection.channel.isActive)
    }

    @Test("an identify line without an id answers with a null id")
    func identifyWithoutId() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(#"{"email":"doc@hillvalley.edu"}"#)
        #expect(answers.count == 1)
        #expect(answers.first?.hasPrefix(#"{"id":null,"contact":{"primaryContactId":1,"#) == true)
    }

    @Test("pipelined lines are answered in order, in one write per read")
    func pipelinedInOneWrite() async throws {
        let connection = try await Connection()
        var lines = ""
        for index in 0..<200 {
            switch index % 4 {
            case 0: lines += #"{"email":"p\#(index / 8)@x.io","phoneNumber":"\#(index % 50)","id":\#(index)}"# + "\n"
            case 1: lines += #"{"op":"ping","id":\#(index)}"# + "\n"
            case 2: lines += #"{"phoneNumber":"\#(index % 50)","id":\#(index)}"# + "\n"
            default: lines += ##"{"email":"#bad","id":\##(index)}"## + "\n"
            }
        }
        try await connection.send(lines)
        let writes = try await connection.writes()
        #expect(writes.count == 1, "one read should be answered with one write, not \(writes.count)")
        let answers = writes.joined().split(separator: "\n").map(String.init)
        #expect(answers.count == 200)
        for (index, answer) in answers.enumerated() {
            let object = try #require(try lineJSON(answer))
            #expect(object["id"] as? Int == index, "\(answer)")
            switch index % 4 {
            case 0, 2: #expect(object["contact"] != nil, "\(index): \(answer)")
            case 1: #expect(object["ok"] as? Bool == true, "\(answer)")
            default: #expect(try errorStatus(answer) == 400, "\(answer)")
            }
        }

        try await connection.send(#"{"op":"ping","id":"a"}"# + "\n" + #"{"op":"ping","id":"b"}"# + "\n")
        #expect(try await connection.writes() == [#"{"id":"a","ok":true}"# + "\n" + #"{"id":"b","ok":true}"# + "\n"])
    }

    @Test("the engine requests of one read reach the engine in one call, and their answers in one write")
    func oneEngineCallPerRead() async throws {
        let connection = try await Connection()
        var lines = ""
        for index in 0..<64 {
            switch index % 3 {
            case 0: lines += #"{"email":"r\#(index)@x.io","phoneNumber":"\#(index % 7)","id":\#(index)}"# + "\n"
            case 1: lines += #"{"op":"lookup","phoneNumber":"\#(index % 7)","id":\#(index)}"# + "\n"
            default: lines += #"{"op":"get","contactId":\#(index / 3 + 1),"id":\#(index)}"# + "\n"
            }
        }
        let before = await connection.engine.calls
        try await connection.send(lines)
        #expect(await connection.engine.calls == before + 1, "64 requests in one read made more than one engine call")
        let writes = try await connection.writes()
        #expect(writes.count == 1)
        let answers = writes.joined().split(separator: "\n")
        #expect(answers.count == 64)
        for (index, answer) in answers.enumerated() {
            #expect(try lineJSON(String(answer))?["id"] as? Int == index, "\(answer)")
        }
        // Reads without an engine request do not call it at all; each later read is one call more.
        try await connection.send(#"{"op":"ping"}"# + "\n")
        #expect(await connection.engine.calls == before + 1)
        try await connection.send(#"{"email":"late@x.io"}"# + "\n" + #"{"op":"get","contactId":1}"# + "\n")
        #expect(await connection.engine.calls == before + 2)
    }

    @Test("a line split across reads is answered once its line break arrives")
    func lineSplitAcrossReads() async throws {
        let connection = try await Connection()
        try await connection.send(#"{"op":"pi"#)
        try await connection.send(#"ng","id":3}"#)
        #expect(try await connection.writes().isEmpty)
        try await connection.send("\r\n")
        #expect(try await connection.answers() == [#"{"id":3,"ok":true}"#])
    }

    @Test("a malformed line answers a 400 error line, and the connection stays usable")
    func malformedLine() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(#"{"email": oops}"#, #"{"email":"good@x.io","id":"g"}"#)
        #expect(answers.count == 2)
        let broken = try #require(try lineJSON(answers[0]))
        #expect(broken["id"] is NSNull)
        #expect(try errorStatus(answers[0]) == 400)
        #expect(answers[1].hasPrefix(#"{"id":"g","contact":{"primaryContactId":1,"emails":["good@x.io"]"#))
        #expect(connection.channel.isActive)
        #expect(try await connection.exchange(#"{"op":"ping","id":1}"#) == [#"{"id":1,"ok":true}"#])
    }

    @Test("an invalid field is a 400 error line naming the field, and writes nothing")
    func invalidField() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(
            #"{"email":"not-an-email","id":1}"#, #"{"phoneNumber":1.5,"id":2}"#, #"{"id":3}"#
        )
        #expect(answers.count == 3)
        #expect(try errorDetail(answers[0])?.hasPrefix("email:") == true, "\(answers[0])")
        #expect(try errorDetail(answers[1])?.hasPrefix("phoneNumber:") == true, "\(answers[1])")
        #expect(try errorStatus(answers[2]) == 400)
        #expect((await connection.engine.statistics).contacts == 0)
    }

    @Test("an id that is neither a string nor a number is a 400 with a null id")
    func idNeitherStringNorNumber() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(#"{"op":"ping","id":{"a":1}}"#, #"{"op":"ping","id":[1]}"#)
        #expect(answers.count == 2)
        for answer in answers {
            #expect(try lineJSON(answer)?["id"] is NSNull, "\(answer)")
            #expect(try errorStatus(answer) == 400)
        }
    }

    @Test("an unknown op is a 400 error line naming op")
    func unknownOp() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(#"{"op":"delete","id":9}"#, #"{"op":3,"id":10}"#)
        #expect(answers.count == 2)
        #expect(try lineJSON(answers[0])?["id"] as? Int == 9)
        for answer in answers {
            #expect(try errorStatus(answer) == 400)
            #expect(try errorDetail(answer)?.hasPrefix("op:") == true, "\(answer)")
        }
    }

    @Test("blank lines are ignored")
    func blankLines() async throws {
        let connection = try await Connection()
        try await connection.send("\n\r\n   \n\t\r\n")
        #expect(try await connection.writes().isEmpty)
        try await connection.send("\n" + #"{"op":"ping","id":1}"# + "\n\n")
        #expect(try await connection.answers() == [#"{"id":1,"ok":true}"#])
        #expect(try await connection.exchange(#"{"op":"ping","id":2}"#) == [#"{"id":2,"ok":true}"#])
    }

    @Test("ping answers ok and echoes string and number ids")
    func ping() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(
            #"{"op":"ping","id":"abc"}"#, #"{"op":"ping","id":12.5}"#, #"{"op":"ping"}"#
        )
        #expect(answers == [#"{"id":"abc","ok":true}"#, #"{"id":12.5,"ok":true}"#, #"{"id":null,"ok":true}"#])
    }

    @Test("get answers the Contact record; an unknown contact is a 404 error line, a bad contactId a 400")
    func get() async throws {
        let connection = try await Connection()
        _ = try await connection.exchange(#"{"email":"doc@hillvalley.edu","id":1}"#)
        let answers = try await connection.exchange(
            #"{"op":"get","contactId":1,"id":2}"#, #"{"op":"get","contactId":2,"id":3}"#,
            #"{"op":"get","contactId":"x","id":4}"#, #"{"op":"get","id":5}"#
        )
        #expect(answers.count == 4)
        let record = try #require(try lineJSON(answers[0])?["record"] as? [String: Any])
        #expect(record["id"] as? Int == 1)
        #expect(record["email"] as? String == "doc@hillvalley.edu")
        #expect(record["phoneNumber"] is NSNull)
        #expect(record["linkedId"] is NSNull)
        #expect(record["linkPrecedence"] as? String == "primary")
        #expect(record["deletedAt"] is NSNull)
        #expect(record["createdAt"] is String && record["updatedAt"] is String)
        #expect(try lineJSON(answers[1])?["id"] as? Int == 3)
        #expect(try errorStatus(answers[1]) == 404)
        #expect(try errorStatus(answers[2]) == 400)
        #expect(try errorStatus(answers[3]) == 400)
        #expect(try errorDetail(answers[3])?.hasPrefix("contactId:") == true)
    }

    @Test("lookup answers the profiles holding the email or the phone number, and writes nothing")
    func lookup() async throws {
        let connection = try await Connection()
        _ = try await connection.exchange(#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"2"}"#)
        let answers = try await connection.exchange(
            #"{"op":"lookup","email":"a@x.io","phoneNumber":"2","id":1}"#, #"{"op":"lookup","email":"c@x.io","id":2}"#,
            #"{"op":"lookup","email":"nope","id":3}"#
        )
        #expect(answers.count == 3)
        #expect(answers[0] == #"{"id":1,"profiles":["#
            + #"{"primaryContactId":1,"emails":["a@x.io"],"phoneNumbers":["1"],"secondaryContactIds":[]},"#
            + #"{"primaryContactId":2,"emails":["b@x.io"],"phoneNumbers":["2"],"secondaryContactIds":[]}]}"#)
        #expect(answers[1] == #"{"id":2,"profiles":[]}"#)
        #expect(try errorStatus(answers[2]) == 400)
        #expect((await connection.engine.statistics).contacts == 2)
        #expect((await connection.engine.latestSeq) == 2)
    }

    @Test("a dry-run identify answers what identify would, with what it would do, and writes nothing")
    func dryRun() async throws {
        let connection = try await Connection()
        _ = try await connection.exchange(#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"2"}"#)
        let answers = try await connection.exchange(
            #"{"email":"a@x.io","phoneNumber":"2","dryRun":true,"id":1}"#,
            #"{"email":"c@x.io","dryRun":true,"id":2}"#
        )
        #expect(answers == [
            #"{"id":1,"contact":{"primaryContactId":1,"emails":["a@x.io","b@x.io"],"phoneNumbers":["1","2"],"#
                + #""secondaryContactIds":[2]},"dryRun":{"created":[],"mergedPrimaryIds":[2]}}"#,
            #"{"id":2,"contact":{"primaryContactId":3,"emails":["c@x.io"],"phoneNumbers":[],"#
                + #""secondaryContactIds":[]},"dryRun":{"created":[3],"mergedPrimaryIds":[]}}"#,
        ])
        #expect((await connection.engine.statistics).contacts == 2)
        #expect((await connection.engine.statistics).profiles == 2)
        #expect((await connection.engine.latestSeq) == 2)
    }

    @Test("dryRun false is identify; any other dryRun is a 400 that writes nothing")
    func dryRunValues() async throws {
        let connection = try await Connection()
        let answers = try await connection.exchange(
            #"{"email":"a@x.io","dryRun":"true","id":1}"#, #"{"email":"a@x.io","dryRun":1,"id":2}"#,
            #"{"email":"a@x.io","dryRun":false,"id":3}"#
        )
        #expect(answers.count == 3)
        #expect(try errorStatus(answers[0]) == 400)
        #expect(try errorDetail(answers[0])?.hasPrefix("dryRun:") == true)
        #expect(try errorStatus(answers[1]) == 400)
        #expect(answers[2].hasPrefix(#"{"id":3,"contact":{"primaryContactId":1,"#))
        #expect((await connection.engine.statistics).contacts == 1)
    }

    @Test("every answered line is counted in the metrics by transport, op and status")
    func metricsCountLines() async throws {
        let engine = IdentityEngine()
        let metrics = ServerMetrics()
        let connection = try await Connection(engine: engine, metrics: metrics)
        _ = try await connection.exchange(
            #"{"email":"a@x.io"}"#, #"{"op":"ping"}"#, #"{"op":"ping"}"#, #"{"op":"get","contactId":9}"#, "{"
        )
        let text = String(decoding: await metrics.render(engine), as: UTF8.self)
        for series in [
            #"identity_graph_requests_total{transport="line",op="identify",status="200"} 1"#,
            #"identity_graph_requests_total{transport="line",op="ping",status="200"} 2"#,
            #"identity_graph_requests_total{transport="line",op="get",status="404"} 1"#,
            // A malformed line counts as identify, as a malformed body does over HTTP.
            #"identity_graph_requests_total{transport="line",op="identify",status="400"} 1"#,
        ] {
            #expect(text.contains(series), "missing \(series)")
        }
    }

    // MARK: - Limits and the end of a connection

    @Test("an over-long line answers 413 after the answers before it, then the channel closes")
    func overLongLine() async throws {
        let connection = try await Connection()
        let long = #"{"email":"a@x.io","pad":""# + String(repeating: "y", count: 70_000) + "\"}"
        try await connection.send(#"{"op":"ping","id":1}"# + "\n" + long + "\n" + #"{"op":"ping","id":2}"# + "\n")
        let answers = try await connection.answers()
        #expect(answers.count == 2, "\(answers)")
        #expect(answers.first == #"{"id":1,"ok":true}"#)
        #expect(try errorStatus(answers.last ?? "") == 413)
        #expect(try lineJSON(answers.last)?["id"] is NSNull)
        #expect(!connection.channel.isActive)
        #expect((await connection.engine.statistics).contacts == 0)
    }

    @Test("an over-long line split across reads answers 413 once the limit is passed, then the channel closes")
    func overLongLineAcrossReads() async throws {
        let connection = try await Connection(maxLineBytes: 64)
        try await connection.send(#"{"op":"ping","id":1,"pad":""#)
        #expect(try await connection.writes().isEmpty)
        try await connection.send(String(repeating: "y", count: 64))
        let answers = try await connection.answers()
        #expect(answers.count == 1)
        #expect(try errorStatus(answers.first ?? "") == 413)
        #expect(try errorDetail(answers.first ?? "")?.contains("64 bytes") == true)
        #expect(!connection.channel.isActive)
    }

    @Test("a line of exactly the limit is served")
    func lineAtLimit() async throws {
        let connection = try await Connection()
        let prefix = #"{"op":"ping","id":5,"pad":""#
        let padding = String(repeating: "z", count: ServerConfiguration().maxLineBytes - prefix.utf8.count - 2)
        let line = prefix + padding + "\"}"
        #expect(line.utf8.count == 65_536)
        try await connection.send(line + "\r\n")
        #expect(try await connection.answers() == [#"{"id":5,"ok":true}"#])
        #expect(connection.channel.isActive)
    }

    @Test("at end of input, every answer is delivered, a last unbroken line included, then the channel closes")
    func endOfInput() async throws {
        let connection = try await Connection()
        try await connection.send(#"{"email":"doc@hillvalley.edu"}"# + "\n" + #"{"op":"ping"}"#)
        let first = try await connection.answers()
        #expect(first.count == 1)
        #expect(first.first?.contains(#""contact":{"primaryContactId":1"#) == true)
        try await connection.fire(ChannelEvent.inputClosed)
        #expect(try await connection.answers() == [#"{"id":null,"ok":true}"#])
        #expect(!connection.channel.isActive)
    }

    @Test("a drain delivers every answer owed, then closes the channel")
    func drain() async throws {
        let connection = try await Connection()
        #expect(try await connection.exchange(#"{"op":"ping","id":1}"#) == [#"{"id":1,"ok":true}"#])
        try await connection.fire(ChannelShouldQuiesceEvent())
        #expect(!connection.channel.isActive)
    }

    // MARK: - Access control

    @Test("with tokens, every line before auth is a 401 error line, even a malformed one")
    func unauthenticated() async throws {
        let connection = try await Connection(access: AccessControl(tokens: Self.tokens))
        let answers = try await connection.exchange(
            #"{"op":"ping","id":1}"#, #"{"email":"a@x.io","id":2}"#, #"{"op":"lookup","email":"a@x.io","id":3}"#,
            #"{"op":"get","contactId":1,"id":4}"#, #"{"email":"a@x.io","dryRun":true,"id":5}"#, #"{"email":"#
        )
        #expect(answers.count == 6)
        for (index, answer) in answers.enumerated() {
            #expect(try errorStatus(answer) == 401, "\(answer)")
            if index < 5 { #expect(try lineJSON(answer)?["id"] as? Int == index + 1) }
        }
        #expect((await connection.engine.statistics).contacts == 0)
        #expect(connection.channel.isActive)
    }

    @Test("auth with a read token answers ok; then identify is 403, and reads and dry runs pass")
    func readTokenCannotWrite() async throws {
        let connection = try await Connection(access: AccessControl(tokens: Self.tokens))
        let answers = try await connection.exchange(
            #"{"op":"auth","token":"\#(TestTokens.read)","id":0}"#, #"{"email":"a@x.io","id":1}"#,
            #"{"email":"a@x.io","dryRun":true,"id":2}"#, #"{"op":"lookup","email":"a@x.io","id":3}"#,
            #"{"op":"get","contactId":1,"id":4}"#, #"{"op":"ping","id":5}"#
        )
        #expect(answers.count == 6)
        #expect(answers[0] == #"{"id":0,"ok":true}"#)
        #expect(try errorStatus(answers[1]) == 403)
        #expect(try errorDetail(answers[1])?.contains("write") == true)
        #expect(try lineJSON(answers[2])?["dryRun"] != nil, "\(answers[2])")
        #expect(answers[3] == #"{"id":3,"profiles":[]}"#)
        #expect(try errorStatus(answers[4]) == 404)
        #expect(answers[5] == #"{"id":5,"ok":true}"#)
        #expect((await connection.engine.statistics).contacts == 0)
    }

    @Test("auth with a write token lets identify through")
    func writeTokenCanWrite() async throws {
        let connection = try await Connection(access: AccessControl(tokens: Self.tokens))
        let answers = try await connection.exchange(
            #"{"op":"auth","token":"\#(TestTokens.write)"}"#, #"{"email":"a@x.io","id":1}"#
        )
        #expect(answers.count == 2)
        #expect(answers[0] == #"{"id":null,"ok":true}"#)
        #expect(answers[1].hasPrefix(#"{"id":1,"contact":{"primaryContactId":1,"#))
    }

    @Test("an unknown token, or an auth line without one, is a 401 and leaves the connection unauthenticated")
    func unknownToken() async throws {
        let connection = try await Connection(access: AccessControl(tokens: Self.tokens))
        let answers = try await connection.exchange(
            #"{"op":"auth","token":"not-a-known-token","id":1}"#, #"{"op":"ping","id":2}"#, #"{"op":"auth","id":3}"#
        )
        #expect(answers.count == 3)
        #expect(try errorStatus(answers[0]) == 401)
        #expect(try errorStatus(answers[1]) == 401)
        #expect(try errorStatus(answers[2]) == 401, "\(answers[2])")
        #expect(connection.channel.isActive)
    }

    @Test("five failed auth lines close the channel; four do not")
    func fiveFailedAuthsClose() async throws {
        let connection = try await Connection(access: AccessControl(tokens: Self.tokens))
        for attempt in 1...4 {
            let answers = try await connection.exchange(#"{"op":"auth","token":"wrong-token-\#(attempt)"}"#)
            #expect(try errorStatus(answers.first ?? "") == 401)
            #expect(connection.channel.isActive, "closed after \(attempt) failed attempts")
        }
        let answers = try await connection.exchange(#"{"op":"auth","token":"wrong-token-5"}"#, #"{"op":"ping","id":6}"#)
        #expect(answers.count == 1, "\(answers)")
        #expect(try errorStatus(answers.first ?? "") == 401)
        #expect(try errorDetail(answers.first ?? "")?.contains("closing") == true)
        #expect(!connection.channel.isActive)
    }

    @Test("without tokens, auth answers ok whatever the token")
    func authWithoutTokens() async throws {
        let connection = try await Connection()
        #expect(try await connection.exchange(#"{"op":"auth","token":"anything-at-all","id":1}"#) == [#"{"id":1,"ok":true}"#])
    }

    @Test("a reload that removes a token closes the connections authenticated with it, and no others")
    func reloadRemovingTokenCloses() async throws {
        let access = AccessControl(tokens: Self.tokens)
        let reader = try await Connection(access: access)
        let admin = try await Connection(access: access)
        #expect(try await reader.exchange(#"{"op":"auth","token":"\#(TestTokens.read)"}"#) == [#"{"id":null,"ok":true}"#])
        #expect(try await admin.exchange(#"{"op":"auth","token":"\#(TestTokens.admin)"}"#) == [#"{"id":null,"ok":true}"#])
        #expect(access.reload(try TokenTable(parsing: TestTokens.fileText([.admin]), path: "tokens")) == 1)
        try await reader.settle()
        #expect(!reader.channel.isActive)
        #expect(admin.channel.isActive)
        #expect(try await admin.exchange(#"{"op":"ping"}"#) == [#"{"id":null,"ok":true}"#])
    }
}

import Foundation
import Testing

/// What clients of other Bitespeed services and clients with a typo meet on a real server (SPEC.md
/// section 6): a trailing slash is routed, `--bitespeed-compat` adds `primaryContatctId` to identify
/// answers on both transports, and a typo in a query parameter or a member never writes.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ClientCompatibilityTests {
    static let doc = #"{"email":"doc@hillvalley.edu","phoneNumber":"123456"}"#

    @Test("POST /api/identify/ with a trailing slash is POST /api/identify on a real server")
    func trailingSlash() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let answer = try HTTPExchange.post(port: server.httpPort, path: "/api/identify/", json: Self.doc)
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.text == #"{"contact":{"primaryContactId":1,"emails":["doc@hillvalley.edu"],"#
            + #""phoneNumbers":["123456"],"secondaryContactIds":[]}}"#)
        let head = try HTTPExchange.send(port: server.httpPort, method: "HEAD", path: "/healthz/")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(server.stop() == 0)
    }

    @Test("--bitespeed-compat: identify answers carry primaryContatctId right after primaryContactId, on both transports")
    func bitespeedCompat() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--bitespeed-compat"])
        let http = try HTTPExchange.post(port: server.httpPort, path: "/identify", json: Self.doc)
        #expect(http.text.hasPrefix(#"{"contact":{"primaryContactId":1,"primaryContatctId":1,"emails":["#), "\(http.text)")
        let dryRun = try HTTPExchange.post(
            port: server.httpPort, path: "/identify?dryRun=true", json: #"{"email":"marty@hillvalley.edu","phoneNumber":"123456"}"#
        )
        #expect(dryRun.text.hasPrefix(#"{"contact":{"primaryContactId":1,"primaryContatctId":1,"#), "\(dryRun.text)")
        let line = try TestSocket(port: server.tcpPort)
        try line.send(#"{"id":1,"email":"marty@hillvalley.edu","phoneNumber":"123456"}"# + "\n")
        let answer = try #require(try line.readLine())
        #expect(answer.hasPrefix(#"{"id":1,"contact":{"primaryContactId":1,"primaryContatctId":1,"#), "\(answer)")
        // Only identify answers: a look-up keeps the contract's shape.
        let lookup = try HTTPExchange.get(port: server.httpPort, path: "/profiles?email=doc@hillvalley.edu")
        #expect(!lookup.text.contains("primaryContatctId"), "\(lookup.text)")
        #expect(server.stop() == 0)
    }

    @Test("without --bitespeed-compat no answer carries the misspelled key")
    func noCompatByDefault() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let http = try HTTPExchange.post(port: server.httpPort, path: "/identify", json: Self.doc)
        #expect(http.status == 200)
        #expect(!http.text.contains("primaryContatctId"))
        #expect(server.stop() == 0)
    }

    @Test("a typo never writes: ?dryrun=true over HTTP and \"dryrun\" or \"Email\" on a line are 400s, and no contact is created")
    func typoNeverWrites() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let http = try HTTPExchange.post(port: server.httpPort, path: "/identify?dryrun=true", json: Self.doc)
        #expect(http.status == 400)
        #expect((http.json["detail"] as? String) == #"unknown query parameter "dryrun"; this route takes: dryRun, minSeq"#)
        let line = try TestSocket(port: server.tcpPort)
        try line.send(#"{"id":1,"email":"doc@hillvalley.edu","dryrun":true}"# + "\n")
        let first = try #require(try line.readLine())
        #expect(first.contains(#""status":400"#) && first.contains(#"did you mean \"dryRun\""#), "\(first)")
        try line.send(#"{"id":2,"Email":"doc@hillvalley.edu"}"# + "\n")
        let second = try #require(try line.readLine())
        #expect(second.contains(#""status":400"#) && second.contains(#"did you mean \"email\""#), "\(second)")
        // An unknown member that is no near miss is still ignored.
        try line.send(#"{"id":3,"op":"ping","client":"shop-7"}"# + "\n")
        #expect(try line.readLine() == #"{"id":3,"ok":true}"#)
        let changes = try HTTPExchange.get(port: server.httpPort, path: "/changes")
        #expect(changes.json["latestSeq"] as? Int == 0, "a typo wrote: \(changes.text)")
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/contacts/1").status == 404)
        #expect(server.stop() == 0)
    }
}

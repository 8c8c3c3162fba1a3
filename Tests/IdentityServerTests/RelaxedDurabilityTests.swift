import Foundation
import Testing

/// `--durability relaxed` (SPEC.md sections 5 and 13). What it gives up, a machine crash or power
/// cut losing the last acknowledged changes, cannot be caused from a test; what it keeps can.
@Suite(.timeLimit(.minutes(5))) struct RelaxedDurabilityTests {
    @Test("relaxed durability says at start what it risks; the default says nothing of the kind")
    func warnsOfTheRisk() throws {
        let directory = TemporaryDirectory()
        let relaxed = try ServerProcess(dataDirectory: directory.store, arguments: ["--durability", "relaxed"])
        #expect(relaxed.stop() == 0)
        let warning = relaxed.log.split(separator: "\n").first { $0.contains("relaxed durability") }
        let line = try #require(warning, "no warning about relaxed durability at start")
        #expect(line.contains("warning"), "\(line)")
        #expect(line.contains("power cut") && line.contains("acknowledged"), "the warning does not say what is at risk: \(line)")

        let durable = try ServerProcess(dataDirectory: directory.store)
        #expect(durable.stop() == 0)
        #expect(!durable.log.contains("relaxed durability"))
    }

    @Test("under relaxed durability the feed shows each change once committed, on pages and streams, and kill -9 keeps them")
    func feedUnderRelaxedDurability() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--durability", "relaxed"])
        let stream = try EventStream(port: server.httpPort)
        for index in 1...5 {
            #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"r\#(index)@x.io","phoneNumber":"1"}"#).status == 200)
            // The answer left once the change was committed: the feed already shows it.
            let page = try HTTPExchange.get(port: server.httpPort, path: "/changes?after=\(index - 1)")
            #expect(page.json["latestSeq"] as? Int == index, "\(page.text)")
            #expect((page.json["changes"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int } == [index])
            #expect(try stream.nextEvent()?.id == index)
        }
        // A crash of the server process, not of the machine: committed changes are in the page cache.
        server.stop(signal: SIGKILL)
        let restarted = try ServerProcess(dataDirectory: directory.store, arguments: ["--durability", "relaxed"])
        let page = try HTTPExchange.get(port: restarted.httpPort, path: "/changes")
        #expect((page.json["changes"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int } == Array(1...5))
        #expect(try HTTPExchange.post(port: restarted.httpPort, json: #"{"email":"r6@x.io"}"#).status == 200)
        #expect(try HTTPExchange.get(port: restarted.httpPort, path: "/changes?after=5").json["latestSeq"] as? Int == 6)
        #expect(restarted.stop() == 0)
    }
}

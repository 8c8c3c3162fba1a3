import Foundation
import Testing

/// The index image through the real server: SIGTERM saves it and the next start loads it; `kill -9`
/// after a write leaves none, so the next start rebuilds and says why. The answers, `check` and the
/// export are the same across both.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RestartImageServerTests {
    /// Every contact's record and profile, as the server answers them.
    private func answers(_ server: ServerProcess, contacts: Int) throws -> [String] {
        var answers: [String] = []
        for id in 1...contacts {
            answers.append(try HTTPExchange.get(port: server.httpPort, path: "/contacts/\(id)").text)
            answers.append(try HTTPExchange.get(port: server.httpPort, path: "/profiles/\(id)").text)
        }
        return answers
    }

    private func checkAndExport(_ store: String) throws -> String {
        let check = try runIdentityGraph(["check", "--data-dir", store])
        #expect(check.status == 0, "\(check.output)")
        let export = try runIdentityGraph(["export", "--data-dir", store])
        #expect(export.status == 0)
        return export.output
    }

    @Test("SIGTERM saves the index and the next start loads it; kill -9 after a write makes the next start rebuild")
    func cleanStopThenKill() throws {
        let directory = TemporaryDirectory()
        let first = try ServerProcess(dataDirectory: directory.store)
        for index in 0..<60 {
            let body = #"{"email":"person\#(index % 23)@x.io","phoneNumber":"\#(index % 17)"}"#
            #expect(try HTTPExchange.post(port: first.httpPort, json: body).status == 200)
        }
        var contacts = 0
        while try HTTPExchange.get(port: first.httpPort, path: "/contacts/\(contacts + 1)").status == 200 { contacts += 1 }
        let before = try answers(first, contacts: contacts)
        #expect(first.stop() == 0)
        #expect(first.log.contains("saved the index for the next start"), "\(first.log)")
        let exported = try checkAndExport(directory.store)

        let second = try ServerProcess(dataDirectory: directory.store)
        // The log is read from a pipe: wait for the line rather than read what has arrived so far.
        #expect(second.waitForLog(containing: "loaded the index from its saved image"),
                "\(second.logSoFar)")
        #expect(try answers(second, contacts: contacts) == before)
        #expect(try checkAndExport(directory.store) == exported)
        let added = try HTTPExchange.post(port: second.httpPort, json: #"{"email":"later@x.io","phoneNumber":"99"}"#)
        #expect(added.status == 200)
        second.stop(signal: SIGKILL)

        let third = try ServerProcess(dataDirectory: directory.store)
        #expect(third.waitForLog(containing: "rebuilt the index from the store"), "\(third.logSoFar)")
        let log = third.logSoFar
        #expect(log.contains("no saved index") && !log.contains("loaded the index from the image"), "\(log)")
        #expect(try answers(third, contacts: contacts) == before)
        #expect(try HTTPExchange.get(port: third.httpPort, path: "/contacts/\(contacts + 1)").status == 200)
        #expect(third.stop() == 0)
        let afterKill = try checkAndExport(directory.store)
        // The new contact touched no other row: the export before is all there, and one line more.
        let lines = Set(afterKill.split(separator: "\n"))
        #expect(Set(exported.split(separator: "\n")).isSubset(of: lines))
        #expect(lines.count == Set(exported.split(separator: "\n")).count + 1)
    }
}

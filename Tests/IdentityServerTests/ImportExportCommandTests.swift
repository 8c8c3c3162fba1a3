import Foundation
import IdentityGraph
import Testing

/// `identity-graph import` and `export` as a user runs them (SPEC.md section 16): messages, exit
/// codes, and what an interrupted or killed import leaves behind.
@Suite(.timeLimit(.minutes(10))) struct ImportExportCommandTests {
    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Lines `{"email":"pI@x.io","phoneNumber":"I/2"}`: each creates exactly one contact, the odd ones
    /// a secondary of the even one before them, so that contact I+1 carries the values of line I.
    static func pairedLines(_ count: Int) -> [UInt8] {
        var text = ""
        text.reserveCapacity(count * 44)
        for index in 0..<count { text += #"{"email":"p\#(index)@x.io","phoneNumber":"\#(index / 2)"}"# + "\n" }
        return Array(text.utf8)
    }

    /// Checks that the store is valid and holds exactly the contacts of the first lines of
    /// ``pairedLines(_:)``; returns how many.
    static func expectPrefix(_ store: String) throws -> Int {
        let check = try runIdentityGraph(["check", "--data-dir", store])
        #expect(check.status == 0, "\(check.output)")
        let contacts = try StoredContacts.read(dataDirectory: store)
        for (index, contact) in contacts.enumerated() {
            guard contact.email == "p\(index)@x.io", contact.phoneNumber == "\(index / 2)",
                contact.linkedId == (index % 2 == 1 ? index : nil)
            else {
                Issue.record("contact \(contact.id) is not line \(index + 1) of the input: \(contact)")
                break
            }
        }
        return contacts.count
    }

    static func export(_ store: String) throws -> String {
        let result = try runIdentityGraph(["export", "--data-dir", store])
        #expect(result.status == 0)
        return result.output
    }

    @Test("a missing file fails with exit 1, naming it, before anything is written")
    func missingFile() throws {
        let directory = TemporaryDirectory()
        let good = directory.path + "/good.ndjson"
        try Self.write(Self.pairedLines(10), to: good)
        #expect(try runIdentityGraph(["import", "--data-dir", directory.store, good]).status == 0)
        let before = try Self.export(directory.store)
        let missing = directory.path + "/missing.ndjson"
        let result = try runIdentityGraph(["import", "--data-dir", directory.store, good, missing])
        #expect(result.status == 1)
        #expect(result.output.hasPrefix("identity-graph: \(missing): "), "\(result.output)")
        #expect(try Self.export(directory.store) == before)
        #expect(try Self.expectPrefix(directory.store) == 10)
    }

    @Test("a CSV file without an email or phoneNumber column is a usage error (exit 2) at its line 1; the store is unchanged")
    func csvWithoutColumns() throws {
        let directory = TemporaryDirectory()
        let good = directory.path + "/good.ndjson"
        try Self.write(Self.pairedLines(4), to: good)
        #expect(try runIdentityGraph(["import", "--data-dir", directory.store, good]).status == 0)
        let before = try Self.export(directory.store)
        let csv = directory.path + "/people.csv"
        try Self.write(Array("name,mail\nDoc,doc@x.io\n".utf8), to: csv)
        let result = try runIdentityGraph(["import", "--data-dir", directory.store, good, csv])
        // `mail` looks like an email column: the message names the flag that reads it.
        #expect(result.status == 2)
        #expect(result.output.contains("\(csv):1: ") && result.output.contains("--email-column"), "\(result.output)")
        #expect(try Self.export(directory.store) == before)
        #expect(try Self.expectPrefix(directory.store) == 4)
    }

    @Test("an invalid UTF-8 line is reported by file and line, without its values; --strict stops there with exit 1")
    func invalidUTF8() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/in.ndjson"
        let lines = Self.pairedLines(6)
        let cut = lines.indices.filter { lines[$0] == 0x0A }[3] + 1
        var bytes = Array(lines[..<cut])
        bytes += Array(#"{"email":"secret"#.utf8) + [0xFF] + Array(#"@x.io"}"#.utf8) + [0x0A]
        bytes += lines[cut...]
        try Self.write(bytes, to: file)
        let rejects = directory.path + "/rejects.ndjson"

        let strict = try runIdentityGraph(["import", "--data-dir", directory.store, "--strict", "--batch-size", "2", file])
        #expect(strict.status == 1)
        #expect(strict.output.contains("\(file):5: the line is not valid UTF-8"), "\(strict.output)")
        #expect(!strict.output.contains("secret"))
        #expect(try Self.expectPrefix(directory.store) == 4)

        let other = directory.path + "/other"
        let lenient = try runIdentityGraph(["import", "--data-dir", other, "--rejects", rejects, file])
        #expect(lenient.status == 0, "\(lenient.output)")
        #expect(lenient.output.contains("\(file):5: the line is not valid UTF-8"))
        #expect(lenient.output.contains("6 contacts created, 0 merged, 1 rejected"), "\(lenient.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: rejects))) as? [String: Any])
        #expect(report["file"] as? String == file && report["line"] as? Int == 5)
        #expect(try Self.expectPrefix(other) == 6)
    }

    @Test("a 10 MB line is skipped without being read whole, and reported by its line; the rest is imported")
    func hugeLine() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/in.ndjson"
        var bytes = Self.pairedLines(2)
        bytes += Array(#"{"email":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: 10_000_000) + Array(#"@x.io"}"#.utf8)
        bytes += [0x0A] + Array(#"{"email":"p2@x.io","phoneNumber":"1"}"#.utf8) + [0x0A]
        try Self.write(bytes, to: file)
        let result = try runIdentityGraph(["import", "--data-dir", directory.store, file])
        #expect(result.status == 0)
        #expect(result.output.contains("\(file):3: the line is longer than 1048576 bytes"), "\(result.output)")
        #expect(try Self.expectPrefix(directory.store) == 3)
        let strict = try runIdentityGraph(["import", "--data-dir", directory.path + "/strict", "--strict", file])
        #expect(strict.status == 1)
        #expect(try Self.expectPrefix(directory.path + "/strict") == 2)
    }

    @Test("usage errors exit 2: no file, an unknown format, a file whose format cannot be told")
    func usageErrors() throws {
        let directory = TemporaryDirectory()
        let text = directory.path + "/in.txt"
        try Self.write(Self.pairedLines(1), to: text)
        for arguments in [["import", "--data-dir", directory.store], ["import", "--data-dir", directory.store, "--format", "xml", text],
                          ["import", "--data-dir", directory.store, text], ["export", "--data-dir", directory.store, "--format", "xml"],
                          ["import", text]] {
            let result = try runIdentityGraph(arguments, environment: ["IDENTITY_GRAPH_DATA_DIR": ""])
            #expect(result.status == 2, "\(arguments): \(result.output)")
        }
        #expect(try runIdentityGraph(["import", "--data-dir", directory.store, "--format", "ndjson", text]).status == 0)
        #expect(try runIdentityGraph(["export", "--data-dir", directory.path + "/none"]).status == 1)
    }

    @Test("export of a live store: NDJSON to --out and CSV to stdout, while the server keeps serving")
    func exportLiveStore() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","phoneNumber":"1"}"#)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"b@x.io","phoneNumber":"2"}"#)
        _ = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","phoneNumber":"2"}"#)
        let out = directory.path + "/export.ndjson"
        let ndjson = try runIdentityGraph(["export", "--data-dir", directory.store, "--out", out])
        #expect(ndjson.status == 0, "\(ndjson.output)")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[2].hasPrefix(#"{"link":{"email":"a@x.io","phoneNumber":"2","at":""#))
        let csv = try runIdentityGraph(["export", "--data-dir", directory.store, "--format", "csv"])
        #expect(csv.output.split(separator: "\n").count == 3)
        #expect(csv.output.contains("\n2,b@x.io,2,1,secondary,"))
        #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"c@x.io"}"#).status == 200)
        server.stop()

        let copy = directory.path + "/copy"
        #expect(try runIdentityGraph(["import", "--data-dir", copy, out]).status == 0)
        let again = try runIdentityGraph(["export", "--data-dir", copy, "--format", "csv"])
        #expect(again.output.split(separator: "\n").count == 3)
    }

    @Test("kill -9 during an import leaves a valid store holding a prefix of the input, whole batches")
    func killedImportLeavesPrefix() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/in.ndjson"
        let total = 400_000
        try Self.write(Self.pairedLines(total), to: file)
        let process = Process()
        process.executableURL = ServerProcess.executable
        process.arguments = ["import", "--data-dir", directory.store, "--batch-size", "500", file]
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill it once something is committed: the first batch makes the store hold rows.
        let deadline = Date().addingTimeInterval(60)
        var seen = 0
        while process.isRunning, Date() < deadline {
            if FileManager.default.fileExists(atPath: directory.store + "/data.mdb"),
                let contacts = try? StoredContacts.read(dataDirectory: directory.store), contacts.count >= 2000
            {
                seen = contacts.count
                break
            }
            usleep(5000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the import finished before it could be killed")
        let count = try Self.expectPrefix(directory.store)
        #expect(count >= seen && count > 0 && count < total)
        #expect(count % 500 == 0, "\(count) contacts: not whole batches")
    }

    @Test("SIGINT stops an import at a record boundary, commits, prints the summary and exits 130")
    func interruptedImport() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/in.ndjson"
        let total = 400_000
        try Self.write(Self.pairedLines(total), to: file)
        let process = Process()
        process.executableURL = ServerProcess.executable
        process.arguments = ["import", "--data-dir", directory.store, "--batch-size", "500", file]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning, Date() < deadline {
            if FileManager.default.fileExists(atPath: directory.store + "/data.mdb"),
                let contacts = try? StoredContacts.read(dataDirectory: directory.store), contacts.count >= 1000
            {
                break
            }
            usleep(5000)
        }
        kill(process.processIdentifier, SIGINT)
        let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(output)")
        #expect(output.contains("interrupted"))
        let count = try Self.expectPrefix(directory.store)
        #expect(count > 0 && count < total)
        #expect(output.contains("imported \(count) records from 1 file(s)"), "\(output)")
    }
}

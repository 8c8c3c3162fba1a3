import Foundation
import IdentityGraph
import Testing

/// `identity-graph import` as a restore into an empty store, and its CSV columns, as a user runs it
/// (SPEC.md section 16); and its progress display on a terminal.
@Suite(.timeLimit(.minutes(5))) struct RestoreCommandTests {
    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runIdentityGraph(arguments)
    }

    /// A store of 6 contacts with a merge by a shared value, a merge by a link, a keep-apart rule and an
    /// erased contact; returns the profile answer of each live contact.
    static func buildStore(_ directory: String) async throws -> [Int: [UInt8]] {
        let engine = try IdentityEngine(dataDirectory: directory)
        for body in [
            #"{"email":"lorraine@hv.edu","phoneNumber":"555001"}"#, #"{"email":"marty@hv.edu","phoneNumber":"555002"}"#,
            #"{"email":"lorraine@hv.edu","phoneNumber":"555002"}"#, #"{"email":"doc@hv.edu","phoneNumber":"555003"}"#,
            #"{"email":"einstein@hv.edu","phoneNumber":"555003"}"#, #"{"email":"biff@hv.edu","phoneNumber":"555004"}"#,
            #"{"email":"george@hv.edu","phoneNumber":"555005"}"#, #"{"email":"biff@hv.edu","phoneNumber":"555005"}"#,
        ] {
            _ = try await engine.identify(IdentifyRequest(json: Array(body.utf8)))
        }
        _ = try await engine.unmerge(email: "biff@hv.edu", phoneNumber: "555005", keepApart: true)
        _ = try await engine.erase(.contact(4))
        var profiles: [Int: [UInt8]] = [:]
        for contact in try await engine.allContacts() where contact.deletedAt == nil {
            profiles[contact.id] = try await engine.profileResponseBody(containing: contact.id)
        }
        engine.close()
        return profiles
    }

    @Test("export, restore into an empty store, export: the same bytes; check passes; a server serves the same profiles")
    func roundTripOverCommandLine() async throws {
        let directory = TemporaryDirectory()
        let source = directory.path + "/source"
        let profiles = try await Self.buildStore(source)
        for format in ["ndjson", "csv"] {
            let file = directory.path + "/export.\(format)"
            let exported = try Self.run(["export", "--data-dir", source, "--format", format, "--out", file])
            #expect(exported.status == 0, "\(exported.output)")
            let target = directory.path + "/target-\(format)"
            let restored = try Self.run(["import", "--data-dir", target, file])
            #expect(restored.status == 0, "\(restored.output)")
            // NDJSON: 6 records, a link and a keep-apart rule; CSV: the records alone.
            #expect(restored.output.contains("restored \(format == "csv" ? 6 : 8) records from 1 file(s)"), "\(restored.output)")
            #expect(restored.output.contains("6 contacts kept with their ids and timestamps"), "\(restored.output)")
            let again = try Self.run(["export", "--data-dir", target, "--format", format])
            #expect(again.status == 0)
            #expect(again.output == (try String(contentsOfFile: file, encoding: .utf8)), "\(format)")
            let check = try Self.run(["check", "--data-dir", target])
            #expect(check.status == 0, "\(check.output)")
        }
        let server = try ServerProcess(dataDirectory: directory.path + "/target-ndjson")
        for (id, body) in profiles.sorted(by: { $0.key < $1.key }) {
            let answer = try HTTPExchange.get(port: server.httpPort, path: "/profiles/\(id)")
            #expect(answer.status == 200 && answer.body == body, "contact \(id): \(String(decoding: answer.body, as: UTF8.self))")
        }
        let changes = try HTTPExchange.get(port: server.httpPort, path: "/changes")
        let text = String(decoding: changes.body, as: UTF8.self)
        #expect(text.hasPrefix(#"{"changes":[{"seq":1,"at":""#) && text.contains(#""type":"restored","contacts":6}]"#), "\(text)")
        let created = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"new@hv.edu"}"#)
        #expect(String(decoding: created.body, as: UTF8.self).contains(#""primaryContactId":7"#))
        server.stop()
    }

    @Test("a Bitespeed Contact table in CSV, unsorted, restores with every id and primaryContactId kept")
    func bitespeedTable() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/Contact.csv"
        try Self.write("""
            id,phoneNumber,email,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            23,717171,biffsucks@hillvalley.edu,11,secondary,2023-04-21 05:30:00.11+00,2023-04-21 05:30:00.11+00,
            11,919191,george@hillvalley.edu,,primary,2023-04-11 00:00:00.374+00,2023-04-21 05:30:00.11+00,
            1,123456,lorraine@hillvalley.edu,,primary,2023-04-01 00:00:00.374+00,2023-04-01 00:00:00.374+00,
            12,123456,mcfly@hillvalley.edu,1,secondary,2023-04-20 05:30:00.11+00,2023-04-20 05:30:00.11+00,

            """, to: file)
        let result = try Self.run(["import", "--data-dir", directory.store, file])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("1 links (1 derived from the rows)"), "\(result.output)")
        let csv = try Self.run(["export", "--data-dir", directory.store, "--format", "csv"]).output
        let rows = csv.split(separator: "\n").map(String.init)
        #expect(rows.contains("1,lorraine@hillvalley.edu,123456,,primary,2023-04-01T00:00:00.374Z,2023-04-01T00:00:00.374Z,"))
        #expect(rows.contains("11,george@hillvalley.edu,919191,,primary,2023-04-11T00:00:00.374Z,2023-04-21T05:30:00.110Z,"))
        #expect(rows.contains("12,mcfly@hillvalley.edu,123456,1,secondary,2023-04-20T05:30:00.110Z,2023-04-20T05:30:00.110Z,"))
        #expect(rows.contains("23,biffsucks@hillvalley.edu,717171,11,secondary,2023-04-21T05:30:00.110Z,2023-04-21T05:30:00.110Z,"))
        #expect(rows.count == 1 + 23)
        let check = try Self.run(["check", "--data-dir", directory.store])
        #expect(check.status == 0, "\(check.output)")
    }

    @Test("a restore that breaks an invariant exits 1, names file and line but no value, and writes nothing")
    func violationExits1() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/chain.csv"
        let header = "id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt\n"
        try Self.write(header + """
            1,a@x.io,1,,primary,2023-01-01,2023-01-01,
            2,b@x.io,1,1,secondary,2023-01-02,2023-01-02,
            3,c@x.io,1,2,secondary,2023-01-03,2023-01-03,

            """, to: file)
        let result = try Self.run(["import", "--data-dir", directory.store, file])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("\(file):4: contact 3 links to contact 2, which is itself a secondary"), "\(result.output)")
        #expect(result.output.contains("nothing was written"), "\(result.output)")
        #expect(!result.output.contains("@x.io"))
        #expect(try StoredContacts.read(dataDirectory: directory.store).isEmpty)
        // The store is still empty, so the corrected file is a restore.
        try Self.write(header + "1,a@x.io,1,,primary,2023-01-01,2023-01-01,\n2,b@x.io,1,1,secondary,2023-01-02,2023-01-02,\n", to: file)
        let fixed = try Self.run(["import", "--data-dir", directory.store, file])
        #expect(fixed.status == 0 && fixed.output.contains("restored"), "\(fixed.output)")
    }

    @Test("an unsorted Contact dump into a store that is not empty exits 1, not 0")
    func unsortedDumpIntoNonEmptyStore() throws {
        let directory = TemporaryDirectory()
        let first = directory.path + "/first.ndjson"
        try Self.write(#"{"email":"seed@x.io"}"# + "\n", to: first)
        #expect(try Self.run(["import", "--data-dir", directory.store, first]).status == 0)
        let file = directory.path + "/dump.csv"
        try Self.write("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            2,b@x.io,1,1,secondary,2023-01-02,2023-01-02,
            1,a@x.io,1,,primary,2023-01-01,2023-01-01,

            """, to: file)
        let result = try Self.run(["import", "--data-dir", directory.store, file])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("\(file):3: Contact record 1 comes after 2"), "\(result.output)")
        #expect(result.output.contains("must be sorted by id"), "\(result.output)")
    }

    @Test("a CSV column that looks like the phone number is a usage error naming --phone-column; unused columns are listed")
    func nearMissColumn() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/people.csv"
        try Self.write("name,email,Phone_Number\nDoc,doc@x.io,555003\n", to: file)
        let refused = try Self.run(["import", "--data-dir", directory.store, file])
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("--phone-column"), "\(refused.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.store + "/data.mdb"))
        let chosen = try Self.run(["import", "--data-dir", directory.store, "--phone-column", "Phone_Number", file])
        #expect(chosen.status == 0, "\(chosen.output)")
        #expect(chosen.output.contains("\(file): columns not used: \"name\""), "\(chosen.output)")
        #expect(try StoredContacts.read(dataDirectory: directory.store).map(\.phoneNumber) == ["555003"])
        let neither = directory.path + "/other.csv"
        try Self.write("name,city\nx,y\n", to: neither)
        let none = try Self.run(["import", "--data-dir", directory.store, neither])
        #expect(none.status == 2 && none.output.contains(#""name", "city""#), "\(none.output)")
    }

    /// Runs `arguments` with stdin, stdout and stderr on a pseudo-terminal (Python's `pty`), within a
    /// deadline; returns the exit status and everything the terminal showed.
    static func runOnTerminal(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let script = """
            import os, pty, select, subprocess, sys, time
            master, slave = pty.openpty()
            child = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
            os.close(slave)
            output, deadline = b"", time.monotonic() + 120
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    child.kill()
                    sys.stderr.write("the command did not finish within 120 s on the terminal\\n")
                    sys.exit(124)
                ready, _, _ = select.select([master], [], [], left)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            sys.stdout.buffer.write(output)
            sys.exit(child.wait(timeout=60))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, ServerProcess.executable.path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test("import shows progress on a terminal (records, records/s, percent read, time left), and not otherwise")
    func progressOnTerminal() throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/in.ndjson"
        try Self.write((0..<6000).map { #"{"email":"p\#($0)@x.io"}"# }.joined(separator: "\n"), to: file)
        let terminal = try Self.runOnTerminal(["import", "--data-dir", directory.path + "/a", file])
        #expect(terminal.status == 0, "\(terminal.output)")
        let progress = try #require(terminal.output.firstMatch(of: #/\r(\d+) records, (\d+) records/s, ([0-9.]+)% read, \d+:\d\d left/#))
        #expect(Int(progress.output.1)! >= 1024)
        #expect(terminal.output.contains("imported 6000 records"), "\(terminal.output)")

        let piped = try runIdentityGraph(["import", "--data-dir", directory.path + "/b", file])
        #expect(piped.status == 0)
        #expect(piped.output.contains("imported 6000 records"))
        #expect(!piped.output.contains("% read") && !piped.output.contains("\u{1B}"), "\(piped.output)")
    }
}

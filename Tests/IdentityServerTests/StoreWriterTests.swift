import Foundation
import Testing

/// One writer per store (SPEC.md section 8): `serve` and `import` lock the data directory; readers
/// run beside them; the shutdown line never claims a flush that failed.
@Suite(.timeLimit(.minutes(5))) struct StoreWriterTests {
    /// How long a refused second writer may take: it must not wait for the lock, only start and stop.
    static let refusalTimeout: Double = 60

    @Test("a second serve on a served store exits 1 at once, naming the store and the holder's pid; the first goes on writing")
    func secondServeIsRefused() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"first@x.io"}"#).status == 200)

        let second = try runIdentityGraph(
            ["serve", "--data-dir", directory.store, "--http-port", "0", "--tcp-port", "0"], timeout: Self.refusalTimeout
        )
        #expect(second.status == 1, "\(second.output)")
        let lines = second.output.split(separator: "\n")
        #expect(lines.count == 1, "\(second.output)")
        #expect(second.output.contains(directory.store), "\(second.output)")
        #expect(second.output.contains("process \(server.process.processIdentifier)"), "\(second.output)")

        // The first server's writes still succeed: new contacts get new ids.
        let answer = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"second@x.io"}"#)
        #expect(answer.status == 200, "\(answer.text)")
        #expect((answer.json["contact"] as? [String: Any])?["primaryContactId"] as? Int == 2)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/healthz").status == 200)
        #expect(server.stop() == 0)
        #expect(server.log.contains("stopped; store flushed"))
    }

    @Test("import on a served store exits 1 and writes nothing; snapshot, check and export run beside the server")
    func importIsRefusedReadersAreNot() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","phoneNumber":"1"}"#).status == 200)
        let input = directory.path + "/live.ndjson"
        try #"{"email":"b@x.io","phoneNumber":"2"}"#.appending("\n").write(toFile: input, atomically: true, encoding: .utf8)

        let refused = try runIdentityGraph(["import", "--data-dir", directory.store, input], timeout: Self.refusalTimeout)
        #expect(refused.status == 1, "\(refused.output)")
        #expect(refused.output.contains(directory.store) && refused.output.contains("\(server.process.processIdentifier)"),
                "\(refused.output)")

        let check = try runIdentityGraph(["check", "--data-dir", directory.store])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("1 contacts"), "the refused import wrote: \(check.output)")
        let export = try runIdentityGraph(["export", "--data-dir", directory.store])
        #expect(export.status == 0, "\(export.output)")
        let snapshot = try runIdentityGraph(["snapshot", "--data-dir", directory.store, "--out", directory.path + "/copy"])
        #expect(snapshot.status == 0, "\(snapshot.output)")

        let after = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"c@x.io","phoneNumber":"3"}"#)
        #expect(after.status == 200, "\(after.text)")
        #expect((after.json["contact"] as? [String: Any])?["primaryContactId"] as? Int == 2)
        #expect(server.stop() == 0)

        // Once the server is gone, the store is free for an import.
        let imported = try runIdentityGraph(["import", "--data-dir", directory.store, input])
        #expect(imported.status == 0, "\(imported.output)")
    }

    @Test("a serve refused by a running import exits 1; the import completes")
    func serveIsRefusedDuringImport() throws {
        let directory = TemporaryDirectory()
        let input = directory.path + "/input.ndjson"
        let records = 200_000
        var text = ""
        for index in 0..<records { text += #"{"email":"p\#(index)@x.io","phoneNumber":"\#(index)"}"# + "\n" }
        try text.write(toFile: input, atomically: true, encoding: .utf8)
        let importer = Process()
        importer.executableURL = ServerProcess.executable
        importer.arguments = ["import", "--data-dir", directory.store, input]
        let output = PipeCollector()
        importer.standardOutput = output.pipe
        importer.standardError = output.pipe
        let exited = ExitSignal(importer)
        try importer.run()
        output.start()
        // The lock file names the importer once it holds the lock; stopped there, it keeps holding it
        // for as long as the test needs.
        let lockFile = directory.store + "/writer.lock"
        let locked = waitUntil(seconds: 60) {
            (try? String(contentsOfFile: lockFile, encoding: .utf8))?.contains("\(importer.processIdentifier)") == true
        }
        kill(importer.processIdentifier, SIGSTOP)
        try #require(locked, "the import never took the lock: \(output.text)")
        try #require(
            (try? String(contentsOfFile: lockFile, encoding: .utf8))?.contains("\(importer.processIdentifier)") == true,
            "the import finished before it could be stopped; give it more records"
        )

        let serve = try runIdentityGraph(
            ["serve", "--data-dir", directory.store, "--http-port", "0", "--tcp-port", "0"], timeout: Self.refusalTimeout
        )
        kill(importer.processIdentifier, SIGCONT)
        #expect(serve.status == 1, "\(serve.output)")
        #expect(serve.output.contains("process \(importer.processIdentifier)"), "\(serve.output)")

        #expect(exited.wait(seconds: 300), "the import did not finish")
        #expect(importer.terminationStatus == 0, "\(output.text)")
        #expect(output.text.contains("imported \(records) records"), "\(output.text)")
    }

    /// The store on a 2 MiB tmpfs in a mount namespace of its own, as `StorageFaultTests` does, so
    /// that the disk can be filled without privileges.
    @Test("stopped while the disk is full, the server says the store was not flushed instead of 'store flushed'")
    func shutdownWithFailedFlush() throws {
        let directory = TemporaryDirectory()
        let (server, inside) = try SmallDisk.server(under: directory.path)
        let filler = inside + "/filler"
        try SmallDisk.fill(filler)

        var status = 200
        for index in 0..<20_000 where status == 200 {
            status = try HTTPExchange.post(
                port: server.httpPort, json: #"{"email":"filling.the.disk.\#(index)@example.org","phoneNumber":"\#(index)"}"#
            ).status
        }
        #expect(status == 503, "the disk never filled")
        #expect(server.stop() == 0)
        let log = server.log
        #expect(!log.contains("store flushed"), "\(log)")
        #expect(log.contains("stopped; the store was not flushed"), "\(log)")
    }
}

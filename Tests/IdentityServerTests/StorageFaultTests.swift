import Foundation
import Testing
@testable import IdentityGraph

/// The store running out of room while the server runs.
@Suite(.serialized, .timeLimit(.minutes(5))) struct StorageFaultTests {
    @Test("the memory map fills while the server runs: it grows and the server carries on")
    func mapFillsWhileServing() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store, arguments: ["--initial-map-bytes", "65536"])
        let socket = try TestSocket(port: server.tcpPort)
        var batch = ""
        for index in 0..<3000 {
            batch += #"{"email":"a.rather.long.address.number.\#(index)@example.org","phoneNumber":"\#(index)","id":\#(index)}"# + "\n"
        }
        try socket.send(batch)
        for index in 0..<3000 {
            let reply = try #require(try lineJSON(socket.readLine()))
            #expect(reply["id"] as? Int == index)
            #expect(reply["contact"] != nil, "\(reply)")
        }
        #expect(server.stop() == 0)
        let rows = try StoredContacts.read(dataDirectory: directory.store)
        #expect(rows.count == 3000)
        let size = try FileManager.default.attributesOfItem(atPath: directory.store + "/data.mdb")[.size] as? Int ?? 0
        #expect(size > 65536 * 4, "the store should have outgrown its first map several times")
    }

    /// Runs the server in its own mount namespace on a 2 MiB tmpfs, so the disk can fill up
    /// without privileges or any effect outside the test. The test reaches the tmpfs through
    /// `/proc/PID/root`.
    ///
    /// It needs unprivileged user namespaces (`unshare --mount --map-root-user`, util-linux): Linux
    /// with `user.max_user_namespaces` above 0, and on Debian and Ubuntu kernels
    /// `kernel.unprivileged_userns_clone=1` (and on Ubuntu 24.04 and later,
    /// `kernel.apparmor_restrict_unprivileged_userns=0`). Containers often forbid them (Docker's
    /// default seccomp profile does); run as root there, or with `--security-opt seccomp=unconfined`.
    /// Without them the test fails, saying so.
    @Test("a full disk fails writes with 503 and a log line, loses nothing acknowledged, and recovers")
    func diskFull() throws {
        let probe = try runProcess(URL(fileURLWithPath: "/usr/bin/unshare"), ["--mount", "--map-root-user", "true"], timeout: 60)
        try #require(
            probe.status == 0,
            """
            this test needs unprivileged user namespaces (`unshare --mount --map-root-user`), which this machine \
            refuses: \(probe.output.trimmingCharacters(in: .whitespacesAndNewlines)). See the comment above \
            StorageFaultTests.diskFull for the settings that allow them.
            """
        )
        let directory = TemporaryDirectory()
        let (server, inside) = try SmallDisk.server(under: directory.path)

        // Leave the store a little room, then fill the rest of the disk.
        let filler = inside + "/filler"
        try SmallDisk.fill(filler)
        try FileManager.default.removeItem(atPath: filler)
        #expect(FileManager.default.createFile(atPath: filler, contents: nil))
        let chunk = Data(count: 16 * 1024)
        let refill = try #require(FileHandle(forWritingAtPath: filler))
        var room = 0
        let freeSpace = try FileManager.default.attributesOfFileSystem(forPath: inside)[.systemFreeSize] as? Int ?? 0
        while room < freeSpace - 256 * 1024, (try? refill.write(contentsOf: chunk)) != nil { room += chunk.count }
        try refill.close()

        var acknowledged: [(body: String, contact: [String: Any])] = []
        var unavailable: HTTPExchange?
        for index in 0..<20_000 where unavailable == nil {
            let body = #"{"email":"filling.the.disk.with.person.\#(index)@example.org","phoneNumber":"\#(index)"}"#
            let answer = try HTTPExchange.post(port: server.httpPort, json: body)
            if answer.status == 200 {
                acknowledged.append((body, answer.json["contact"] as? [String: Any] ?? [:]))
            } else {
                unavailable = answer
            }
        }
        let refusal = try #require(unavailable, "the disk never filled")
        #expect(refusal.status == 503)
        #expect(refusal.headers["content-type"] == "application/problem+json")
        #expect(!acknowledged.isEmpty)
        // Committed data is still served while writes fail.
        let first = try #require(acknowledged.first)
        #expect(try HTTPExchange.post(port: server.httpPort, json: first.body).status == 200)
        // Health says the store refuses changes, so that a load balancer can send writes elsewhere.
        let degraded = try HTTPExchange.get(port: server.httpPort, path: "/healthz")
        #expect(degraded.status == 503 && degraded.json["status"] as? String == "degraded", "\(degraded.text)")

        // Give the space back: the retry commits and changes are accepted again.
        try FileManager.default.removeItem(atPath: filler)
        // The retry runs on the server's back-off; the log says when it has committed.
        #expect(server.waitForLog(containing: "store writes succeed again", seconds: 60), "no recovery within 60 s")
        #expect(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"after@x.io"}"#).status == 200)
        #expect(try HTTPExchange.get(port: server.httpPort, path: "/healthz").status == 200)
        for (body, contact) in acknowledged {
            let now = try HTTPExchange.post(port: server.httpPort, json: body).json["contact"] as? [String: Any]
            #expect(now?["primaryContactId"] as? Int == contact["primaryContactId"] as? Int)
        }
        let check = try runIdentityGraph(["check", "--data-dir", inside + "/store"])
        #expect(check.status == 0, "\(check.output)")
        #expect(server.stop() == 0)
        let log = server.log
        #expect(log.contains("store write failed"))
        #expect(log.contains("store writes succeed again"))
    }
}

/// A server whose store is on a 2 MiB tmpfs, mounted in a mount namespace of its own so that no
/// privilege is needed (`unshare --mount --map-root-user`), to fill its disk.
enum SmallDisk {
    /// The server, and the disk's directory as this process sees it (through `/proc/PID/root`).
    static func server(under directory: String) throws -> (ServerProcess, inside: String) {
        let mount = directory + "/small-disk"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let server = try ServerProcess(dataDirectory: mount + "/store") { executable, arguments in
            (URL(fileURLWithPath: "/usr/bin/unshare"),
             ["--mount", "--map-root-user", "/bin/sh", "-c", #"mount -t tmpfs -o size=2m tmpfs "$0" && exec "$@""#,
              mount, executable.path] + arguments)
        }
        return (server, "/proc/\(server.process.processIdentifier)/root" + mount)
    }

    /// Writes the file at `path` until the disk is full.
    static func fill(_ path: String) throws {
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        let chunk = Data(count: 16 * 1024)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try handle.close()
    }
}

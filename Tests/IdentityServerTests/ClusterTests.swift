import ConformanceSupport
import Foundation
import Testing

/// Cluster mode (SPEC.md section 17) with real processes: servers on loopback sharing a throwaway
/// PostgreSQL (``PostgresServer``). Elections, the fenced log, followers, failover under load with
/// `kill -9`, `SIGSTOP` past the lease and a PostgreSQL restart, and the refusals at start.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ClusterTests {
    /// Seconds a lease lasts in these tests: short, so that failovers are quick.
    static let ttl = 2

    /// One server of a test cluster.
    final class Node: @unchecked Sendable {
        // `@unchecked`: `current` is read by the load's threads and replaced by a restart, always with
        // `lock` held.
        let name: String
        let directory: String
        private let lock = NSLock()
        private var current: ServerProcess

        var server: ServerProcess { lock.withLock { current } }

        init(name: String, directory: String, url: String, extra: [String] = []) throws {
            self.name = name
            self.directory = directory
            current = try ServerProcess(dataDirectory: directory, arguments: Self.arguments(name, url) + extra)
        }

        /// `serve` on `data` as cluster node `name`, on ports the kernel picks.
        static func serve(data: String, name: String, url: String) -> [String] {
            ["serve", "--data-dir", data, "--http-port", "0", "--tcp-port", "0"] + arguments(name, url)
        }

        static func arguments(_ name: String, _ url: String) -> [String] {
            ["--cluster", url, "--node-name", name, "--lease-ttl", "\(ClusterTests.ttl)"]
        }

        func restart(url: String) throws {
            let started = try ServerProcess(dataDirectory: directory, arguments: Self.arguments(name, url))
            lock.withLock { current = started }
        }

        func status() -> [String: Any]? {
            guard let answer = try? HTTPExchange.get(port: server.httpPort, path: "/cluster"), answer.status == 200
            else { return nil }
            return answer.json
        }

        var role: String? { status()?["role"] as? String }
        var appliedSeq: Int? { status()?["appliedSeq"] as? Int }
    }

    /// Waits until exactly one of `nodes` leads and returns it.
    static func leader(of nodes: [Node], seconds: Double = 30, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> Node
    {
        var found: Node?
        _ = waitUntil(seconds: seconds) {
            let leaders = nodes.filter { $0.role == "leader" }
            found = leaders.count == 1 ? leaders[0] : nil
            return found != nil
        }
        return try #require(found, "no single leader within \(seconds) s", sourceLocation: sourceLocation)
    }

    /// Waits until every node has applied the same newest seq as the others, and returns it.
    static func caughtUp(_ nodes: [Node], seconds: Double = 30, sourceLocation: SourceLocation = #_sourceLocation)
        -> Bool
    {
        waitUntil(seconds: seconds) {
            let seqs = nodes.map(\.appliedSeq)
            return seqs.allSatisfy { $0 != nil && $0 == seqs[0] }
        }
    }

    /// The warning and error lines of a server's log, for a failure message.
    static func problems(_ log: String) -> String {
        log.split(separator: "\n").filter { $0.contains(" warning ") || $0.contains(" error ") }.suffix(8)
            .joined(separator: "\n")
    }

    static func identify(_ node: Node, _ body: String) throws -> HTTPExchange {
        try HTTPExchange.post(port: node.server.httpPort, path: "/identify", json: body)
    }

    @Test("three servers elect one leader; its changes reach every follower; a follower refuses changes with 503 and Retry-After")
    func electionAndReplication() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let nodes = try (1...3).map { try Node(name: "n\($0)", directory: directory.path + "/n\($0)", url: postgres.url()) }
        let leader = try Self.leader(of: nodes)
        let status = try #require(leader.status())
        #expect(status["epoch"] as? Int == 1)
        #expect((status["leader"] as? [String: Any])?["node"] as? String == leader.name)

        let first = try Self.identify(leader, #"{"email":"lorraine@hillvalley.edu","phoneNumber":"123456"}"#)
        #expect(first.status == 200, "\(first.text)")
        let second = try Self.identify(leader, #"{"email":"mcfly@hillvalley.edu","phoneNumber":"123456"}"#)
        #expect(second.status == 200)
        let erased = try HTTPExchange.post(port: leader.server.httpPort, path: "/erase", json: #"{"email":"nobody@x.io"}"#)
        #expect(erased.status == 200)
        #expect(Self.caughtUp(nodes), "the followers did not apply the log")
        for node in nodes where node !== leader {
            #expect(node.role == "follower")
            let profile = try HTTPExchange.get(port: node.server.httpPort, path: "/profiles/2")
            #expect(profile.text == second.text, "\(node.name) answers \(profile.text)")
            let health = try HTTPExchange.get(port: node.server.httpPort, path: "/healthz")
            #expect(health.status == 200)
            #expect(health.json["role"] as? String == "follower")
            let refused = try Self.identify(node, #"{"email":"doc@hillvalley.edu"}"#)
            #expect(refused.status == 503, "\(refused.text)")
            #expect(refused.headers["retry-after"] == "1")
            let line = try TestSocket(port: node.server.tcpPort)
            try line.send(#"{"id":1,"email":"doc@hillvalley.edu"}"# + "\n")
            let answer = try #require(try line.readLine())
            #expect(answer.contains(#""status":503"#) && answer.contains(#""retryAfter":1"#), "\(answer)")
            // Reads go on, on both transports.
            try line.send(#"{"id":2,"op":"get","contactId":1}"# + "\n")
            #expect(try line.readLine()?.contains(#""record":{"id":1"#) == true)
        }
        let changes = nodes.map { (try? HTTPExchange.get(port: $0.server.httpPort, path: "/changes"))?.text }
        #expect(Set(changes).count == 1, "the change feeds differ: \(changes)")
        for node in nodes { #expect(node.server.stop() == 0) }
    }

    /// Acknowledged identify requests of a load, by email.
    final class Acknowledged: @unchecked Sendable {
        // `@unchecked`: `emails` is touched only with `lock` held.
        private let lock = NSLock()
        private var emails: [String] = []
        private var by: [String: String] = [:]
        func add(_ email: String, by node: String, answer: String = "") {
            lock.withLock {
                emails.append(email)
                by[email] = "\(node) at \(Date().timeIntervalSince1970): \(answer)"
            }
        }
        var all: [String] { lock.withLock { emails } }
        func who(_ email: String) -> String { lock.withLock { by[email] ?? "?" } }
    }

    final class Flag: @unchecked Sendable {
        // `@unchecked`: `value` is touched only with `lock` held.
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    @Test("kill -9 of the leader, SIGSTOP of the next past its lease, a PostgreSQL restart: nothing acknowledged is lost")
    func failoverUnderLoad() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        let nodes = try (1...3).map { try Node(name: "n\($0)", directory: directory.path + "/n\($0)", url: url) }
        _ = try Self.leader(of: nodes)

        let acknowledged = Acknowledged()
        let stopping = Flag()
        let clients = 4
        let done = DispatchGroup()
        for client in 0..<clients {
            done.enter()
            Thread {
                defer { done.leave() }
                var generator = SeededGenerator(seed: 0x0C1A_5717, part: client)
                var count = 0
                while !stopping.isSet {
                    count += 1
                    let email = "c\(client)-\(count)@x.io"
                    let phone = "\(Int.random(in: 0..<50, using: &generator))"
                    var attempts = ""
                    for node in nodes.shuffled(using: &generator) {
                        let started = Date().timeIntervalSince1970
                        guard let answer = try? Self.identify(node, #"{"email":"\#(email)","phoneNumber":"\#(phone)"}"#)
                        else { attempts += "[\(node.name) \(started) threw]"; continue }
                        attempts += "[\(node.name) \(started) \(answer.status) \(answer.text.prefix(120))]"
                        if answer.status == 200 {
                            acknowledged.add(email, by: node.name, answer: attempts)
                            break
                        }
                    }
                    usleep(2000)
                }
            }.start()
        }

        Thread.sleep(forTimeInterval: 1.5)
        let first = try Self.leader(of: nodes)
        _ = first.server.stop(signal: SIGKILL)
        let second = try Self.leader(of: nodes.filter { $0 !== first })
        Thread.sleep(forTimeInterval: 1)
        // Paused past its lease: the others elect a third; when it runs again its pending batch is refused.
        kill(second.server.process.processIdentifier, SIGSTOP)
        let third = try Self.leader(of: nodes.filter { $0 !== first && $0 !== second })
        kill(second.server.process.processIdentifier, SIGCONT)
        #expect(waitUntil(seconds: 30) { second.role == "follower" }, "the paused leader did not rejoin as a follower")
        try first.restart(url: url)
        Thread.sleep(forTimeInterval: 1)
        try postgres.stop()
        Thread.sleep(forTimeInterval: 1)
        try postgres.start()
        Thread.sleep(forTimeInterval: 2)
        stopping.set()
        done.wait()

        let leader = try Self.leader(of: nodes)
        #expect(leader === third || leader.role == "leader")
        let emails = acknowledged.all
        #expect(emails.count > 50, "the load was acknowledged only \(emails.count) times")
        #expect(
            Self.caughtUp(nodes),
            "the servers did not catch up: \(nodes.map(\.appliedSeq)); \(nodes.map { Self.problems($0.server.logSoFar) })"
        )
        for node in nodes {
            var missing: [String] = []
            for email in emails {
                let answer = try HTTPExchange.get(port: node.server.httpPort, path: "/profiles?email=\(email)")
                let profiles = answer.json["profiles"] as? [[String: Any]] ?? []
                if !profiles.contains(where: { ($0["emails"] as? [String])?.contains(email) == true }) {
                    missing.append(email)
                }
            }
            #expect(
                missing.isEmpty,
                "\(node.name) lost \(missing.count) acknowledged changes: \(missing.prefix(5).map { "\($0) by \(acknowledged.who($0))" })"
            )
        }
        let feeds = nodes.map { (try? HTTPExchange.get(port: $0.server.httpPort, path: "/changes?limit=10000"))?.text }
        #expect(Set(feeds).count == 1, "the change feeds differ")
        for node in nodes { #expect(node.server.stop() == 0) }
        var exports: [String] = []
        for node in nodes {
            let check = try runIdentityGraph(["check", "--data-dir", node.directory])
            #expect(check.status == 0, "\(node.name): \(check.output)")
            exports.append(try runIdentityGraph(["export", "--data-dir", node.directory]).output)
        }
        #expect(Set(exports).count == 1, "the exports differ")
        // The log is never rewritten: no batch of an older epoch follows one of a newer epoch.
        let epochs = try postgres.sql("SELECT epoch FROM identity_graph.log ORDER BY position")
            .split(separator: "\n").compactMap { Int($0) }
        #expect(epochs == epochs.sorted(), "an older epoch's batch follows a newer one")
        #expect(Set(epochs).count >= 3, "the log was written under \(Set(epochs).count) epochs")
    }

    @Test("a restarted follower with a stale copy and a new server with an empty data directory catch up")
    func joining() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        let nodes = try (1...2).map { try Node(name: "n\($0)", directory: directory.path + "/n\($0)", url: url) }
        let leader = try Self.leader(of: nodes)
        let follower = nodes.first { $0 !== leader }!
        #expect(follower.server.stop() == 0)
        for index in 0..<50 {
            #expect(try Self.identify(leader, #"{"email":"j\#(index)@x.io","phoneNumber":"\#(index % 7)"}"#).status == 200)
        }
        try follower.restart(url: url)
        let newcomer = try Node(name: "n3", directory: directory.path + "/n3", url: url)
        let all = nodes + [newcomer]
        #expect(Self.caughtUp(all), "the servers did not catch up: \(all.map(\.appliedSeq))")
        let feeds = all.map { (try? HTTPExchange.get(port: $0.server.httpPort, path: "/changes"))?.text }
        #expect(Set(feeds).count == 1)
        for node in all { #expect(node.server.stop() == 0) }
    }

    @Test("refused at start with exit 2: a live server's node name, a wrong password, a schema of another format")
    func refusals() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        let first = try Node(name: "same", directory: directory.path + "/a", url: url)
        _ = try Self.leader(of: [first])
        let twin = try runIdentityGraph(
            Node.serve(data: directory.path + "/b", name: "same", url: url),
            timeout: 60
        )
        #expect(twin.status == 2, "\(twin.output)")
        #expect(twin.output.contains("another live server is named same"), "\(twin.output)")
        #expect(first.role == "leader", "the first server was disturbed")

        let wrong = try runIdentityGraph(
            Node.serve(data: directory.path + "/c", name: "c", url: postgres.url(password: "wrong")),
            timeout: 60
        )
        #expect(wrong.status == 2, "\(wrong.output)")
        #expect(wrong.output.contains("password authentication failed"), "\(wrong.output)")
        #expect(!wrong.output.contains("wrong"), "the password appears in the message")
        #expect(first.server.stop() == 0)

        try postgres.sql("UPDATE identity_graph.meta SET value = '99' WHERE key = 'format'")
        let other = try runIdentityGraph(
            Node.serve(data: directory.path + "/d", name: "d", url: url),
            timeout: 60
        )
        #expect(other.status == 2, "\(other.output)")
        #expect(other.output.contains("format 99"), "\(other.output)")
    }

    @Test("a database that cannot be reached at start is retried and logged; the server answers 503 until it has caught up")
    func unreachableAtStart() throws {
        let postgres = try PostgresServer()
        try postgres.stop()
        let directory = TemporaryDirectory()
        let process = Process()
        process.executableURL = ServerProcess.executable
        process.arguments = Node.serve(data: directory.path + "/n", name: "n", url: postgres.url())
        let log = PipeCollector()
        process.standardError = log.pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        log.start()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        #expect(waitUntil(seconds: 30) { log.text.contains("cannot reach the cluster database") }, "\(log.text)")
        // Listening meanwhile, and saying it is not ready.
        #expect(waitUntil(seconds: 30) { log.text.contains("listening on") }, "\(log.text)")
        #expect(!log.text.contains(postgres.password), "the password appears in the log")
        try postgres.start()
        #expect(waitUntil(seconds: 30) { log.text.contains("leading") }, "\(log.text)")
    }
}

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

        /// Sent with every look at the node's status, when it runs with `--auth-tokens`.
        let token: String?
        /// Variables the server runs with, restarts included.
        let environment: [String: String]

        init(
            name: String, directory: String, url: String, extra: [String] = [], token: String? = nil,
            environment: [String: String] = [:]
        ) throws {
            self.name = name
            self.directory = directory
            self.token = token
            self.environment = environment
            current = try ServerProcess(
                dataDirectory: directory, arguments: Self.arguments(name, url) + extra, environment: environment
            )
        }

        /// `serve` on `data` as cluster node `name`, on ports the kernel picks.
        static func serve(data: String, name: String, url: String) -> [String] {
            ["serve", "--data-dir", data, "--http-port", "0", "--tcp-port", "0"] + arguments(name, url)
        }

        static func arguments(_ name: String, _ url: String) -> [String] {
            ["--cluster", url, "--node-name", name, "--lease-ttl", "\(ClusterTests.ttl)"]
        }

        func restart(url: String) throws {
            let started = try ServerProcess(
                dataDirectory: directory, arguments: Self.arguments(name, url), environment: environment
            )
            lock.withLock { current = started }
        }

        func status() -> [String: Any]? {
            let headers = token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
            guard let answer = try? HTTPExchange.send(port: server.httpPort, method: "GET", path: "/cluster", headers: headers),
                answer.status == 200
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

    /// Whether, within `seconds`, every node has applied the newest change any of them acknowledged.
    static func caughtUp(_ nodes: [Node], seconds: Double = 30, sourceLocation: SourceLocation = #_sourceLocation)
        -> Bool
    {
        // The newest change any of them acknowledged: local copies, which `appliedSeq` counts, trail the
        // log by a commit, so equal applied seqs alone could be an older point they all still share.
        let acknowledged = nodes.compactMap { node in
            (try? HTTPExchange.get(port: node.server.httpPort, path: "/cluster"))?.headers["identity-graph-seq"]
                .flatMap { Int($0) }
        }.max() ?? 0
        return waitUntil(seconds: seconds) {
            let seqs = nodes.map(\.appliedSeq)
            return seqs.allSatisfy { $0 != nil && $0 == seqs[0] && $0! >= acknowledged }
        }
    }

    /// The warning and error lines of a server's log, for a failure message.
    static func problems(_ log: String) -> String {
        log.split(separator: "\n").filter { $0.contains(" warning ") || $0.contains(" error ") }.suffix(8)
            .joined(separator: "\n")
    }

    /// Stops every node, then checks that `check` passes on each local copy and that their exports are the
    /// same bytes.
    static func stopCheckAndCompareExports(_ nodes: [Node], sourceLocation: SourceLocation = #_sourceLocation) throws {
        for node in nodes { #expect(node.server.stop() == 0, sourceLocation: sourceLocation) }
        var exports: [String] = []
        for node in nodes {
            let check = try runIdentityGraph(["check", "--data-dir", node.directory])
            #expect(check.status == 0, "\(node.name): \(check.output)", sourceLocation: sourceLocation)
            exports.append(try runIdentityGraph(["export", "--data-dir", node.directory]).output)
        }
        #expect(Set(exports).count == 1, "the exports differ", sourceLocation: sourceLocation)
    }

    static func identify(_ node: Node, _ body: String) throws -> HTTPExchange {
        try HTTPExchange.post(port: node.server.httpPort, path: "/identify", json: body)
    }

    @Test("three servers elect one leader; its changes reach every follower, which serve reads and relay changes to it")
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
        }
        // A change sent to a follower is the leader's to make: relayed there, its answer relayed back.
        for node in nodes where node !== leader {
            let relayed = try Self.identify(node, #"{"email":"doc@hillvalley.edu","phoneNumber":"123456"}"#)
            #expect(relayed.status == 200, "\(relayed.text)")
            #expect(relayed.text.contains(#""doc@hillvalley.edu""#), "\(relayed.text)")
            #expect(relayed.headers["identity-graph-seq"].flatMap(Int.init) != nil, "\(relayed.headers)")
        }
        // On the line protocol too, with answers in request order around a local read.
        let follower = nodes.first { $0 !== leader }!
        let line = try TestSocket(port: follower.server.tcpPort)
        try line.send(
            #"{"id":1,"email":"emmett@hillvalley.edu"}"# + "\n" + #"{"id":2,"op":"get","contactId":1}"# + "\n"
                + #"{"id":"three","email":"emmett@hillvalley.edu","phoneNumber":"555"}"# + "\n"
        )
        let answers = try (1...3).map { _ in try #require(try line.readLine()) }
        #expect(answers[0].hasPrefix(#"{"id":1,"contact":"#) && answers[0].contains(#""seq":"#), "\(answers[0])")
        #expect(answers[1].hasPrefix(#"{"id":2,"record":{"id":1"#), "\(answers[1])")
        #expect(answers[2].hasPrefix(#"{"id":"three","contact":"#) && answers[2].contains(#""555""#), "\(answers[2])")
        #expect(Self.caughtUp(nodes), "the followers did not apply the log")
        let changes = nodes.map { (try? HTTPExchange.get(port: $0.server.httpPort, path: "/changes"))?.text }
        #expect(Set(changes).count == 1, "the change feeds differ: \(changes)")
        // Metrics: each server's role, the epoch, the applied seq; the leader's appends to the log.
        let latest = try #require(leader.appliedSeq)
        for node in nodes {
            let text = try HTTPExchange.get(port: node.server.httpPort, path: "/metrics").text
            // Each sample as its name (with labels) and value; Prometheus writes gauges as decimals.
            let samples = Dictionary(
                text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line -> (String, Double)? in
                    guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...])
                    else { return nil }
                    return (String(line[..<space]), value)
                },
                uniquingKeysWith: { first, _ in first }
            )
            let role = node === leader ? "leader" : "follower"
            #expect(samples["identity_graph_cluster_role{role=\"\(role)\"}"] == 1, "\(node.name)")
            #expect(samples["identity_graph_cluster_role{role=\"candidate\"}"] == 0, "\(node.name)")
            #expect(samples["identity_graph_cluster_epoch"] == 1, "\(node.name)")
            #expect(samples["identity_graph_cluster_applied_seq"] == Double(latest), "\(node.name)")
            #expect(samples["identity_graph_cluster_lag_seconds"].map { $0 >= 0 && $0 < 30 } == true, "\(node.name)")
            let appends = samples["identity_graph_cluster_append_duration_seconds_count"] ?? -1
            #expect(node === leader ? appends >= 1 : appends == 0, "\(node.name): \(appends) appends")
        }
        for node in nodes { #expect(node.server.stop() == 0) }
    }

    @Test("read your writes through a follower; a relayed change carries the client's token, which the leader checks")
    func forwardingAndReadYourWrites() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        // The leader knows the usual tokens; the follower also knows one more write token, so that a
        // 401 for it can only come from the leader checking the token it was relayed.
        try TestTokens.write(to: directory.path + "/leader-tokens")
        try (TestTokens.fileText() + "write stranger-token-9999\n")
            .write(toFile: directory.path + "/follower-tokens", atomically: true, encoding: .utf8)
        let leader = try Node(name: "n1", directory: directory.path + "/n1", url: url,
                              extra: ["--auth-tokens", directory.path + "/leader-tokens"], token: TestTokens.read)
        #expect(try Self.leader(of: [leader]) === leader)
        let follower = try Node(name: "n2", directory: directory.path + "/n2", url: url,
                                extra: ["--auth-tokens", directory.path + "/follower-tokens"], token: TestTokens.read)
        #expect(Self.caughtUp([leader, follower]))
        #expect(waitUntil(seconds: 30) { follower.role == "follower" }, "the second server does not follow")
        func identify(_ node: Node, _ body: String, token: String) throws -> HTTPExchange {
            try HTTPExchange.send(
                port: node.server.httpPort, method: "POST", path: "/identify",
                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: Array(body.utf8)
            )
        }
        let stranger = try identify(follower, #"{"email":"biff@hillvalley.edu"}"#, token: "stranger-token-9999")
        #expect(stranger.status == 401, "\(stranger.text)")
        // Checked here first: a read token is refused by the follower itself.
        let reader = try identify(follower, #"{"email":"biff@hillvalley.edu"}"#, token: TestTokens.read)
        #expect(reader.status == 403, "\(reader.text)")

        for index in 0..<20 {
            let written = try identify(follower, #"{"email":"ryw\#(index)@x.io","phoneNumber":"77\#(index)"}"#, token: TestTokens.write)
            #expect(written.status == 200, "\(written.text)")
            let seq = try #require(written.headers["identity-graph-seq"].flatMap(Int.init), "\(written.headers)")
            let id = try #require((written.json["contact"] as? [String: Any])?["primaryContactId"] as? Int)
            // Read your writes on the follower: it answers once it has applied the change, never before.
            let read = try HTTPExchange.send(
                port: follower.server.httpPort, method: "GET", path: "/contacts/\(id)?minSeq=\(seq)",
                headers: ["Authorization": "Bearer \(TestTokens.read)"]
            )
            #expect(read.status == 200, "\(read.text)")
            #expect(read.headers["identity-graph-seq"].flatMap(Int.init).map { $0 >= seq } == true)
            let line = try TestSocket(port: follower.server.tcpPort)
            try line.send(#"{"op":"auth","token":"\#(TestTokens.read)"}"# + "\n" + #"{"op":"lookup","email":"ryw\#(index)@x.io","minSeq":\#(seq)}"# + "\n")
            _ = try line.readLine()
            let lookup = try #require(try line.readLine())
            #expect(lookup.contains(#""primaryContactId":\#(id)"#), "\(lookup)")
        }
        // An event nobody has made yet: the wait ends after 5 seconds with a 503 that says when to retry.
        let future = try HTTPExchange.send(
            port: follower.server.httpPort, method: "GET", path: "/contacts/1?minSeq=999999",
            headers: ["Authorization": "Bearer \(TestTokens.read)"]
        )
        #expect(future.status == 503 && future.headers["retry-after"] == "1", "\(future.text)")
        let bad = try HTTPExchange.send(
            port: follower.server.httpPort, method: "GET", path: "/contacts/1?minSeq=-1",
            headers: ["Authorization": "Bearer \(TestTokens.read)"]
        )
        #expect(bad.status == 400, "\(bad.text)")
        #expect(follower.server.stop() == 0)
        #expect(leader.server.stop() == 0)
    }

    @Test("between servers that speak TLS, a follower relays changes to the leader over TLS on both transports")
    func forwardingOverTLS() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        func role(_ port: Int) -> String? {
            (try? HTTPExchange.get(port: port, path: "/cluster"))?.json["role"] as? String
        }
        let first = try ServerProcess(
            dataDirectory: directory.path + "/t1", arguments: Node.arguments("t1", url) + TestCertificate.serveFlags
        )
        let firstHTTP = try TLSTunnel(to: first.httpPort)
        #expect(waitUntil(seconds: 30) { role(firstHTTP.port) == "leader" }, "t1 does not lead")
        let second = try ServerProcess(
            dataDirectory: directory.path + "/t2", arguments: Node.arguments("t2", url) + TestCertificate.serveFlags
        )
        let secondHTTP = try TLSTunnel(to: second.httpPort)
        let secondLine = try TLSTunnel(to: second.tcpPort)
        #expect(waitUntil(seconds: 30) { role(secondHTTP.port) == "follower" }, "t2 does not follow")
        let relayed = try HTTPExchange.post(port: secondHTTP.port, json: #"{"email":"tls@x.io","phoneNumber":"1"}"#)
        #expect(relayed.status == 200, "\(relayed.text) \(Self.problems(second.logSoFar))")
        let line = try TestSocket(port: secondLine.port)
        try line.send(#"{"id":7,"email":"tls@x.io","phoneNumber":"2"}"# + "\n")
        let answer = try #require(try line.readLine())
        #expect(answer.hasPrefix(#"{"id":7,"contact":{"primaryContactId":1"#), "\(answer) \(Self.problems(second.logSoFar))")
        #expect(second.stop() == 0)
        #expect(first.stop() == 0)
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
        try Self.stopCheckAndCompareExports(nodes)
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
        // A clean stop gives the name up, so that the restart below claims it at once.
        let holders = try postgres.sql("SELECT count(*) FROM identity_graph.nodes WHERE name = '\(follower.name)'")
        #expect(holders.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the stopped server still holds its name")
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

    @Test("checkpoints: a follower writes them in parts, the log is pruned, an empty server joins from one, a copy older than the log stops")
    func checkpoints() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        let options = ["--checkpoint-every", "20", "--changes-retain", "10"]
        // Parts of 4 KiB: this small store's checkpoint spans many, which a join fetches on two connections.
        let parts = ["IDENTITY_GRAPH_CHECKPOINT_PART_BYTES": "4096"]
        let nodes = try (1...3).map {
            try Node(name: "n\($0)", directory: directory.path + "/n\($0)", url: url, extra: options, environment: parts)
        }
        let leader = try Self.leader(of: nodes)
        for index in 0..<5 {
            #expect(try Self.identify(leader, #"{"email":"early\#(index)@x.io","phoneNumber":"\#(index)"}"#).status == 200)
        }
        #expect(Self.caughtUp(nodes))
        // Its copy holds the first batches only; by the time it comes back they are pruned.
        let stale = nodes.first { $0 !== leader }!
        #expect(stale.server.stop() == 0)
        let live = nodes.filter { $0 !== stale }
        for index in 0..<60 {
            #expect(try Self.identify(leader, #"{"email":"cp\#(index)@x.io","phoneNumber":"\#(index % 9)"}"#).status == 200)
        }
        let latest = try #require(leader.appliedSeq)
        var checkpoint: [Substring] = []
        let written = waitUntil(seconds: 30) {
            checkpoint = ((try? postgres.sql("SELECT seq, node FROM identity_graph.checkpoints")) ?? "")
                .split(separator: "\n").first?.split(separator: "|") ?? []
            return checkpoint.count == 2 && Int(checkpoint[0]).map { $0 >= latest - 20 } == true
        }
        #expect(written, "no checkpoint near seq \(latest): \(checkpoint)")
        // A follower writes it, so that the leader keeps its time for changes.
        #expect(checkpoint.last.map(String.init) != leader.name, "the leader wrote the checkpoint")
        let oldest = try #require(
            Int(try postgres.sql("SELECT min(position) FROM identity_graph.log").trimmingCharacters(in: .whitespacesAndNewlines))
        )
        #expect(oldest > 2, "the log was not pruned after the checkpoint (it begins at \(oldest))")
        let partCount = Int(try postgres.sql("SELECT count(*) FROM identity_graph.checkpoint_parts")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(partCount > 4, "the checkpoint has \(partCount) parts")
        // LZ4 blocks of 4 KiB each, the store file's and then its index image's, stored as they come.
        let layout = try postgres.sql(
            """
            SELECT c.encoding, c.part_bytes, c.parts, c.image_parts, c.bytes > 0 AND c.image_bytes > 0,
                (SELECT bool_and(octet_length(data) < 4096) FROM identity_graph.checkpoint_parts),
                (SELECT attstorage FROM pg_attribute
                 WHERE attrelid = 'identity_graph.checkpoint_parts'::regclass AND attname = 'data')
            FROM identity_graph.checkpoints c
            """
        ).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
        #expect(layout.count == 7 && layout[0] == "lz4" && layout[1] == "4096" && layout[4] == "t" && layout[5] == "t"
                && layout[6] == "e", "\(layout)")
        #expect(layout.count == 7 && Int(layout[2]).map { $0 > 0 } == true && Int(layout[3]).map { $0 > 0 } == true
                && Int(layout[2])! + Int(layout[3])! == partCount, "\(layout)")

        let newcomer = try Node(name: "n4", directory: directory.path + "/n4", url: url, extra: options, environment: parts)
        #expect(newcomer.server.logSoFar.contains("joined from a checkpoint"), "\(newcomer.server.logSoFar)")
        // Its index came with the checkpoint: loaded, not rebuilt from the rows.
        #expect(newcomer.server.logSoFar.contains("loaded the index from its saved image"), "\(newcomer.server.logSoFar)")
        // The checkpoint went in unsynced behind a marker, which goes once the store is synced.
        let marker = newcomer.directory + "/.join-unsynced"
        #expect(waitUntil(seconds: 15) { !FileManager.default.fileExists(atPath: marker) }, "the join's marker stayed")
        let all = live + [newcomer]
        func expectSameEverywhere(_ sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(Self.caughtUp(all), "the servers did not catch up: \(all.map(\.appliedSeq))", sourceLocation: sourceLocation)
            let feeds = all.map { (try? HTTPExchange.get(port: $0.server.httpPort, path: "/changes"))?.text }
            #expect(Set(feeds).count == 1, "the change feeds differ: \(feeds)", sourceLocation: sourceLocation)
            for node in all {
                let answer = try HTTPExchange.get(port: node.server.httpPort, path: "/profiles?email=cp59@x.io")
                #expect(answer.text.contains("cp59@x.io"), "\(node.name): \(answer.text)", sourceLocation: sourceLocation)
            }
        }
        try expectSameEverywhere()

        // A join that stopped before its sync (the marker left, the store cut short as a crash may leave
        // it): without --cluster the store is refused; with it, it is thrown away and the server joins again.
        #expect(newcomer.server.stop() == 0)
        #expect(FileManager.default.createFile(atPath: marker, contents: Data()))
        let store = try FileHandle(forUpdating: URL(fileURLWithPath: newcomer.directory + "/data.mdb"))
        try store.truncate(atOffset: try store.seekToEnd() / 2)
        try store.close()
        let alone = try runIdentityGraph(
            ["serve", "--data-dir", newcomer.directory, "--http-port", "0", "--tcp-port", "0"], timeout: 60
        )
        #expect(alone.status == 1 && alone.output.contains("never synced"), "\(alone.output)")
        for command in ["export", "check"] {
            let refused = try runIdentityGraph([command, "--data-dir", newcomer.directory], timeout: 60)
            #expect(refused.status == 1 && refused.output.contains("never synced"), "\(command): \(refused.output)")
        }
        try newcomer.restart(url: url)
        #expect(newcomer.server.logSoFar.contains("joins again"), "\(newcomer.server.logSoFar)")
        #expect(newcomer.server.logSoFar.contains("joined from a checkpoint"), "\(newcomer.server.logSoFar)")
        try expectSameEverywhere()

        let refused = try runIdentityGraph(
            ["serve", "--data-dir", stale.directory, "--http-port", "0", "--tcp-port", "0"]
                + Node.arguments(stale.name, url) + options,
            timeout: 60
        )
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("pruned after a checkpoint"), "\(refused.output)")

        // A checkpoint that lost a part is not installed with a hole: the join says which part, and the new
        // server, empty, stops as a copy older than the log does.
        _ = try postgres.sql("DELETE FROM identity_graph.checkpoint_parts WHERE part = 1")
        let holed = try runIdentityGraph(
            ["serve", "--data-dir", directory.path + "/n5", "--http-port", "0", "--tcp-port", "0"]
                + Node.arguments("n5", url) + options,
            timeout: 60
        )
        #expect(holed.status == 2, "\(holed.output)")
        #expect(holed.output.contains("cannot join from a checkpoint") && holed.output.contains(" of its \(partCount) parts"),
                "\(holed.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/n5/.join-unsynced"))

        try Self.stopCheckAndCompareExports(all)
    }

    @Test("a schema of format 1 is upgraded in place, and its checkpoint of raw parts still joins a server")
    func upgradeFromFormat1() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let url = postgres.url()
        let first = try Node(name: "n1", directory: directory.path + "/n1", url: url)
        let leader = try Self.leader(of: [first])
        for index in 0..<20 {
            #expect(try Self.identify(leader, #"{"email":"up\#(index)@x.io","phoneNumber":"\#(index % 6)"}"#).status == 200)
        }
        #expect(first.server.stop() == 0)
        // What a server of format 1 left: checkpoints without encoding or image, and one of them, the store
        // file of a snapshot in raw parts of 4 KiB.
        try postgres.sql(
            """
            ALTER TABLE identity_graph.checkpoints DROP COLUMN encoding, DROP COLUMN part_bytes,
                DROP COLUMN image_parts, DROP COLUMN image_bytes;
            ALTER TABLE identity_graph.checkpoint_parts ALTER COLUMN data SET STORAGE EXTENDED;
            UPDATE identity_graph.meta SET value = '1' WHERE key = 'format';
            DELETE FROM identity_graph.checkpoints; DELETE FROM identity_graph.checkpoint_parts;
            """
        )
        let snapshot = directory.path + "/snapshot"
        let snapshotted = try runIdentityGraph(["snapshot", "--data-dir", first.directory, "--out", snapshot], timeout: 60)
        #expect(snapshotted.status == 0, "\(snapshotted.output)")
        let file = try Data(contentsOf: URL(fileURLWithPath: snapshot + "/data.mdb"))
        let position = Int(try postgres.sql("SELECT max(position) FROM identity_graph.log")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let seq = Int(try postgres.sql("SELECT max(last_seq) FROM identity_graph.log")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(position > 0 && seq > 0)
        let chunks = stride(from: 0, to: file.count, by: 4096).map { file[$0..<min($0 + 4096, file.count)] }
        for (part, chunk) in chunks.enumerated() {
            let hex = chunk.map { String(format: "%02x", $0) }.joined()
            try postgres.sql(
                "INSERT INTO identity_graph.checkpoint_parts VALUES (\(position), \(part), decode('\(hex)', 'hex'))"
            )
        }
        try postgres.sql(
            """
            INSERT INTO identity_graph.checkpoints (position, seq, parts, bytes, node)
            VALUES (\(position), \(seq), \(chunks.count), \(file.count), 'n1')
            """
        )
        // The log it holds is pruned, so that the new server can only come from the checkpoint.
        try postgres.sql("DELETE FROM identity_graph.log WHERE position <= \(position)")

        let second = try Node(name: "n2", directory: directory.path + "/n2", url: url)
        #expect(second.server.logSoFar.contains("upgraded the cluster's tables"), "\(second.server.logSoFar)")
        #expect(second.server.logSoFar.contains("joined from a checkpoint"), "\(second.server.logSoFar)")
        #expect(second.server.logSoFar.contains("rebuilt the index from the store"), "\(second.server.logSoFar)")
        let format = try postgres.sql("SELECT value FROM identity_graph.meta WHERE key = 'format'")
        #expect(format.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "\(format)")
        try first.restart(url: url)
        let nodes = [first, second]
        _ = try Self.leader(of: nodes)
        #expect(Self.caughtUp(nodes), "the servers did not catch up: \(nodes.map(\.appliedSeq))")
        let answer = try HTTPExchange.get(port: second.server.httpPort, path: "/profiles?email=up19@x.io")
        #expect(answer.text.contains("up19@x.io"), "\(answer.text)")
        try Self.stopCheckAndCompareExports(nodes)
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

    /// Starts one cluster server, `n`, on `data`, its log collected; the caller kills it.
    static func serveLogged(data: String, url: String) throws -> (Process, PipeCollector) {
        let process = Process()
        process.executableURL = ServerProcess.executable
        process.arguments = Node.serve(data: data, name: "n", url: url)
        let log = PipeCollector()
        process.standardError = log.pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        log.start()
        return (process, log)
    }

    @Test("a database that cannot be reached at start is retried and logged; the server answers 503 until it has caught up")
    func unreachableAtStart() throws {
        let postgres = try PostgresServer()
        try postgres.stop()
        let directory = TemporaryDirectory()
        let (process, log) = try Self.serveLogged(data: directory.path + "/n", url: postgres.url())
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

    @Test("a database that goes away is logged once as it goes, not every retry, and once as it comes back")
    func outageIsLoggedOnce() throws {
        let postgres = try PostgresServer()
        let directory = TemporaryDirectory()
        let (process, log) = try Self.serveLogged(data: directory.path + "/n", url: postgres.url())
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try #require(waitUntil(seconds: 30) { log.text.contains("leading") }, "\(log.text)")
        try postgres.stop()
        // The loop retries every 200 ms: 3 s is about 15 failures.
        Thread.sleep(forTimeInterval: 3)
        try postgres.start()
        #expect(waitUntil(seconds: 30) { log.text.contains("the cluster database is reachable again") }, "\(log.text)")
        let lines = log.text.split(separator: "\n")
        let down = lines.filter { $0.contains("cannot reach the cluster database") }
        #expect(down.count == 1, "\(down.joined(separator: "\n"))")
        let back = try #require(lines.first { $0.contains("the cluster database is reachable again") })
        let failures = back.firstRange(of: /failures=(\d+)/).flatMap { Int(back[$0].dropFirst("failures=".count)) }
        #expect((failures ?? 0) > 3, "\(back)")
    }
}

import Foundation
import Testing

/// `deploy/local-cluster.sh` (without `--ha`), run for real: a throwaway PostgreSQL and three cluster servers
/// on loopback, as deploy/README.md promises anyone who tries it, stopped by SIGINT as by Ctrl-C.
@Suite(.serialized, .timeLimit(.minutes(10))) struct LocalClusterTests {
    static let script = DeployTests.root.appendingPathComponent("deploy/local-cluster.sh").path

    /// The script, started through Python's `subprocess` (as ``PostgresServer`` runs `pg_ctl`): Foundation's
    /// `Process` learns of an exit through a descriptor its child inherits, and `subprocess` closes it in
    /// the script, so that nothing the script leaves running can hide the script's own exit.
    final class Script: @unchecked Sendable {
        // `@unchecked`: set in init and only read afterwards; the collector and the signal are thread-safe.
        let process = Process()
        let output = PipeCollector()
        private let exited: ExitSignal

        /// Runs its arguments and exits with their status; SIGINT and SIGTERM are passed on to the script.
        /// The test process blocks both signals, and children inherit that: the script starts so (it resets
        /// them itself, as it must for anyone who starts it that way), and the wrapper unblocks them after.
        static let wrapper = """
            import signal, subprocess, sys
            child = subprocess.Popen(sys.argv[1:])
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, lambda received, frame: child.send_signal(received))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            sys.exit(child.wait())
            """

        init(_ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", Self.wrapper, LocalClusterTests.script] + arguments
            var variables = ProcessInfo.processInfo.environment
            // The binary this test run built: the script then builds nothing.
            variables["IDENTITY_GRAPH_BINARY"] = ServerProcess.executable.path
            process.environment = variables
            process.standardOutput = output.pipe
            process.standardError = output.pipe
            exited = ExitSignal(process)
            try process.run()
            output.start()
        }

        /// Waits at most `seconds` for the script (and so its wrapper) to exit; returns whether it did.
        func waitForExit(seconds: Double) -> Bool {
            exited.wait(seconds: seconds) && output.waitForEnd(seconds: 30)
        }
    }

    /// DIR/cluster.env, the `KEY=VALUE` lines the script writes for other programs.
    static func settings(in directory: String) throws -> [String: String] {
        let text = try String(contentsOfFile: directory + "/cluster.env", encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    /// Whether `pid` is a live process: it exists and is not a zombie. An orphaned postmaster that has
    /// died may wait as a zombie for a parent that does not reap it; it holds no port and does nothing.
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }

    /// Whether a listening socket could be bound to 127.0.0.1:`port` now. With `SO_REUSEADDR`, as every
    /// server sets it, so that connections of the test still in `TIME_WAIT` do not count as a holder.
    static func isFree(port: Int) -> Bool {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var one: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        return bound && listen(socket, 1) == 0
    }

    @Test("local-cluster.sh starts PostgreSQL and three servers with one leader whose changes reach the followers; SIGINT stops them all")
    func startsAndStops() throws {
        // A missing PostgreSQL fails here, naming the install command, as in every cluster test: not as a
        // script that ended before it was ready.
        _ = try PostgresServer.binaries()
        let script = try Script(["--lease-ttl", "2", "--wait", "120"])
        var stopped = false
        defer {
            // Whatever failed, nothing is left running: SIGTERM makes the script stop what it started.
            if !stopped {
                kill(script.process.processIdentifier, SIGTERM)
                if !script.waitForExit(seconds: 180) {
                    Issue.record("the script did not exit within 180 s of SIGTERM: \(script.output.text)")
                    kill(script.process.processIdentifier, SIGKILL)
                }
            }
        }
        let ready = script.output.wait(until: Date().addingTimeInterval(300)) { text, ended in
            text.contains("local-cluster: ready:") || ended
        }
        let text = script.output.text
        try #require(
            ready && text.contains("local-cluster: ready:"),
            "the script \(ready ? "ended before it was ready" : "did not get ready within 300 s"): \(text)"
        )
        let directory = try #require(
            text.split(separator: "\n").first { $0.hasPrefix("local-cluster: directory ") }?
                .split(separator: " ").dropFirst(2).first.map(String.init),
            "the script did not name its directory: \(text)"
        )
        let settings = try Self.settings(in: directory)
        let names = ["n1", "n2", "n3"]
        let http = try names.map { try #require(settings[$0.uppercased() + "_HTTP"].flatMap(Int.init), "\(settings)") }
        let tcp = try names.map { try #require(settings[$0.uppercased() + "_TCP"].flatMap(Int.init), "\(settings)") }
        let serverPids = try names.map {
            try #require(settings[$0.uppercased() + "_PID"].flatMap(Int32.init), "\(settings)")
        }
        let postgresPid = try #require(settings["POSTGRES_PID"].flatMap(Int32.init), "\(settings)")
        let postgresPort = try #require(settings["POSTGRES_PORT"].flatMap(Int.init), "\(settings)")
        let scriptPid = try #require(settings["SCRIPT_PID"].flatMap(Int32.init), "\(settings)")

        // Every server answers /healthz 200 (the script waited for it), and exactly one leads.
        for port in http {
            let health = try HTTPExchange.get(port: port, path: "/healthz")
            #expect(health.status == 200, "\(health.text)")
        }
        let statuses = try http.map { try HTTPExchange.get(port: $0, path: "/cluster").json }
        let leaders = statuses.indices.filter { statuses[$0]["role"] as? String == "leader" }
        try #require(leaders.count == 1, "not exactly one leader: \(statuses)")
        let leader = leaders[0]
        for status in statuses {
            #expect((status["leader"] as? [String: Any])?["node"] as? String == names[leader], "\(status)")
            if status["node"] as? String != names[leader] { #expect(status["role"] as? String == "follower") }
        }

        // A change sent to the leader shows on every follower.
        let answer = try HTTPExchange.post(
            port: http[leader], json: #"{"email":"lorraine@hillvalley.edu","phoneNumber":"123456"}"#
        )
        try #require(answer.status == 200, "\(answer.text)")
        let contact = try #require(answer.json["contact"] as? [String: Any])
        let primary = try #require(contact["primaryContactId"] as? Int)
        for follower in http.indices where follower != leader {
            var seen = ""
            let arrived = waitUntil(seconds: 30) {
                seen = (try? HTTPExchange.get(port: http[follower], path: "/profiles/\(primary)"))?.text ?? ""
                return seen == answer.text
            }
            #expect(arrived, "\(names[follower]) did not show the leader's change within 30 s: \(seen)")
        }

        // SIGINT, as Ctrl-C: everything stops, the ports are free and the directory is gone.
        kill(scriptPid, SIGINT)
        let exited = script.waitForExit(seconds: 180)
        stopped = exited
        try #require(exited, "the script did not exit within 180 s of SIGINT: \(script.output.text)")
        #expect(script.process.terminationStatus == 0, "\(script.output.text)")
        #expect(script.output.text.contains("local-cluster: stopped\n"), "\(script.output.text)")
        for (name, pid) in zip(names + ["PostgreSQL"], serverPids + [postgresPid]) {
            #expect(!Self.isRunning(pid), "\(name) (pid \(pid)) still runs after the script exited")
        }
        for port in http + tcp + [postgresPort] {
            #expect(Self.isFree(port: port), "port \(port) is still held after the script exited")
        }
        #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) was not removed")
    }
}

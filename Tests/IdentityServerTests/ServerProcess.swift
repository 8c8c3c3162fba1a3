import Foundation
import Testing

/// The real `identity-graph serve` process on ports 0, for tests that talk to it over sockets.
///
/// Every wait on it has a deadline and says what it was waiting for: a server that hangs fails its
/// test instead of hanging the suite.
final class ServerProcess: @unchecked Sendable {
    // @unchecked: `process` and the collectors are set up in init and only read afterwards; the
    // collectors and `exited` are thread-safe.
    let process: Process
    let dataDirectory: String
    let httpPort: Int
    let tcpPort: Int
    private let standardOutput = PipeCollector()
    private let standardError = PipeCollector()
    private let exited: ExitSignal

    /// How long a server may take to print its listening lines, and to exit once signalled. Generous:
    /// a debug (or ThreadSanitizer) build on a loaded 2-core machine starts slowly.
    static let startTimeout: Double = 60
    static let stopTimeout: Double = 60

    /// The executable built beside the test bundle, or the one named by `IDENTITY_GRAPH_BINARY`.
    static var executable: URL {
        if let path = ProcessInfo.processInfo.environment["IDENTITY_GRAPH_BINARY"] {
            return URL(fileURLWithPath: path)
        }
        let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // The test binary may sit inside an `.xctest` bundle folder on some platforms.
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("identity-graph").path),
            directory.path != "/"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("identity-graph")
    }

    /// Starts a server on `dataDirectory` and waits (at most ``startTimeout``) for its two
    /// `listening` lines. `launcher`, when given, turns the executable and its arguments into the
    /// command to run (to start the server inside a namespace, say); it must `exec` the server so
    /// that the process is the server itself.
    init(
        dataDirectory: String,
        arguments extra: [String] = [],
        environment: [String: String] = [:],
        launcher: ((URL, [String]) -> (URL, [String]))? = nil
    ) throws {
        self.dataDirectory = dataDirectory
        process = Process()
        let serve = ["serve", "--data-dir", dataDirectory, "--http-port", "0", "--tcp-port", "0"] + extra
        (process.executableURL, process.arguments) = launcher?(Self.executable, serve) ?? (Self.executable, serve)
        var variables = ProcessInfo.processInfo.environment
        variables.merge(environment) { $1 }
        process.environment = variables
        process.standardOutput = standardOutput.pipe
        process.standardError = standardError.pipe
        exited = ExitSignal(process)
        try process.run()
        standardOutput.start()
        standardError.start()

        var ports: (http: Int, tcp: Int)?
        _ = standardOutput.wait(until: Date().addingTimeInterval(Self.startTimeout)) { text, ended in
            ports = Self.listeningPorts(in: text)
            return ports != nil || ended
        }
        guard let ports else {
            let running = process.isRunning
            if running { kill(process.processIdentifier, SIGKILL) }
            _ = exited.wait(seconds: 30)
            _ = standardError.waitForEnd(seconds: 10)
            let why = running
                ? "printed no listening lines within \(Int(Self.startTimeout)) s (stdout: \(standardOutput.text))"
                : "exited (\(process.terminationStatus)) before listening"
            throw ServerFailed(message: "the server \(why): \(standardError.text)")
        }
        httpPort = ports.http
        tcpPort = ports.tcp
    }

    /// The ports of `http listening on HOST:PORT` and `tcp listening on HOST:PORT`, once both are there.
    private static func listeningPorts(in text: String) -> (http: Int, tcp: Int)? {
        var http: Int?
        var tcp: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("http listening on "), let port = line.split(separator: ":").last { http = Int(port) }
            if line.hasPrefix("tcp listening on "), let port = line.split(separator: ":").last { tcp = Int(port) }
        }
        guard let http, let tcp else { return nil }
        return (http, tcp)
    }

    struct ServerFailed: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Waits at most `seconds` for the process to exit; returns whether it did.
    func waitForExit(seconds: Double) -> Bool {
        exited.wait(seconds: seconds)
    }

    /// Sends `signal` and waits (at most ``stopTimeout``) for the process to exit; returns its exit
    /// status. A server that does not exit in time fails the test and is killed.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, sourceLocation: SourceLocation = #_sourceLocation) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        if !waitForExit(seconds: Self.stopTimeout) {
            Issue.record(
                "the server did not exit within \(Int(Self.stopTimeout)) s of signal \(signal); killing it",
                sourceLocation: sourceLocation
            )
            kill(process.processIdentifier, SIGKILL)
            _ = exited.wait(seconds: 30)
        }
        return process.terminationStatus
    }

    /// The server's resident memory in bytes, from `/proc`.
    var residentBytes: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// What the server wrote to stderr (its log), all of it: call it once the server has exited (it
    /// waits at most 30 s for the end of the log).
    var log: String {
        if !standardError.waitForEnd(seconds: 30) {
            Issue.record("the server's log did not end within 30 s: is the server still running?")
        }
        return standardError.text
    }

    /// What the server has written to stderr so far, while it runs.
    var logSoFar: String { standardError.text }

    /// Waits until the log holds `text`, at most `seconds`; returns whether it does.
    func waitForLog(containing text: String, seconds: Double = 30) -> Bool {
        standardError.wait(until: Date().addingTimeInterval(seconds)) { log, _ in log.contains(text) }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            _ = exited.wait(seconds: 30)
        }
    }
}

extension ServerProcess {
    /// The value of one series of `GET /metrics`, named as Prometheus prints it
    /// (`name{label="value",...}`, labels in any order); 0 when the series is not there.
    func metric(_ series: String) throws -> Double {
        let answer = try HTTPExchange.get(port: httpPort, path: "/metrics")
        guard answer.status == 200 else {
            throw ServerFailed(message: "GET /metrics answered \(answer.status): \(answer.text)")
        }
        let wanted = MetricSeries(series)
        for line in answer.text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            if MetricSeries(String(line[..<space])) == wanted { return Double(line[line.index(after: space)...]) ?? 0 }
        }
        return 0
    }

    /// Sends SIGHUP and waits until the server has counted its attempt to reload `file`
    /// (`blocklist` or `tokens`) in `identity_graph_reloads_total`. Fails the test when the attempt
    /// ends otherwise than `expected` (`ok` or `failed`), or when none is counted within 30 s.
    func reload(_ file: String, expecting expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let series = ["ok", "failed"].map { #"identity_graph_reloads_total{file="\#(file)",result="\#($0)"}"# }
        let before = try series.map(metric)
        kill(process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let now = try series.map(metric)
            if now != before {
                let result = now[0] != before[0] ? "ok" : "failed"
                #expect(result == expected, "the reload of the \(file) was counted as \(result)", sourceLocation: sourceLocation)
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        Issue.record("no reload of the \(file) was counted within 30 s of SIGHUP", sourceLocation: sourceLocation)
    }
}

/// A series' name and labels, compared without regard to the labels' order.
private struct MetricSeries: Equatable {
    var name: Substring
    var labels: Set<Substring>

    init(_ text: String) {
        guard let brace = text.firstIndex(of: "{") else {
            name = Substring(text)
            labels = []
            return
        }
        name = text[..<brace]
        // Label values here never hold commas or braces.
        labels = Set(text[text.index(after: brace)...].dropLast().split(separator: ","))
    }
}

/// A fresh directory under the system's temporary folder, removed at the end of its scope.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("identity-graph-server-tests-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var store: String { path + "/store" }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

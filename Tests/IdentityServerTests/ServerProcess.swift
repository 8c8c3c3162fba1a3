import Foundation
import Testing

/// The real `identity-graph serve` process on ports 0, for tests that talk to it over sockets.
final class ServerProcess: @unchecked Sendable {
    // @unchecked: `process` and the pipes are set up in init and only read afterwards.
    let process: Process
    let dataDirectory: String
    let httpPort: Int
    let tcpPort: Int
    private let standardError: Pipe

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

    /// Starts a server on `dataDirectory` and waits for its two `listening` lines.
    /// `launcher`, when given, turns the executable and its arguments into the command to run
    /// (to start the server inside a namespace, say); it must `exec` the server so that the
    /// process is the server itself.
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
        let output = Pipe()
        standardError = Pipe()
        process.standardOutput = output
        process.standardError = standardError
        try process.run()

        var text = ""
        var http: Int?
        var tcp: Int?
        let handle = output.fileHandleForReading
        while http == nil || tcp == nil {
            let chunk = handle.availableData
            if chunk.isEmpty {
                process.waitUntilExit()
                let errors = String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                throw ServerFailed(message: "the server exited (\(process.terminationStatus)) before listening: \(errors)")
            }
            text += String(decoding: chunk, as: UTF8.self)
            for line in text.split(separator: "\n") {
                if line.hasPrefix("http listening on "), let port = line.split(separator: ":").last { http = Int(port) }
                if line.hasPrefix("tcp listening on "), let port = line.split(separator: ":").last { tcp = Int(port) }
            }
        }
        httpPort = http!
        tcpPort = tcp!
    }

    struct ServerFailed: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// The server's resident memory in bytes, from `/proc`.
    var residentBytes: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// What the server wrote to stderr (its log), once it has exited. Read it once: it drains the pipe.
    var log: String {
        String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
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

import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum WireProtocol: String, ExpressibleByArgument, CaseIterable, Sendable {
    case tcp
    case http
}

/// Load for a running identity-graph server. `replay` (the default, so `loadgen --protocol tcp ...` works as it
/// always did) replays a workload flat out or at a fixed rate; `soak` runs a steady mixed load for a long time.
@main
struct LoadGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load an identity-graph server: replay a workload, or soak it with a steady mixed load.",
        subcommands: [Replay.self, Soak.self],
        defaultSubcommand: Replay.self
    )
}

/// Replays a workload of identify bodies against a running identity-graph server and reports throughput and
/// latency. Every connection runs on its own OS thread with blocking sockets, so what is measured is the server
/// plus the kernel, not a client-side event loop.
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay NDJSON identify bodies against an identity-graph server and report latency."
    )

    @Option(name: .customLong("protocol"), help: "tcp (the line protocol) or http.")
    var wireProtocol: WireProtocol = .tcp

    @Option(help: "Server address.")
    var host: String = "127.0.0.1"

    @Option(help: "Server port (the TCP or the HTTP listener, matching --protocol).")
    var port: Int

    @Option(help: "Concurrent connections, one thread each.")
    var connections: Int = 8

    @Option(help: "TCP only: requests in flight per connection.")
    var pipeline: Int = 1

    @Option(help: "Total requests, cycling through the workload if needed (default: its line count).")
    var requests: Int?

    @Option(help: "The first request's number: requests are lines FIRST, FIRST+1, ... of the workload (cycling).")
    var firstRequest: Int = 0

    @Option(help: "Requests per second, all connections together, paced evenly (default: as fast as answered).")
    var rate: Double?

    @Option(help: "HTTP only: the identify path.")
    var path: String = "/identify"

    @Option(help: "NDJSON file, one identify body (a JSON object) per line.")
    var workload: String

    @Option(help: "Seconds a single read or write may block before the connection counts as failed.")
    var timeout: Int = 30

    @Flag(help: "Print one JSON object with the results instead of the table.")
    var json = false

    /// The server answers at most 4,096 owed answers per connection before it stops reading (README, line
    /// protocol); a client that writes a whole window with blocking sockets while not reading could deadlock
    /// against that, so the window stays well below it.
    static let maxPipeline = 1024

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1...65535") }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard (1...Self.maxPipeline).contains(pipeline) else {
            throw ValidationError("--pipeline must be 1...\(Self.maxPipeline)")
        }
        if wireProtocol == .http && pipeline != 1 {
            throw ValidationError("--pipeline applies to --protocol tcp only (HTTP keeps one request in flight)")
        }
        if let requests, requests < 1 { throw ValidationError("--requests must be at least 1") }
        guard firstRequest >= 0 else { throw ValidationError("--first-request must not be negative") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard path.hasPrefix("/") else { throw ValidationError("--path must start with /") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second") }
    }

    func run() throws {
        // A server that closes while we write must surface as EPIPE on that connection, not kill the process.
        signal(SIGPIPE, SIG_IGN)

        let loaded: Workload
        do {
            loaded = try Workload(
                contentsOf: workload,
                wireProtocol: wireProtocol,
                host: host,
                port: port,
                path: path
            )
        } catch {
            // A bad workload file is the caller's mistake, but the usage text would only bury the line at fault.
            FileHandle.standardError.write(Data("loadgen: \(error)\n".utf8))
            throw ExitCode.validationFailure
        }
        let total = requests ?? loaded.count
        let endpoint = Endpoint(host: host, port: port, timeoutSeconds: timeout)

        let coordinator = RunCoordinator(workers: connections)
        for index in 0..<connections {
            let plan = WorkerPlan(
                connectionIndex: index,
                connections: connections,
                totalRequests: total,
                firstRequest: firstRequest,
                // Each connection sends every `connections / rate` seconds, offset so that they take turns.
                pacingNanos: rate.map { UInt64(Double(connections) / $0 * 1e9) },
                pipeline: pipeline,
                endpoint: endpoint,
                workload: loaded
            )
            let protocolKind = wireProtocol
            let thread = Thread {
                let result: WorkerResult
                switch protocolKind {
                case .tcp: result = TCPWorker(plan: plan, coordinator: coordinator).run()
                case .http: result = HTTPWorker(plan: plan, coordinator: coordinator).run()
                }
                coordinator.finish(result)
            }
            thread.name = "loadgen-\(index)"
            thread.start()
        }

        // Connections are opened before the clock starts so that throughput measures answering, not connecting.
        coordinator.waitUntilAllReady()
        let startedAt = MonotonicClock.nanoseconds()
        coordinator.start()
        let results = coordinator.waitForResults()

        let summary = Summary(results: results, startedAt: startedAt, plannedRequests: total)
        let settings = RunSettings(
            wireProtocol: wireProtocol,
            host: host,
            port: port,
            connections: connections,
            pipeline: pipeline,
            workload: workload,
            workloadLines: loaded.count
        )
        for message in summary.errorSamples {
            FileHandle.standardError.write(Data("loadgen: \(message)\n".utf8))
        }
        if json {
            print(try summary.json(settings: settings))
        } else {
            print(summary.table(settings: settings))
        }
        if summary.errors > 0 || summary.succeeded == 0 {
            throw ExitCode.failure
        }
    }
}

import ArgumentParser
import Foundation
import IdentityGraph

/// Runs a workload through the engine in-process and prints requests per second.
///
/// `memory`: one thread, no store: decode the request JSON, identify, encode the whole response,
/// as the line protocol does per request. `durable`: the same on a store with durable commits,
/// with `--in-flight` requests outstanding at a time, so group commit can gather them.
@main
struct EngineThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the engine's identify throughput in-process.")

    @Option(help: "memory or durable.") var mode = "memory"
    @Option(help: "NDJSON workload file.") var workload = "data/generated/workload.ndjson"
    @Option(help: "Requests to run (the file cycles; default: its line count).") var requests: Int?
    @Option(help: "Requests outstanding at once (durable mode).") var inFlight = 256
    @Option(help: "A blocklist file to configure, as `serve --blocklist` does.") var blocklist: String?
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        let text = try String(contentsOfFile: workload, encoding: .utf8)
        let bodies = text.split(separator: "\n").map { Array($0.utf8) }
        guard !bodies.isEmpty else { throw ValidationError("\(workload) is empty") }
        let total = requests ?? bodies.count
        let seconds: Double
        let sink = ResponseSink()
        switch mode {
        case "memory":
            var guards = Guards.none
            if let blocklist { guards.blocklist = try Blocklist(contentsOfFile: blocklist) }
            let engine = IdentityEngine(options: .init(guards: guards))
            let started = DispatchTime.now().uptimeNanoseconds
            for index in 0..<total {
                let request = try IdentifyRequest(json: bodies[index % bodies.count])
                var head = JSONWriter()
                head.raw("{\"contact\":")
                // As the transports do: the answer is written straight from the index.
                engine.identify(request, appendingProfileTo: head) { result in
                    if case .success(let writer) = result { sink.bytes &+= writer.bytes.count }
                }
            }
            seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        case "durable":
            let directory = NSTemporaryDirectory() + "identity-graph-throughput-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let engine = try IdentityEngine(dataDirectory: directory)
            let slots = DispatchSemaphore(value: inFlight)
            let started = DispatchTime.now().uptimeNanoseconds
            for index in 0..<total {
                let request = try IdentifyRequest(json: bodies[index % bodies.count])
                slots.wait()
                var head = JSONWriter()
                head.raw("{\"contact\":")
                engine.identify(request, appendingProfileTo: head) { result in
                    if case .failure(let error) = result { fatalError("identify failed: \(error)") }
                    slots.signal()
                }
            }
            for _ in 0..<inFlight { slots.wait() }
            seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            // libdispatch traps if a semaphore dies holding fewer permits than it was created with.
            for _ in 0..<inFlight { slots.signal() }
            let commits = engine.statistics.commits
            engine.close()
            if !json { print("commits: \(commits) (\(String(format: "%.1f", Double(total) / Double(commits))) requests each)") }
        default:
            throw ValidationError("mode must be memory or durable")
        }
        let rate = Double(total) / seconds
        if json {
            print(#"{"mode":"\#(mode)","requests":\#(total),"seconds":\#(seconds),"perSecond":\#(Int(rate))}"#)
        } else {
            print("\(mode): \(total) identify in \(String(format: "%.3f", seconds)) s = \(Int(rate)) /s")
        }
        if sink.bytes < 0 { print("") }  // keeps the encoded responses observable to the optimizer
    }
}

/// Where memory-mode completions add up response sizes, so encoding is not optimized away.
/// `@unchecked Sendable`: an in-memory engine completes synchronously on the calling thread.
final class ResponseSink: @unchecked Sendable {
    var bytes = 0
}

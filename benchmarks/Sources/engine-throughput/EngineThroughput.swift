import ArgumentParser
import Foundation
import IdentityGraph

/// Runs a workload through the engine in-process and prints requests per second.
///
/// The requests go to the engine as the line protocol hands them over: decoded on the calling
/// thread (an event loop's job), then `--batch` at a time in one call, with at most `--in-flight`
/// requests outstanding; the answers are written straight from the index. `memory`: no store.
/// `durable`: a store with durable commits, where group commit gathers what is outstanding: a new one, or with
/// `--data-dir` an existing one (for cost against store size; its index is loaded before the clock starts, and
/// the workload's contacts are added to it).
@main
struct EngineThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the engine's identify throughput in-process.")

    @Option(help: "memory or durable.") var mode = "memory"
    @Option(help: "NDJSON workload file.") var workload = "data/generated/workload.ndjson"
    @Option(help: "Requests to run (the file cycles; default: its line count).") var requests: Int?
    @Option(help: "Requests handed to the engine in one call (a pipelined read).") var batch = 64
    @Option(help: "Requests outstanding at once.") var inFlight = 512
    @Option(help: "A blocklist file to configure, as `serve --blocklist` does.") var blocklist: String?
    @Option(help: "durable only: run on this existing store (it is changed) instead of a new one.")
    var dataDir: String?
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        let text = try String(contentsOfFile: workload, encoding: .utf8)
        let bodies = text.split(separator: "\n").map { Array($0.utf8) }
        guard !bodies.isEmpty else { throw ValidationError("\(workload) is empty") }
        guard batch > 0, inFlight >= batch else { throw ValidationError("need 0 < --batch <= --in-flight") }
        let total = requests ?? bodies.count
        var guards = Guards.none
        if let blocklist { guards.blocklist = try Blocklist(contentsOfFile: blocklist) }
        let directory = NSTemporaryDirectory() + "identity-graph-throughput-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine: IdentityEngine
        let opening = DispatchTime.now().uptimeNanoseconds
        switch mode {
        case "memory" where dataDir == nil: engine = IdentityEngine(options: .init(guards: guards))
        case "durable":
            engine = try IdentityEngine(dataDirectory: dataDir ?? directory, options: .init(guards: guards))
        default: throw ValidationError("mode must be memory or durable (--data-dir needs durable)")
        }
        let openSeconds = Double(DispatchTime.now().uptimeNanoseconds - opening) / 1e9
        let sink = ResponseSink()
        let slots = DispatchSemaphore(value: inFlight / batch)
        let started = DispatchTime.now().uptimeNanoseconds
        var index = 0
        var head = JSONWriter()
        head.raw("{\"contact\":")
        while index < total {
            let count = min(batch, total - index)
            var requests: [IdentityEngine.BatchedRequest] = []
            requests.reserveCapacity(count)
            for offset in 0..<count {
                let request = try IdentifyRequest(json: bodies[(index + offset) % bodies.count])
                requests.append(.identify(request, dryRun: false, head: head))
            }
            index += count
            slots.wait()
            engine.submit(requests) { answers in
                for answer in answers {
                    switch answer {
                    case .written(let writer): sink.add(writer.bytes.count)
                    // With a blocklist, a request whose every value is blocked is refused: an answer too.
                    case .failed(.blocked): sink.add(1)
                    default: fatalError("identify failed: \(answer)")
                    }
                }
                slots.signal()
            }
        }
        for _ in 0..<(inFlight / batch) { slots.wait() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        // libdispatch traps if a semaphore dies holding fewer permits than it was created with.
        for _ in 0..<(inFlight / batch) { slots.signal() }
        let commits = Commits()
        Task {
            commits.count = await engine.statistics.commits
            commits.done.signal()
        }
        commits.done.wait()
        engine.close()
        let rate = Double(total) / seconds
        if json {
            print(#"{"mode":"\#(mode)","requests":\#(total),"seconds":\#(seconds),"perSecond":\#(Int(rate)),"commits":\#(commits.count),"openSeconds":\#(openSeconds)}"#)
        } else {
            print("\(mode): \(total) identify in \(String(format: "%.3f", seconds)) s = \(Int(rate)) /s, \(commits.count) commits")
        }
        if sink.bytes < 0 { print("") }  // keeps the encoded responses observable to the optimizer
    }
}

/// Where completions add up response sizes, so encoding is not optimized away.
/// `@unchecked Sendable`: completions run on the engine's thread alone, one at a time.
final class ResponseSink: @unchecked Sendable {
    private(set) var bytes = 0
    func add(_ count: Int) { bytes &+= count }
}

/// The commit count, read from the engine after the run.
/// `@unchecked Sendable`: written once before `done` is signalled, read after waiting for it.
final class Commits: @unchecked Sendable {
    var count = 0
    let done = DispatchSemaphore(value: 0)
}

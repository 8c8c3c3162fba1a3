import Foundation
import Histogram

struct RunSettings {
    let wireProtocol: WireProtocol
    let host: String
    let port: Int
    let connections: Int
    let pipeline: Int
    let workload: String
    let workloadLines: Int
}

/// The merged results of all connections.
struct Summary {
    let plannedRequests: Int
    let answered: Int
    let succeeded: Int
    let invalidAnswers: Int
    let badStatus: Int
    let connectionFailures: Int
    let unanswered: Int
    let seconds: Double
    let histogram: Histogram<UInt64>
    let errorSamples: [String]

    var errors: Int { invalidAnswers + badStatus + connectionFailures }

    /// Successful answers per second: answers that failed validation do not count as throughput.
    var throughput: Double { seconds > 0 ? Double(succeeded) / seconds : 0 }

    init(results: [WorkerResult], startedAt: UInt64, plannedRequests: Int) {
        var histogram = WorkerResult.makeHistogram()
        var finishedAt = startedAt
        for result in results {
            histogram.add(result.histogram)
            finishedAt = max(finishedAt, result.finishedAt)
        }
        self.histogram = histogram
        self.plannedRequests = plannedRequests
        answered = results.reduce(0) { $0 + $1.answered }
        succeeded = results.reduce(0) { $0 + $1.succeeded }
        invalidAnswers = results.reduce(0) { $0 + $1.invalidAnswers }
        badStatus = results.reduce(0) { $0 + $1.badStatus }
        connectionFailures = results.reduce(0) { $0 + $1.connectionFailures }
        unanswered = results.reduce(0) { $0 + $1.unanswered }
        seconds = Double(finishedAt - startedAt) / 1e9
        // Threads finish in any order; sorting keeps the messages readable.
        let ordered = results.sorted { $0.connectionIndex < $1.connectionIndex }
        errorSamples = Array(ordered.flatMap(\.errorSamples).prefix(20))
    }

    /// Latencies in microseconds with 0.1 µs resolution; the histogram keeps 3 significant digits anyway.
    private func micros(_ nanoseconds: UInt64) -> Double {
        (Double(nanoseconds) / 100).rounded() / 10
    }

    private var latencies: [(String, Double)] {
        let empty = histogram.totalCount == 0
        return [
            ("p50", empty ? 0 : micros(histogram.valueAtPercentile(50))),
            ("p90", empty ? 0 : micros(histogram.valueAtPercentile(90))),
            ("p99", empty ? 0 : micros(histogram.valueAtPercentile(99))),
            ("p99.9", empty ? 0 : micros(histogram.valueAtPercentile(99.9))),
            ("max", empty ? 0 : micros(histogram.maxRecorded)),
        ]
    }

    func table(settings: RunSettings) -> String {
        var target = "\(settings.wireProtocol.rawValue) \(settings.host):\(settings.port)"
        target += settings.connections == 1 ? ", 1 connection" : ", \(settings.connections) connections"
        if settings.wireProtocol == .tcp { target += ", pipeline \(settings.pipeline)" }
        var lines = [
            "loadgen: \(target)",
            "workload: \(settings.workload) (\(settings.workloadLines) lines)",
            "",
            row("requests", "\(answered)" + (answered == plannedRequests ? "" : " of \(plannedRequests)")),
            row("seconds", String(format: "%.3f", seconds)),
            row("throughput", String(format: "%.1f requests/s", throughput)),
            row("errors", "\(errors)" + errorBreakdown),
            "",
            "latency (µs)" + latencies.map { pad($0.0, 11) }.joined(),
            pad("", 12) + latencies.map { pad(String(format: "%.1f", $0.1), 11) }.joined(),
        ]
        if unanswered > 0 { lines.insert(row("unanswered", "\(unanswered)"), at: 7) }
        return lines.joined(separator: "\n")
    }

    private var errorBreakdown: String {
        guard errors > 0 else { return "" }
        return " (invalid answers \(invalidAnswers), non-200 \(badStatus), connection failures \(connectionFailures))"
    }

    private func row(_ label: String, _ value: String) -> String {
        label.padding(toLength: 12, withPad: " ", startingAt: 0) + value
    }

    private func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }

    private struct Output: Encodable {
        let `protocol`: String
        let host: String
        let port: Int
        let connections: Int
        let pipeline: Int
        let workload: String
        let workloadLines: Int
        let plannedRequests: Int
        let requests: Int
        let succeeded: Int
        let seconds: Double
        let throughput: Double
        let errors: Int
        let invalidAnswers: Int
        let non200: Int
        let connectionFailures: Int
        let unanswered: Int
        let latencyMicros: [String: Double]
    }

    func json(settings: RunSettings) throws -> String {
        let output = Output(
            protocol: settings.wireProtocol.rawValue,
            host: settings.host,
            port: settings.port,
            connections: settings.connections,
            pipeline: settings.pipeline,
            workload: settings.workload,
            workloadLines: settings.workloadLines,
            plannedRequests: plannedRequests,
            requests: answered,
            succeeded: succeeded,
            seconds: (seconds * 1e6).rounded() / 1e6,
            throughput: (throughput * 10).rounded() / 10,
            errors: errors,
            invalidAnswers: invalidAnswers,
            non200: badStatus,
            connectionFailures: connectionFailures,
            unanswered: unanswered,
            latencyMicros: Dictionary(uniqueKeysWithValues: latencies)
        )
        let encoder = JSONEncoder()
        // Sorted keys keep the output stable from run to run, so results can be diffed and parsed by line.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(output), as: UTF8.self)
    }
}

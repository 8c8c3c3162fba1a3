import Foundation

/// One line-protocol connection: keeps `pipeline` requests in flight, each tagged with its global request
/// number as `"id"`, and reads the answers, which come back in request order.
struct TCPWorker {
    let plan: WorkerPlan
    let coordinator: RunCoordinator

    func run() -> WorkerResult {
        var result = WorkerResult(connectionIndex: plan.connectionIndex)
        let connection: Connection?
        do {
            connection = try Connection(plan.endpoint)
        } catch {
            connection = nil
            result.connectionFailures += 1
            result.note("connection \(plan.connectionIndex): \(error)")
        }
        coordinator.arriveAndWaitForStart()
        if let connection {
            exchange(over: connection, into: &result)
        } else {
            result.unanswered = plan.requestCount
        }
        result.finishedAt = MonotonicClock.nanoseconds()
        return result
    }

    private func exchange(over connection: Connection, into result: inout WorkerResult) {
        let count = plan.requestCount
        let window = plan.pipeline
        // Answers come back in order, so a ring indexed by request number holds the send times in flight.
        var sentAt = [UInt64](repeating: 0, count: window)
        var output: [UInt8] = []
        output.reserveCapacity(window * 256)
        var input = InputBuffer()
        var sent = 0
        var answered = 0
        let start = MonotonicClock.nanoseconds()

        do {
            while answered < count {
                // Top the window up in one write: with pipelining, refills after a burst of answers go together.
                // With --rate, only the requests that are due go.
                if sent < count && sent - answered < window {
                    if sent == answered { plan.waitUntilDue(sent, start: start) }
                    output.removeAll(keepingCapacity: true)
                    let firstInBatch = sent
                    let now = MonotonicClock.nanoseconds()
                    while sent < count && sent - answered < window && plan.due(sent, start: start) <= now {
                        plan.workload.appendTCPRequest(id: plan.requestID(sent), into: &output)
                        sent += 1
                    }
                    for n in firstInBatch..<sent { sentAt[n % window] = now }
                    if sent > firstInBatch { try connection.writeAll(output) }
                }

                // Wait for at least one answer, then take every complete one already received. Paced, with room in
                // the window, the wait ends at the next request's due time too.
                if plan.pacingNanos != nil && sent < count && sent - answered < window {
                    let now = MonotonicClock.nanoseconds()
                    let due = plan.due(sent, start: start)
                    if due > now, try !connection.waitReadable(nanoseconds: due - now) { continue }
                    if due <= now { continue }
                }
                try input.fill(from: connection)
                while let line = input.takeLine() {
                    if line.isEmpty { continue }
                    guard answered < sent else {
                        result.invalidAnswers += 1
                        result.note("connection \(plan.connectionIndex): an answer to a request never sent")
                        throw ConnectionError(description: "protocol out of step")
                    }
                    let id = plan.requestID(answered)
                    result.recordLatency(sentAt: sentAt[answered % window], answeredAt: input.lastFillNanos)
                    result.answered += 1
                    let reason = input.storage.withUnsafeBytes { bytes in
                        AnswerCheck.check(
                            UnsafeRawBufferPointer(rebasing: bytes[line]),
                            expectedID: id,
                            fullParse: answered % AnswerCheck.fullParseEvery == 0
                        )
                    }
                    if let reason {
                        result.invalidAnswers += 1
                        result.note("connection \(plan.connectionIndex): request \(id): \(reason)")
                    } else {
                        result.succeeded += 1
                    }
                    answered += 1
                }
            }
        } catch {
            result.connectionFailures += 1
            result.unanswered += count - answered
            result.note("connection \(plan.connectionIndex): \(error) after \(answered) answers")
        }
    }
}

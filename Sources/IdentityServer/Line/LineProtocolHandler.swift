import IdentityCluster
import IdentityGraph
import Logging
import NIOCore


/// Serves one line-protocol connection.
///
/// Each request gets a sequence number when it arrives; answers are written strictly in that
/// order whatever order the engine completes them in. Answers that are ready when a read ends go
/// out as one write and one flush, not one write per request. Reading stops (backpressure) while the client has too many
/// answers owed or the socket is not writable, and resumes when both clear.
final class LineProtocolHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let engine: IdentityEngine
    private let access: AccessControl
    private let metrics: ServerMetrics
    private let maxInFlight: Int
    private let maxLineBytes: Int
    /// How long a connection asked to finish may take to collect what it is owed.
    private let shutdownGracePeriod: TimeAmount
    /// Identify answers also carry `primaryContatctId` (`--bitespeed-compat`).
    private let bitespeedCompat: Bool
    /// Cluster mode (SPEC.md section 17): who leads, whether this server has caught up.
    private let cluster: ClusterNode?
    /// Cluster mode: how a follower relays changes to the leader.
    private let forwarder: ClusterForwarder?
    private let logger: Logger

    private var context: ChannelHandlerContext?
    /// The sequence number of the next request to arrive.
    private var nextSequence: UInt64 = 0
    /// The sequence number of the next answer to write.
    private var nextToWrite: UInt64 = 0
    /// Answers completed ahead of an earlier one, by sequence number.
    private var completedEarly: [UInt64: [UInt8]] = [:]
    /// Answers gathered in order but not written yet: written and flushed together at the end
    /// of a read, or once for a run of answers that completed off the event loop.
    private var output: ByteBuffer?
    /// The engine requests of the read in progress, handed over together when it ends.
    private var gathered: [Gathered] = []
    private var readHeld = false
    /// After this answer is delivered the connection closes (an over-long line, or draining).
    private var closeAfter: UInt64?
    private var draining = false

    /// The role this connection authenticated with; without tokens every connection may do all.
    private var role: Role?
    /// The token it authenticated with: a change forwarded to the leader goes with it (SPEC.md section 17).
    private var token: [UInt8]?
    private var failedAuths = 0
    /// After this many failed `auth` lines the connection is closed.
    static let maxFailedAuths = 5

    init(
        engine: IdentityEngine, access: AccessControl, metrics: ServerMetrics, maxInFlight: Int, maxLineBytes: Int,
        shutdownGracePeriod: TimeAmount = .seconds(10), bitespeedCompat: Bool = false, cluster: ClusterNode? = nil,
        forwarder: ClusterForwarder? = nil, logger: Logger
    ) {
        self.cluster = cluster
        self.forwarder = forwarder
        self.shutdownGracePeriod = shutdownGracePeriod
        self.bitespeedCompat = bitespeedCompat
        self.engine = engine
        self.access = access
        self.metrics = metrics
        if !access.isEnabled { role = .admin }
        self.maxInFlight = maxInFlight
        self.maxLineBytes = maxLineBytes
        self.logger = logger
    }

    private var owed: UInt64 { nextSequence - nextToWrite }

    /// Whether every request received has been answered (for tests, which wait for it).
    var owesNothing: Bool { owed == 0 }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        access.unregister(context.channel)
        self.context = nil
    }

    // MARK: - Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard closeAfter == nil, !draining else { return }
        switch unwrapInboundIn(data) {
        case .tooLong:
            let sequence = take()
            closeAfter = sequence
            let problem = Problem(
                status: 413, title: "Line too long",
                detail: "a line must be at most \(maxLineBytes) bytes; closing the connection"
            )
            metrics.recordRequest(.line, op: "invalid", status: 413, duration: .zero)
            complete(sequence, LineRequest.errorLine(id: nil, problem))
        case .line(let line):
            if line.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
            let request = line.withUnsafeReadableBytes { LineRequest(line: $0) }
            dispatch(request, line: line, sequence: take())
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        submitGathered()
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    private func take() -> UInt64 {
        defer { nextSequence += 1 }
        return nextSequence
    }

    private func dispatch(_ request: LineRequest, line: ByteBuffer, sequence: UInt64) {
        let id = request.id
        let op = request.operationName
        let started = ContinuousClock.now
        let metrics = self.metrics
        // Every answer goes through here or through `deliver`, so each request is counted once.
        func finish(_ bytes: [UInt8], status: Int) {
            metrics.recordRequest(.line, op: op, status: status, duration: ContinuousClock.now - started)
            complete(sequence, withSeq(bytes))
        }
        if case .success(.auth(let token)) = request.operation {
            let (bytes, status) = authenticate(token, id: id, sequence: sequence)
            finish(bytes, status: status)
            return
        }
        // Authentication comes first: an unauthenticated connection learns nothing else, not even
        // whether its line was well formed.
        guard let role else {
            let problem = Problem(
                status: 401, title: "Unauthorized",
                detail: "send {\"op\":\"auth\",\"token\":\"...\"} first: this server needs a token"
            )
            finish(LineRequest.errorLine(id: id, problem), status: problem.statusCode)
            return
        }
        if case .success(let operation) = request.operation, operation.requiredRole > role {
            let problem = Problem(
                status: 403, title: "Forbidden",
                detail: "this operation needs the \(operation.requiredRole) role; the token has \(role)"
            )
            finish(LineRequest.errorLine(id: id, problem), status: problem.statusCode)
            return
        }
        // Cluster mode (SPEC.md section 17): only `ping` before the server has caught up with the log; a
        // change on a follower goes to the leader, and during an election it is refused.
        if let cluster, case .success(let operation) = request.operation, op != "ping" {
            func refuse(_ title: String, _ detail: String) {
                var problem = Problem(status: 503, title: title, detail: detail)
                problem.retryAfter = 1
                finish(LineRequest.errorLine(id: id, problem), status: problem.statusCode)
            }
            switch cluster.admission(writes: operation.writes) {
            case .serve:
                break
            case .refuse(let title, let detail):
                return refuse(title, detail)
            case .forward(let leader, _, let tcp?) where !tcp.isEmpty:
                return forward(
                    Array(line.readableBytesView), id: id, op: op, sequence: sequence, started: started,
                    leader: leader, address: tcp
                )
            case .forward(let leader, _, _):
                return refuse(
                    "Not the leader",
                    "this server does not accept changes, and the leader \(leader) advertises no line-protocol address"
                )
            }
        }
        switch request.operation {
        case .failure(let problem):
            finish(LineRequest.errorLine(id: id, problem), status: problem.statusCode)
        case .success(.auth):
            break
        case .success(.ping):
            finish(LineRequest.answerLine(id: id, member: "ok") { $0.raw("true") }, status: 200)
        case .success(.identify(let identify, let dryRun)):
            var head = LineRequest.answerHead(id: id, member: "contact")
            head.bitespeedCompat = bitespeedCompat
            gather(.identify(identify, dryRun: dryRun, head: head), sequence, id: id, op: op, started: started,
                   minSeq: request.minSeq)
        case .success(.lookup(let email, let phoneNumber)):
            let head = LineRequest.answerHead(id: id, member: "profiles")
            gather(.lookup(email: email, phoneNumber: phoneNumber, head: head), sequence, id: id, op: op, started: started,
                   minSeq: request.minSeq)
        case .success(.get(let contactId)):
            gather(.contact(id: contactId), sequence, id: id, op: op, started: started, minSeq: request.minSeq)
        }
    }

    /// A request for the engine, kept until the read ends, and what its answer needs.
    private struct Gathered {
        var request: IdentityEngine.BatchedRequest
        var sequence: UInt64
        var id: JSONValue?
        var op: String
        var started: ContinuousClock.Instant
    }

    private func gather(
        _ request: IdentityEngine.BatchedRequest, _ sequence: UInt64, id: JSONValue?, op: String,
        started: ContinuousClock.Instant, minSeq: UInt64? = nil
    ) {
        let gathered = Gathered(request: request, sequence: sequence, id: id, op: op, started: started)
        // Read your writes (SPEC.md section 17): a request whose event is not applied here yet waits for
        // it, at most 5 seconds, and goes to the engine alone; the others do not wait behind it. A server
        // alone has applied every event it numbered, so there `minSeq` is only checked.
        guard let minSeq, cluster != nil, engine.publishedSeq < minSeq, let context else {
            self.gathered.append(gathered)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let engine = self.engine
        Task {
            let problem = await ReadYourWrites.problem(waitingFor: minSeq, on: engine)
            eventLoop.execute {
                let handler = handler.value
                if let problem {
                    handler.metrics.recordRequest(.line, op: op, status: 503, duration: ContinuousClock.now - started)
                    handler.complete(sequence, handler.withSeq(LineRequest.errorLine(id: gathered.id, problem)))
                    handler.flushIfNeeded()
                } else {
                    handler.gathered.append(gathered)
                    handler.submitGathered()
                }
            }
        }
    }

    /// Hands every engine request of this read to the engine in one call; their answers come back
    /// together, in one hop to this event loop, once what they report is durable.
    private func submitGathered() {
        guard !gathered.isEmpty, let context else { return }
        let pending = gathered
        gathered.removeAll(keepingCapacity: true)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        engine.submit(pending.map(\.request)) { answers in
            // The engine's thread is the busiest one: it only notes the time. The answer lines and the
            // metrics are made on this event loop.
            let finished = ContinuousClock.now
            eventLoop.execute { handler.value.deliver(pending, answers, finished: finished) }
        }
    }

    /// Writes the answers of one engine call in order, counts each request, and flushes once.
    private func deliver(
        _ pending: [Gathered], _ answers: [IdentityEngine.BatchedAnswer], finished: ContinuousClock.Instant
    ) {
        for (request, answer) in zip(pending, answers) {
            let (bytes, status) = self.answer(answer, id: request.id)
            metrics.recordRequest(.line, op: request.op, status: status, duration: finished - request.started)
            complete(request.sequence, withSeq(bytes))
        }
        flushIfNeeded()
    }

    /// Sends a change to the leader and writes its answer in this request's place in the order.
    private func forward(
        _ line: [UInt8], id: JSONValue?, op: String, sequence: UInt64, started: ContinuousClock.Instant,
        leader: String, address: String
    ) {
        guard let forwarder = self.forwarder, let eventLoop = context?.eventLoop else { return }
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let token = self.token
        Task { [forwarder, handler, eventLoop, token] in
            let answer = await forwarder.forward(line: line, id: id, token: token, leader: leader, to: address)
            let status = LineProtocolHandler.status(of: answer)
            eventLoop.execute {
                handler.value.relayed(answer, status: status, op: op, sequence: sequence, started: started)
            }
        }
    }

    private func relayed(_ answer: [UInt8], status: Int, op: String, sequence: UInt64, started: ContinuousClock.Instant) {
        metrics.recordRequest(.line, op: op, status: status, duration: ContinuousClock.now - started)
        complete(sequence, answer)
        flushIfNeeded()
    }

    /// The status of an answer line of ours: an error's own, else 200. `,"error":{` and `"status":` cannot
    /// occur inside a JSON string (a quote in one is escaped), so finding them finds the members.
    static func status(of answer: [UInt8]) -> Int {
        guard let error = answer.firstRange(of: Array(#","error":{"#.utf8)),
            let status = answer[error.upperBound...].firstRange(of: Array(#""status":"#.utf8))
        else { return 200 }
        let digits = answer[status.upperBound...].prefix { (0x30...0x39).contains($0) }
        return Int(String(decoding: digits, as: UTF8.self)) ?? 200
    }

    /// In cluster mode, `answer` with `"seq": N`, the newest event it reflects (SPEC.md section 17).
    private func withSeq(_ answer: [UInt8]) -> [UInt8] {
        guard cluster != nil, answer.count >= 2, answer[answer.count - 2] == UInt8(ascii: "}") else { return answer }
        var bytes = answer
        bytes.removeLast(2)
        bytes.append(contentsOf: Array(",\"seq\":\(engine.publishedSeq)}\n".utf8))
        return bytes
    }

    /// An answer line from an engine answer, and its status.
    private func answer(_ answer: IdentityEngine.BatchedAnswer, id: JSONValue?) -> ([UInt8], Int) {
        switch answer {
        case .written(var writer):
            writer.raw("}\n")
            return (writer.bytes, 200)
        case .contact(let contact):
            return (LineRequest.answerLine(id: id, member: "record") { contact.writeJSON(into: &$0) }, 200)
        case .failed(let error):
            var problem = Problem(error)
            if cluster != nil, problem.statusCode == 503 { problem.retryAfter = 1 }
            return (LineRequest.errorLine(id: id, problem), problem.statusCode)
        }
    }

    /// `{"op":"auth"}`: takes the token's role, or counts a failure; the fifth closes the connection.
    private func authenticate(_ token: [UInt8], id: JSONValue?, sequence: UInt64) -> ([UInt8], Int) {
        let ok = LineRequest.answerLine(id: id, member: "ok") { $0.raw("true") }
        guard access.isEnabled else { return (ok, 200) }
        if let granted = access.role(of: token), let context {
            role = granted
            self.token = token
            access.register(context.channel, token: token, role: granted)
            return (ok, 200)
        }
        failedAuths += 1
        let closing = failedAuths >= Self.maxFailedAuths
        if closing { closeAfter = sequence }
        let problem = Problem(
            status: 401, title: "Unauthorized",
            detail: closing ? "unknown token; too many failed attempts, closing the connection" : "unknown token"
        )
        return (LineRequest.errorLine(id: id, problem), 401)
    }

    // MARK: - Answers

    private func complete(_ sequence: UInt64, _ bytes: [UInt8]) {
        guard let context else { return }
        guard sequence == nextToWrite else {
            completedEarly[sequence] = bytes
            return
        }
        var buffer = output ?? context.channel.allocator.buffer(capacity: max(bytes.count, 1024))
        buffer.writeBytes(bytes)
        nextToWrite += 1
        var closing = closeAfter == sequence
        while !closing, let next = completedEarly.removeValue(forKey: nextToWrite) {
            buffer.writeBytes(next)
            closing = closeAfter == nextToWrite
            nextToWrite += 1
        }
        output = buffer
        if closing || (draining && owed == 0) {
            close(context)
        } else {
            resumeReadingIfPossible()
        }
    }

    /// Writes every answer gathered since the last flush as one buffer, and flushes it.
    private func flushIfNeeded() {
        guard let context, let buffer = output else { return }
        output = nil
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Delivers what is gathered, then closes the connection.
    private func close(_ context: ChannelHandlerContext) {
        let buffer = output ?? context.channel.allocator.buffer(capacity: 0)
        output = nil
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        let channel = context.channel
        promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: - Backpressure, idleness, shutdown

    func read(context: ChannelHandlerContext) {
        if owed >= UInt64(maxInFlight) || !context.channel.isWritable || closeAfter != nil || draining {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible()
        context.fireChannelWritabilityChanged()
    }

    private func resumeReadingIfPossible() {
        guard readHeld, let context, owed < UInt64(maxInFlight), context.channel.isWritable,
            closeAfter == nil, !draining
        else { return }
        readHeld = false
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            logger.debug("closing an idle line-protocol connection", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            context.close(promise: nil)
        } else if event is ChannelShouldQuiesceEvent || event as? ChannelEvent == .inputClosed {
            // The client has sent its last request (`nc -q1` half-closes) or the server is stopping:
            // deliver every answer owed, then close; a client that does not collect them in the grace
            // period is closed anyway, so that shutdown cannot hang on it.
            draining = true
            submitGathered()
            if owed == 0 {
                close(context)
            } else if event is ChannelShouldQuiesceEvent {
                let channel = context.channel
                context.eventLoop.scheduleTask(in: shutdownGracePeriod) { channel.close(promise: nil) }
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // One bad client is not news: a flood of failed TLS handshakes or resets must not flood
        // the log (or fill the pipe of whoever reads it). Debug level shows them when asked.
        logger.debug("line-protocol connection error; closing it", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}

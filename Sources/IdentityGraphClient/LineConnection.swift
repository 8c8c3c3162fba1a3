import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import NIOTLS

/// One request on its way to the wire: its members after the `id` the connection gives it, and
/// where its answer goes.
struct OutgoingRequest: Sendable {
    /// `,"name":value` members, or nothing.
    var members: [UInt8]
    var answer: EventLoopPromise<[UInt8]>
}

/// Asks a connection to close once every request written on it has been answered.
struct CloseWhenAnswered: Sendable {}

/// One TCP (or TLS) connection to a server's line port.
final class LineConnection: Sendable {
    let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Connects and, with TLS, finishes the handshake, both within `timeout`.
    static func open(
        host: String, port: Int, tls: NIOSSLContext?, serverHostname: String?, timeout: Duration,
        group: any EventLoopGroup
    ) async throws -> LineConnection {
        let ready = group.any().makePromise(of: Void.self)
        let timeoutAmount = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
            + timeout.components.attoseconds / 1_000_000_000)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeoutAmount)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: tls, serverHostname: serverHostname)
                            )
                        }
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(LineBasedFrameDecoder()),
                            AnswerMatcher(ready: ready, waitsForHandshake: tls != nil),
                        ])
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            ready.fail(error)
            throw error
        }
        // A server that accepts and never finishes the handshake must not hold the caller forever. Judged
        // on the channel's loop, by the matcher: a connection that got ready in time stays open even when
        // the caller has not resumed yet to cancel this (a busy task pool can take longer than the timeout).
        let deadline = channel.eventLoop.scheduleTask(in: timeoutAmount) {
            if let matcher = try? channel.pipeline.syncOperations.handler(type: AnswerMatcher.self), matcher.isReady {
                return
            }
            ready.fail(IdentityGraphClient.ConnectionError(.cannotConnect, "the TLS handshake did not finish in time"))
            channel.close(promise: nil)
        }
        do {
            try await ready.futureResult.get()
            deadline.cancel()
        } catch {
            deadline.cancel()
            channel.close(promise: nil)
            throw error
        }
        return LineConnection(channel: channel)
    }

    /// Writes one request and waits for its answer line (without its line break).
    func send(_ members: [UInt8]) async throws -> [UInt8] {
        let answer = channel.eventLoop.makePromise(of: [UInt8].self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            // Ignored when the matcher has already failed the answer with its own reason.
            answer.fail(IdentityGraphClient.ConnectionError(.connectionLost, "the connection failed: \(error)"))
        }
        channel.write(OutgoingRequest(members: members, answer: answer), promise: written)
        return try await answer.futureResult.get()
    }

    /// Closes once every request written has been answered; later requests fail.
    func closeWhenAnswered() async {
        channel.triggerUserOutboundEvent(CloseWhenAnswered(), promise: nil)
        try? await channel.closeFuture.get()
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Gives each request its `id`, writes it, and hands each answer line to the request at the front
/// of the queue: the server answers in request order (SPEC.md section 7), and the echoed `id`
/// confirms it.
private final class AnswerMatcher: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutgoingRequest
    typealias OutboundOut = ByteBuffer

    private let ready: EventLoopPromise<Void>
    private let waitsForHandshake: Bool
    /// Whether the connection got ready (connected, and with TLS, shook hands); read on the channel's loop.
    private(set) var isReady = false
    private var waiting = CircularBuffer<(id: UInt64, answer: EventLoopPromise<[UInt8]>)>()
    private var nextID: UInt64 = 1
    private var flushScheduled = false
    private var closeRequested = false
    /// What ended the connection, once something did: later requests fail with it.
    private var failure: IdentityGraphClient.ConnectionError?
    /// The last error seen, to say why the connection was lost.
    private var lastError: (any Error)?

    init(ready: EventLoopPromise<Void>, waitsForHandshake: Bool) {
        self.ready = ready
        self.waitsForHandshake = waitsForHandshake
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitsForHandshake {
            isReady = true
            ready.succeed()
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            isReady = true
            ready.succeed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let refusal = failure ?? (closeRequested ? Self.closedError : nil) {
            request.answer.fail(refusal)
            promise?.fail(refusal)
            return
        }
        let id = nextID
        nextID += 1
        var buffer = context.channel.allocator.buffer(capacity: request.members.count + 24)
        buffer.writeString("{\"id\":\(id)")
        buffer.writeBytes(request.members)
        buffer.writeString("}\n")
        waiting.append((id, request.answer))
        context.write(wrapOutboundOut(buffer), promise: promise)
        // The writes of callers that arrive together go out in one flush.
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                context.flush()
            }
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is CloseWhenAnswered else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        closeRequested = true
        if waiting.isEmpty { context.close(promise: nil) }
        promise?.succeed()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = Array(unwrapInboundIn(data).readableBytesView)
        guard let (id, answer) = waiting.popFirst() else {
            fail(context, AnswerLine.unexpected("an answer line with no request waiting for one"))
            return
        }
        guard Self.echoes(id, line) else {
            let error = AnswerLine.unexpected("an answer whose id is not \(id), the request's next in line")
            answer.fail(error)
            fail(context, error)
            return
        }
        answer.succeed(line)
        if closeRequested, waiting.isEmpty { context.close(promise: nil) }
    }

    /// Whether the answer's `id` is `id`, or `null` (the server could not read the request's).
    private static func echoes(_ id: UInt64, _ line: [UInt8]) -> Bool {
        let expected = Array("{\"id\":\(id)".utf8)
        // The server writes the id first; anything else is checked the long way.
        if line.starts(with: expected), line.count > expected.count,
            line[expected.count] == UInt8(ascii: ",") || line[expected.count] == UInt8(ascii: "}")
        {
            return true
        }
        guard let echo = JSONObjectMembers(line)?.member("id") else { return false }
        let text = line[echo.value]
        return text.elementsEqual("\(id)".utf8) || text.elementsEqual("null".utf8)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lastError = error
        ready.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let because = lastError.map { ": \($0)" } ?? ""
        let lost = failure ?? IdentityGraphClient.ConnectionError(
            .connectionLost, "the connection closed before the answer came\(because); the request may have been applied"
        )
        failure = lost
        ready.fail(IdentityGraphClient.ConnectionError(.cannotConnect, "the connection closed at once\(because)"))
        while let (_, answer) = waiting.popFirst() { answer.fail(lost) }
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ error: IdentityGraphClient.ConnectionError) {
        failure = error
        while let (_, answer) = waiting.popFirst() { answer.fail(error) }
        context.close(promise: nil)
    }

    private static let closedError = IdentityGraphClient.ConnectionError(.closed, "the client was closed")
}

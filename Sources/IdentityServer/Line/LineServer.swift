import IdentityGraph
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The line-protocol listener (SPEC.md section 7) as a service: binds, serves until a graceful
/// shutdown, then stops accepting, lets every connection collect the answers it is owed, and
/// returns.
public final class LineServer: Service, Sendable {
    private let engine: IdentityEngine
    private let configuration: ServerConfiguration
    private let access: AccessControl
    private let metrics: ServerMetrics
    private let sslContext: NIOSSLContext?
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress) async -> Void
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    public init(
        engine: IdentityEngine,
        configuration: ServerConfiguration,
        access: AccessControl = AccessControl(tokens: nil),
        metrics: ServerMetrics = ServerMetrics(),
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) throws {
        sslContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        self.engine = engine
        self.configuration = configuration
        self.access = access
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let engine = self.engine
        let configuration = self.configuration
        let logger = self.logger
        let access = self.access
        let metrics = self.metrics
        let sslContext = self.sslContext
        let connections = self.connections
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // A client may half-close after its last request and still read the answers.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    let idle = configuration.idleTimeout
                    if let sslContext {
                        // First in the pipeline: everything after it sees plain text. A client that never
                        // finishes its handshake is closed by the idle timeout like any silent one.
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        ConnectionCounter(metrics: metrics, transport: .line),
                        IdleStateHandler(readTimeout: nil, writeTimeout: nil, allTimeout: idle),
                        ByteToMessageHandler(LineFrameDecoder(maxLength: configuration.maxLineBytes)),
                        LineProtocolHandler(
                            engine: engine,
                            access: access,
                            metrics: metrics,
                            maxInFlight: configuration.maxInFlightPerConnection,
                            maxLineBytes: configuration.maxLineBytes,
                            logger: logger
                        ),
                    ])
                }
            }
            .bind(host: configuration.host, port: configuration.tcpPort)
            .get()
        if let address = server.localAddress { await onListening(address) }

        // Cancellation too: when the other listener fails to start, the service group cancels this one.
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await server.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            server.close(promise: nil)
        }
        try await drainConnections()
    }

    /// Asks every open connection to deliver what it owes and close; closes the rest after the
    /// grace period.
    private func drainConnections() async throws {
        let open = connections.withLockedValue { Array($0.values) }
        guard !open.isEmpty else { return }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        }
        let deadline = NIODeadline.now() + configuration.shutdownGracePeriod
        for channel in open {
            let remaining = deadline - .now()
            if remaining > .zero {
                let closed = channel.closeFuture
                let timeout = channel.eventLoop.scheduleTask(in: remaining) { channel.close(promise: nil) }
                try? await closed.get()
                timeout.cancel()
            } else {
                try? await channel.close()
            }
        }
    }
}

import IdentityGraph
import Logging
import NIOCore
import NIOExtras
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

    public init(
        engine: IdentityEngine,
        configuration: ServerConfiguration,
        access: AccessControl = AccessControl(tokens: nil),
        metrics: ServerMetrics = ServerMetrics(),
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) throws {
        sslContext = configuration.tls
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
        // On shutdown it closes the listener, asks every connection to finish (ChannelShouldQuiesceEvent)
        // and tells us once the last one has closed.
        let quiescing = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // A client may half-close after its last request and still read the answers.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
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
                            shutdownGracePeriod: configuration.shutdownGracePeriod,
                            bitespeedCompat: configuration.bitespeedCompat,
                            cluster: configuration.cluster,
                            forwarder: configuration.forwarder,
                            logger: logger
                        ),
                    ])
                }
            }
            .bind(host: configuration.host, port: configuration.tcpPort)
            .get()
        if let address = server.localAddress { await onListening(address) }

        // Cancellation too: when the other listener fails to start, the service group cancels this one.
        let drained = server.eventLoop.makePromise(of: Void.self)
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await server.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            quiescing.initiateShutdown(promise: drained)
        }
        // Each connection closes itself once it has delivered what it owes, or after the grace period.
        try? await drained.futureResult.get()
    }
}

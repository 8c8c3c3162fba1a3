import Hummingbird
import HummingbirdCore
import IdentityGraph
import Logging
import NIOCore
import ServiceLifecycle

/// Both listeners on one engine: the services the executable runs in one `ServiceGroup`.
public enum IdentityServer {
    /// The addresses actually bound, reported once both listeners are up.
    public struct Listening: Sendable {
        public var http: SocketAddress
        public var tcp: SocketAddress
    }

    /// The HTTP application: Hummingbird 2 with ``IdentityHTTPResponder``.
    public static func buildHTTPApplication(
        engine: IdentityEngine,
        configuration: ServerConfiguration,
        access: AccessControl = AccessControl(tokens: nil),
        metrics: ServerMetrics = ServerMetrics(),
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let channel = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionCounter(metrics: metrics, transport: .http)],
            idleTimeout: configuration.idleTimeout
        )
        let server = HTTPServerBuilder { responder in
            let http1 = HTTP1Channel(responder: responder, configuration: channel)
            guard let context = configuration.tls else { return http1 }
            return SharedTLSChannel(base: http1, context: context)
        }
        return Application(
            responder: IdentityHTTPResponder(
                engine: engine, maxBodyBytes: configuration.maxBodyBytes, heartbeat: configuration.changesHeartbeat,
                access: access, metrics: metrics, bitespeedCompat: configuration.bitespeedCompat,
                cluster: configuration.cluster, forwarder: configuration.forwarder
            ),
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.httpPort)),
            onServerRunning: { channel in
                if let address = channel.localAddress { await onListening(address) }
            },
            logger: logger
        )
    }

    /// The HTTP and line-protocol services, with `onListening` called once when both are bound.
    public static func services(
        engine: IdentityEngine,
        configuration: ServerConfiguration,
        access: AccessControl = AccessControl(tokens: nil),
        metrics: ServerMetrics = ServerMetrics(),
        logger: Logger,
        onListening: @escaping @Sendable (Listening) async -> Void
    ) throws -> [any Service] {
        let startup = StartupReport(onListening)
        let http = try buildHTTPApplication(
            engine: engine, configuration: configuration, access: access, metrics: metrics, logger: logger
        ) {
            await startup.bound(http: $0)
        }
        let tcp = try LineServer(
            engine: engine, configuration: configuration, access: access, metrics: metrics, logger: logger
        ) {
            await startup.bound(tcp: $0)
        }
        return [http, tcp] + (configuration.forwarder.map { [$0] } ?? [])
    }
}

/// Waits for both listeners to report their addresses, then reports them together.
private actor StartupReport {
    private let report: @Sendable (IdentityServer.Listening) async -> Void
    private var http: SocketAddress?
    private var tcp: SocketAddress?

    init(_ report: @escaping @Sendable (IdentityServer.Listening) async -> Void) {
        self.report = report
    }

    func bound(http address: SocketAddress) async {
        http = address
        await reportIfComplete()
    }

    func bound(tcp address: SocketAddress) async {
        tcp = address
        await reportIfComplete()
    }

    private func reportIfComplete() async {
        guard let http, let tcp else { return }
        await report(IdentityServer.Listening(http: http, tcp: tcp))
    }
}

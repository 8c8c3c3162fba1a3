import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// A throwaway self-signed certificate for `localhost` and 127.0.0.1, made once per test run with
/// the openssl command-line tool.
enum TestCertificate {
    struct Files: Sendable {
        var certificate: String
        var key: String
        /// A second key that belongs to no certificate here, for mismatch tests.
        var otherKey: String
    }

    static let files: Files = {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("identity-graph-tls-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = Files(
            certificate: directory + "/cert.pem", key: directory + "/key.pem", otherKey: directory + "/other.pem"
        )
        openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files.key, "-out", files.certificate,
            "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", files.otherKey])
        return files
    }()

    /// The `serve` flags that turn TLS on with this certificate.
    static var serveFlags: [String] { ["--tls-cert", files.certificate, "--tls-key", files.key] }

    private static func openssl(_ arguments: [String]) {
        let result = try! runProcess(URL(fileURLWithPath: "/usr/bin/openssl"), arguments, timeout: 120)
        precondition(result.status == 0, "openssl \(arguments.first ?? "") failed: \(result.output)")
    }
}

/// A plain-text port on loopback that carries each connection to a TLS port through a real TLS
/// client (swift-nio-ssl) that trusts only ``TestCertificate``: the tests' plain sockets and HTTP
/// exchanges then talk TLS to the server unchanged.
final class TLSTunnel: Sendable {
    let port: Int
    private let listener: any Channel

    init(to target: Int) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestCertificate.files.certificate))
        configuration.minimumTLSVersion = .tlsv12
        // The plain side has already hung up when the tunnel closes: waiting for the server's
        // close_notify would only delay the test.
        configuration.shutdownTimeout = .milliseconds(100)
        let context = try NIOSSLContext(configuration: configuration)
        listener = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: context, serverHostname: "localhost")
                            )
                            try outbound.pipeline.syncOperations.addHandler(Relay(partner: inbound))
                        }
                    }
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { outbound in inbound.pipeline.addHandler(Relay(partner: outbound)) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .wait()
        port = listener.localAddress!.port!
    }

    deinit {
        listener.close(promise: nil)
    }
}

/// Copies what one channel reads to its partner, and closes the partner when it closes.
private final class Relay: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let partner: any Channel

    init(partner: any Channel) {
        self.partner = partner
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed { partner.close(mode: .output, promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
        partner.close(promise: nil)
    }
}

import IdentityCluster
import NIOCore
import NIOSSL

/// Settings of the two listeners.
public struct ServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port.
    public var httpPort: Int
    /// 0 picks a free port.
    public var tcpPort: Int
    /// The largest accepted HTTP body, in bytes.
    public var maxBodyBytes: Int
    /// The longest accepted line of the line protocol, in bytes, the line break not counted.
    public var maxLineBytes: Int
    /// A connection with no traffic for this long is closed (both listeners); a half-sent request
    /// counts as no traffic once its bytes stop coming.
    public var idleTimeout: TimeAmount
    /// Line-protocol requests one connection may have in flight before the server stops reading
    /// from it (backpressure), so that a client that never reads cannot make the server buffer
    /// without bound. Answers now come back from the engine's thread after the read that asked for
    /// them, so a connection's socket stays writable, and reading goes on, until they arrive: this
    /// count, not writability, is what bounds a flood. 512 answers of a large profile (5 KB) are
    /// 2.5 MB; a pipelining client needs far fewer in flight to keep the engine busy.
    public var maxInFlightPerConnection: Int
    /// How long a graceful shutdown waits for line-protocol clients to collect their answers.
    public var shutdownGracePeriod: TimeAmount
    /// The longest a change stream (Server-Sent Events) stays silent before a comment line.
    public var changesHeartbeat: Duration
    /// When set, both listeners speak TLS only (SPEC.md section 14), with this one context: built
    /// once, by ``tls(certificateFile:keyFile:)``, and shared.
    public var tls: NIOSSLContext?
    /// Identify answers also carry `primaryContatctId` (`--bitespeed-compat`, SPEC.md section 6).
    public var bitespeedCompat = false
    /// Cluster mode (SPEC.md section 17): this server's part in the cluster, `nil` for a server alone.
    public var cluster: ClusterNode?
    /// Cluster mode: how a follower relays changes to the leader (a service the server runs beside).
    public var forwarder: ClusterForwarder?

    public init(
        host: String = "127.0.0.1",
        httpPort: Int = 8080,
        tcpPort: Int = 7070,
        maxBodyBytes: Int = 65_536,
        maxLineBytes: Int = 65_536,
        idleTimeout: TimeAmount = .seconds(60),
        maxInFlightPerConnection: Int = 512,
        shutdownGracePeriod: TimeAmount = .seconds(10),
        changesHeartbeat: Duration = .seconds(15),
        tls: NIOSSLContext? = nil
    ) {
        self.host = host
        self.httpPort = httpPort
        self.tcpPort = tcpPort
        self.maxBodyBytes = maxBodyBytes
        self.maxLineBytes = maxLineBytes
        self.idleTimeout = idleTimeout
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.shutdownGracePeriod = shutdownGracePeriod
        self.changesHeartbeat = changesHeartbeat
        self.tls = tls
    }

    /// Mozilla's "intermediate" profile: TLS 1.3 with its own suites (always on, not configurable
    /// in BoringSSL), and on TLS 1.2 only ECDHE key exchange (forward secrecy) with AEAD ciphers:
    /// no static RSA, no CBC, no SHA-1. TLS 1.0 and 1.1 are off.
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ]

    /// The TLS context of both listeners, from PEM files, checked now: an unreadable or malformed
    /// file, or a key that does not belong to the certificate, throws a message naming the file.
    public static func tls(certificateFile: String, keyFile: String) throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw TLSSetupError(message: "\(certificateFile): not a readable PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw TLSSetupError(message: "\(certificateFile): holds no certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw TLSSetupError(message: "\(keyFile): not a readable PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.cipherSuites = tls12CipherSuites.joined(separator: ":")
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(message: "\(keyFile) does not match the certificate in \(certificateFile) (\(error))")
        }
    }
}

/// TLS files that cannot be used, with a message naming the file.
public struct TLSSetupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

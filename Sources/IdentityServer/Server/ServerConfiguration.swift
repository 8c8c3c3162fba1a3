import NIOCore

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
    /// without bound.
    public var maxInFlightPerConnection: Int
    /// How long a graceful shutdown waits for line-protocol clients to collect their answers.
    public var shutdownGracePeriod: TimeAmount
    /// The longest a change stream (Server-Sent Events) stays silent before a comment line.
    public var changesHeartbeat: Duration

    public init(
        host: String = "127.0.0.1",
        httpPort: Int = 8080,
        tcpPort: Int = 7070,
        maxBodyBytes: Int = 65_536,
        maxLineBytes: Int = 65_536,
        idleTimeout: TimeAmount = .seconds(60),
        maxInFlightPerConnection: Int = 4096,
        shutdownGracePeriod: TimeAmount = .seconds(10),
        changesHeartbeat: Duration = .seconds(15)
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
    }
}

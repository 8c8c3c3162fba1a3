import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A client of an identity-graph server's line protocol (SPEC.md section 7), for Swift applications.
///
/// One client holds one TCP connection, TLS when ``Configuration/tls`` is set, and shares it among
/// every call: calls from many tasks are pipelined on it, each request line gets an `id` of the
/// client's, and each answer (the server answers in request order) goes back to its caller. At
/// most ``Configuration/maxInFlight`` requests are on the wire at a time; the calls beyond wait.
///
/// The client connects on the first call (or ``connect()``), and sends ``Configuration/token`` as
/// `{"op":"auth"}` before anything else on every connection. When the connection is lost, the calls
/// waiting for answers fail with ``ConnectionError`` (``ConnectionError/Reason/connectionLost``):
/// an identify may have been applied, so the client never sends it again by itself. The next call
/// connects again, after a back-off (``ReconnectBackoff``) when attempts keep failing.
///
/// A request the server refuses throws ``ServerError`` with the server's status and detail.
///
/// Cancelling a call's task does not withdraw the call: once written, an identify may be applied,
/// so the call waits for its answer (or a ``ConnectionError``) like any other.
public final class IdentityGraphClient: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// TLS, when the server was started with `--tls-cert` and `--tls-key`.
        public var tls: TLSConfiguration?
        /// The name the server's certificate must carry; by default ``host``, unless that is an
        /// IP address (then the certificate is checked against the address).
        public var serverHostname: String?
        /// A bearer token (SPEC.md section 14), for a server started with `--auth-tokens`.
        public var token: String?
        /// Requests on the wire at a time, at least 1; the server reads at most 512 per connection
        /// ahead of its answers.
        public var maxInFlight: Int
        /// For connecting, the TLS handshake included.
        public var connectTimeout: Duration
        public var reconnectBackoff: ReconnectBackoff

        public init(
            host: String, port: Int, tls: TLSConfiguration? = nil, serverHostname: String? = nil,
            token: String? = nil, maxInFlight: Int = 512, connectTimeout: Duration = .seconds(10),
            reconnectBackoff: ReconnectBackoff = ReconnectBackoff()
        ) {
            self.host = host
            self.port = port
            self.tls = tls
            self.serverHostname = serverHostname
            self.token = token
            self.maxInFlight = maxInFlight
            self.connectTimeout = connectTimeout
            self.reconnectBackoff = reconnectBackoff
        }
    }

    public let configuration: Configuration
    private let group: any EventLoopGroup
    private let sslContext: NIOSSLContext?
    private let serverHostname: String?
    private let inFlight: InFlightLimit
    private let state = NIOLockedValueBox(State())

    private enum Phase {
        case idle
        /// One attempt, shared by every call that needs the connection meanwhile.
        case connecting(Task<LineConnection, any Error>)
        case connected(LineConnection)
        case closed
    }

    private struct State {
        var phase = Phase.idle
        /// Consecutive failed attempts to connect.
        var failures = 0
        /// No attempt before this instant (the back-off).
        var notBefore = ContinuousClock.now
    }

    /// Throws only when `configuration.tls` cannot be used (a certificate file that cannot be read,
    /// say); the client connects on its first call.
    public init(
        configuration: Configuration, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.configuration = configuration
        group = eventLoopGroup
        sslContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        let isAddress = (try? SocketAddress(ipAddress: configuration.host, port: 0)) != nil
        serverHostname = configuration.serverHostname ?? (isAddress ? nil : configuration.host)
        inFlight = InFlightLimit(limit: configuration.maxInFlight)
    }

    public convenience init(
        host: String, port: Int, tls: TLSConfiguration? = nil, serverHostname: String? = nil, token: String? = nil
    ) throws {
        try self.init(
            configuration: Configuration(host: host, port: port, tls: tls, serverHostname: serverHostname, token: token)
        )
    }

    deinit {
        if case .connected(let connection) = state.withLockedValue({ $0.phase }) { connection.close() }
    }

    // MARK: - Operations

    /// identify (SPEC.md section 4): the profile the email and phone number belong to, creating and
    /// merging as needed. With `dryRun`, what identify would answer, and nothing is written.
    public func identify(email: String? = nil, phoneNumber: String? = nil, dryRun: Bool = false) async throws
        -> IdentifyAnswer
    {
        var members = RequestMembers()
        if let email { members.add("email", string: email) }
        if let phoneNumber { members.add("phoneNumber", string: phoneNumber) }
        if dryRun { members.add("dryRun", raw: "true") }
        return try IdentifyAnswer(AnswerLine(await exchange(members.bytes)))
    }

    /// The profiles that hold the email or the phone number (none, one or two), by primary id;
    /// writes nothing (SPEC.md section 9).
    public func lookup(email: String? = nil, phoneNumber: String? = nil) async throws -> [Profile] {
        var members = RequestMembers()
        members.add("op", string: "lookup")
        if let email { members.add("email", string: email) }
        if let phoneNumber { members.add("phoneNumber", string: phoneNumber) }
        return try AnswerLine(await exchange(members.bytes)).member("profiles") { value in
            guard let array = value as? [Any] else { return nil }
            let profiles = array.compactMap(Profile.init(json:))
            return profiles.count == array.count ? profiles : nil
        }
    }

    /// The Contact record with this id (op `get`); an unknown id throws ``ServerError`` 404.
    public func contact(id: Int) async throws -> Contact {
        var members = RequestMembers()
        members.add("op", string: "get")
        members.add("contactId", raw: String(id))
        return try AnswerLine(await exchange(members.bytes)).member("record", as: Contact.init(json:))
    }

    /// Asks the server for an answer that needs no storage.
    public func ping() async throws {
        var members = RequestMembers()
        members.add("op", string: "ping")
        let ok = try AnswerLine(await exchange(members.bytes)).member("ok") { $0 as? Bool }
        guard ok else { throw AnswerLine.unexpected("a ping answer without \"ok\": true") }
    }

    /// Connects (and authenticates) now, rather than on the first call; for an application that
    /// wants to know at start that the server is there.
    public func connect() async throws {
        _ = try await connection()
    }

    /// Sends one request line, a JSON object, and returns the server's answer line (without its line
    /// break), error lines included: for relaying lines to a server as they are.
    ///
    /// Every member of `line` but `id` goes out as it is, byte for byte. The client puts its own `id`
    /// on the wire, and the answer comes back with the line's own `id` in its place (`null` when
    /// the line has none), every other member as the server wrote it.
    ///
    /// A line that is not one JSON object, or whose `id` is neither a string nor a number, is not
    /// sent: it throws ``ServerError`` 400, as the server would answer it.
    public func send(line: [UInt8]) async throws -> [UInt8] {
        guard let request = JSONObjectMembers(line) else {
            throw ServerError(status: 400, title: "Invalid request", detail: "the line is not one JSON object")
        }
        let callerID = request.member("id").map { Array(line[$0.value]) } ?? Array("null".utf8)
        guard let first = callerID.first,
            first == UInt8(ascii: "\"") || first == UInt8(ascii: "-")
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) || callerID == Array("null".utf8)
        else {
            throw ServerError(status: 400, title: "Invalid request", detail: "id: must be a string or a number")
        }
        var members: [UInt8] = []
        for member in request.members where member.key != "id" {
            members.append(UInt8(ascii: ","))
            // Line breaks can only be whitespace between tokens here (the scan refuses them in
            // strings), and one would end the line on the wire.
            members.append(contentsOf: line[member.text].map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 })
        }
        let answer = try await exchange(members)
        guard let answerMembers = JSONObjectMembers(answer) else { return answer }
        var relayed = Array("{\"id\":".utf8) + callerID
        for member in answerMembers.members where member.key != "id" {
            relayed.append(UInt8(ascii: ","))
            relayed.append(contentsOf: answer[member.text])
        }
        relayed.append(UInt8(ascii: "}"))
        return relayed
    }

    /// Stops taking calls, lets the calls already on the wire get their answers, then closes the
    /// connection. Calls made afterwards throw ``ConnectionError`` (``ConnectionError/Reason/closed``).
    public func close() async {
        let previous = state.withLockedValue { state in
            defer { state.phase = .closed }
            return state.phase
        }
        switch previous {
        case .connected(let connection):
            await connection.closeWhenAnswered()
        case .connecting(let attempt):
            // The attempt sees that the client is closed and closes what it opened.
            attempt.cancel()
            _ = try? await attempt.value
        case .idle, .closed:
            break
        }
    }

    // MARK: - The connection

    private func exchange(_ members: [UInt8]) async throws -> [UInt8] {
        await inFlight.acquire()
        defer { inFlight.release() }
        return try await connection().send(members)
    }

    private enum Step {
        case use(LineConnection)
        case wait(Task<LineConnection, any Error>)
    }

    private func connection() async throws -> LineConnection {
        let step = try state.withLockedValue { state throws(ConnectionError) -> Step in
            // A connection that has closed while its close callback (``lost(_:)``) has not run yet is not
            // used: the call connects again, as it will once the callback has run.
            if case .connected(let connection) = state.phase, !connection.channel.isActive {
                state.phase = .idle
                state.notBefore = .now
            }
            switch state.phase {
            case .closed:
                throw Self.closedError
            case .connected(let connection):
                return .use(connection)
            case .connecting(let attempt):
                return .wait(attempt)
            case .idle:
                let wait = max(.zero, state.notBefore - .now)
                let attempt = Task { try await self.establish(after: wait) }
                state.phase = .connecting(attempt)
                return .wait(attempt)
            }
        }
        switch step {
        case .use(let connection): return connection
        case .wait(let attempt): return try await attempt.value
        }
    }

    private func establish(after wait: Duration) async throws -> LineConnection {
        do {
            if wait > .zero {
                do {
                    try await Task.sleep(for: wait)
                } catch {
                    throw Self.closedError
                }
            }
            let connection = try await open()
            let closed = state.withLockedValue { state in
                if case .closed = state.phase { return true }
                state.phase = .connected(connection)
                state.failures = 0
                return false
            }
            if closed {
                connection.close()
                throw Self.closedError
            }
            // Registered once the state holds the connection: a connection that is already closed
            // runs this at once, and the next call connects again.
            connection.channel.closeFuture.whenComplete { [weak self] _ in self?.lost(connection) }
            return connection
        } catch {
            state.withLockedValue { state in
                state.failures += 1
                state.notBefore = .now + configuration.reconnectBackoff.delay(afterFailures: state.failures)
                if case .connecting = state.phase { state.phase = .idle }
            }
            throw error
        }
    }

    /// Connects, shakes hands and authenticates.
    private func open() async throws -> LineConnection {
        let host = configuration.host
        let port = configuration.port
        let connection: LineConnection
        do {
            connection = try await LineConnection.open(
                host: host, port: port, tls: sslContext, serverHostname: serverHostname,
                timeout: configuration.connectTimeout, group: group
            )
        } catch {
            throw ConnectionError(.cannotConnect, "cannot connect to \(host):\(port): \(error)")
        }
        guard let token = configuration.token else { return connection }
        var members = RequestMembers()
        members.add("op", string: "auth")
        members.add("token", string: token)
        do {
            _ = try AnswerLine(await connection.send(members.bytes))
        } catch let error as ServerError {
            connection.close()
            throw error
        } catch {
            connection.close()
            throw ConnectionError(.cannotConnect, "cannot authenticate with \(host):\(port): \(error)")
        }
        return connection
    }

    private func lost(_ connection: LineConnection) {
        state.withLockedValue { state in
            guard case .connected(let current) = state.phase, current === connection else { return }
            state.phase = .idle
            state.notBefore = .now
        }
    }

    private static let closedError = ConnectionError(.closed, "the client was closed")
}

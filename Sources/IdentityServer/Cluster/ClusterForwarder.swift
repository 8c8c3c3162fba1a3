import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import IdentityCluster
import IdentityGraph
import IdentityGraphClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle

/// Relays the changes a follower receives to the leader and the leader's answers back (SPEC.md section
/// 17), on both transports: an HTTP request goes as it came (method, path, query, body, the client's
/// own `Authorization`, so that the leader checks the token too) through one shared HTTP client; a line
/// goes through an ``IdentityGraphClient`` of the client's token, one per token and leader, which
/// pipelines every line sent to it on one connection.
///
/// A forwarded HTTP request carries `Identity-Graph-Forwarded-By`, and a server never forwards such a
/// request again: one that no longer leads answers `503`, so that a request cannot circle between
/// servers whose views of the leader differ for a moment.
///
/// When the leader cannot be reached, or does not answer within ``timeout``, the client gets `503` with
/// `Retry-After`: a change whose answer was lost may have been applied, as with any lost answer, and an
/// identify sent again finds the same profile.
public final class ClusterForwarder: Service, Sendable {
    /// The header that marks a request as forwarded once.
    static let forwardedBy = HTTPField.Name("Identity-Graph-Forwarded-By")!

    /// How long the leader has to answer a forwarded request.
    let timeout: Duration
    private let node: String
    private let http: HTTPClient
    private let tls: TLSConfiguration?
    private let logger: Logger
    private let lineClients = NIOLockedValueBox<[LineClientKey: IdentityGraphClient]>([:])
    /// The largest answer relayed over HTTP; a profile of the largest size a store holds fits many times.
    private let maxAnswerBytes = 64 << 20

    private struct LineClientKey: Hashable {
        var address: String
        var token: [UInt8]?
    }

    /// `tls` is the client side of the servers' TLS (`nil` when they speak plain TCP and HTTP).
    public init(node: String, tls: TLSConfiguration?, timeout: Duration = .seconds(10), logger: Logger) {
        self.node = node
        self.tls = tls
        self.timeout = timeout
        self.logger = logger
        http = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup,
            configuration: HTTPClient.Configuration(
                tlsConfiguration: tls,
                redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(2), read: .seconds(Int64(timeout.components.seconds)))
            )
        )
    }

    /// Runs until the server stops, then closes every connection to the leader.
    public func run() async throws {
        try? await gracefulShutdown()
        let clients = lineClients.withLockedValue { clients in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        for client in clients { await client.close() }
        try? await http.shutdown()
    }

    // MARK: - HTTP

    /// Sends `request` to the leader at `leaderURL` (`http://host:port`) and returns its answer as the
    /// leader gave it: status, body, `Content-Type`, `Retry-After`, `Allow` and `Identity-Graph-Seq`.
    func forward(_ request: Request, maxBodyBytes: Int, leader: String, to leaderURL: String) async throws -> Response {
        var relayed = HTTPClientRequest(url: leaderURL + request.uri.string)
        relayed.method = HTTPMethod(rawValue: request.method.rawValue)
        for name in [HTTPField.Name.authorization, .contentType, .accept] {
            for value in request.headers[values: name] { relayed.headers.add(name: name.rawName, value: value) }
        }
        relayed.headers.add(name: Self.forwardedBy.rawName, value: node)
        if request.method == .post || request.method == .put || request.method == .delete {
            if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
                throw Self.tooLarge(maxBodyBytes)
            }
            do {
                let body = try await request.body.collect(upTo: maxBodyBytes)
                if body.readableBytes > 0 { relayed.body = .bytes(body) }
            } catch is NIOTooManyBytesError {
                throw Self.tooLarge(maxBodyBytes)
            }
        }
        let answer: HTTPClientResponse
        let body: ByteBuffer
        do {
            answer = try await http.execute(relayed, timeout: .init(timeout))
            body = try await answer.body.collect(upTo: maxAnswerBytes)
        } catch {
            throw unreachable(leader, error)
        }
        var headers = HTTPFields()
        for name in [HTTPField.Name.contentType, .retryAfter, .allow, IdentityHTTPResponder.seqHeader] {
            if let value = answer.headers.first(name: name.rawName) { headers[name] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: Int(answer.status.code), reasonPhrase: answer.status.reasonPhrase),
            headers: headers, body: .init(byteBuffer: body)
        )
    }

    private static func tooLarge(_ limit: Int) -> Problem {
        Problem(status: 413, title: "Content too large", detail: "the body must be at most \(limit) bytes")
    }

    // MARK: - Lines

    /// Sends one request line to the leader at `address` (`host:port`) on the connection of `token`, and
    /// returns the answer line with its line break; an error line (`503`, `"retryAfter": 1`) when the
    /// leader cannot be reached or does not answer in time.
    func forward(line: [UInt8], id: JSONValue?, token: [UInt8]?, leader: String, to address: String) async -> [UInt8] {
        do {
            let client = try lineClient(address: address, token: token)
            let answer = try await withDeadline(timeout) { try await client.send(line: line) }
            return answer + [0x0A]
        } catch let error as IdentityGraphClient.ServerError {
            var problem = Problem(status: error.status, title: error.title, detail: error.detail)
            if error.status == 503 { problem.retryAfter = 1 }
            return LineRequest.errorLine(id: id, problem)
        } catch {
            return LineRequest.errorLine(id: id, unreachable(leader, error))
        }
    }

    /// The client for `token` on the leader at `address`; clients of an earlier leader are closed.
    private func lineClient(address: String, token: [UInt8]?) throws -> IdentityGraphClient {
        let key = LineClientKey(address: address, token: token)
        let (client, stale) = try lineClients.withLockedValue { clients -> (IdentityGraphClient, [IdentityGraphClient]) in
            if let client = clients[key] { return (client, []) }
            guard let (host, port) = Self.hostAndPort(address) else {
                throw IdentityGraphClient.ServerError(
                    status: 503, title: "Leader unreachable", detail: "the leader advertises no usable address (\(address))"
                )
            }
            let client = try IdentityGraphClient(
                configuration: .init(
                    host: host, port: port, tls: tls, token: token.map { String(decoding: $0, as: UTF8.self) },
                    connectTimeout: .seconds(2), reconnectBackoff: .init(initialDelay: .milliseconds(50), maximumDelay: .seconds(1))
                )
            )
            let stale = clients.filter { $0.key.address != address }
            for key in stale.keys { clients.removeValue(forKey: key) }
            clients[key] = client
            return (client, Array(stale.values))
        }
        if !stale.isEmpty { Task { for client in stale { await client.close() } } }
        return client
    }

    /// `host:port`, `[v6]:port`.
    static func hostAndPort(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (1...65_535).contains(port)
        else { return nil }
        var host = address[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return host.isEmpty ? nil : (String(host), port)
    }

    private func unreachable(_ leader: String, _ error: any Error) -> Problem {
        logger.warning("cannot forward a change to the leader", metadata: ["leader": "\(leader)", "error": "\(error)"])
        var problem = Problem(
            status: 503, title: "Leader unreachable",
            detail: "this server forwards changes to the leader, \(leader), which did not answer; retry"
        )
        problem.retryAfter = 1
        return problem
    }

    private struct DeadlineExceeded: Error, CustomStringConvertible {
        var description: String { "no answer in time" }
    }

    /// `body`'s result, or ``DeadlineExceeded`` after `timeout`. The call itself goes on (a line once
    /// written waits for its answer); its answer is dropped.
    private func withDeadline<T: Sendable>(
        _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let waiter = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { continuation in
            waiter.withLockedValue { $0 = continuation }
            let call = Task {
                let result: Result<T, any Error>
                do {
                    result = .success(try await body())
                } catch {
                    result = .failure(error)
                }
                waiter.withLockedValue { $0.take() }?.resume(with: result)
            }
            Task {
                try? await Task.sleep(for: timeout)
                if let continuation = waiter.withLockedValue({ $0.take() }) {
                    continuation.resume(throwing: DeadlineExceeded())
                }
                _ = call
            }
        }
    }
}

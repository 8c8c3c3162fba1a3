import Foundation
import HTTPTypes
import Hummingbird
import IdentityCluster
import IdentityGraph
import Logging
import NIOCore
import NIOConcurrencyHelpers
import ServiceLifecycle

/// The HTTP API of SPEC.md sections 6 and 9 to 13. A hand-written responder rather than a router:
/// owning the dispatch lets an unknown path answer 404 and a known path with the wrong method answer
/// 405 with `Allow`, both as problem documents like every other error.
public struct IdentityHTTPResponder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let engine: IdentityEngine
    let maxBodyBytes: Int
    /// The longest a change stream stays silent: a comment line goes out at least this often.
    let heartbeat: Duration
    let access: AccessControl
    let metrics: ServerMetrics
    /// Identify answers also carry `primaryContatctId` (`--bitespeed-compat`, SPEC.md section 6).
    let bitespeedCompat: Bool
    /// Cluster mode (SPEC.md section 17): who leads, whether this server has caught up.
    let cluster: ClusterNode?
    /// Cluster mode: how a follower relays changes to the leader.
    let forwarder: ClusterForwarder?

    public init(
        engine: IdentityEngine, maxBodyBytes: Int, heartbeat: Duration = .seconds(15),
        access: AccessControl = AccessControl(tokens: nil), metrics: ServerMetrics = ServerMetrics(),
        bitespeedCompat: Bool = false, cluster: ClusterNode? = nil, forwarder: ClusterForwarder? = nil
    ) {
        self.bitespeedCompat = bitespeedCompat
        self.cluster = cluster
        self.forwarder = forwarder
        self.engine = engine
        self.maxBodyBytes = maxBodyBytes
        self.heartbeat = heartbeat
        self.access = access
        self.metrics = metrics
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var (response, operation) = await answer(request, context: context)
        if cluster != nil, response.headers[Self.seqHeader] == nil {
            // Read your writes (SPEC.md section 17): the newest event this answer reflects.
            response.headers[Self.seqHeader] = String(engine.publishedSeq)
        }
        metrics.recordRequest(
            .http, op: operation, status: response.status.code, duration: ContinuousClock.now - started
        )
        guard request.method == .head else { return response }
        // HEAD: the GET answer's status and headers (its Content-Length included), without the body.
        return Response(status: response.status, headers: response.headers, body: .init())
    }

    /// The answer and the name of the operation it ran (the metrics label; `unknown` for a path or
    /// method no route serves). Everything about a route comes from ``routes``.
    private func answer(_ request: Request, context: Context) async -> (Response, String) {
        guard let (route, id) = HTTPRoute.find(request.uri.path, in: Self.routes) else {
            return (Problem.notFound("no resource at \(request.uri.path)").render(), "unknown")
        }
        // Parsed once: the operation may depend on it (a dry run), but a malformed query is reported only
        // after authorization, as every bad input is.
        let parsed = Result { () throws(RequestError) in try QueryParameters(request.uri.query ?? "") }
        guard let operation = route.operation(for: request.method, query: try? parsed.get()) else {
            let allowed = route.allowedMethods.map(\.rawValue).joined(separator: ", ")
            var problem = Problem(
                status: 405, title: "Method not allowed",
                detail: "\(route.path) accepts \(allowed), not \(request.method.rawValue)"
            )
            problem.allow = allowed
            return (problem.render(), "unknown")
        }
        do {
            try authorize(request, needs: operation.role)
            let query = try Self.parameter { () throws(RequestError) in try parsed.get() }
            try Self.parameter { () throws(RequestError) in try operation.checkParameters(query) }
            if let cluster {
                if let forwarded = try await admit(operation, request, query: query, in: cluster) {
                    return (forwarded, operation.name)
                }
            } else {
                // Alone, a server has applied every event it ever numbered: `minSeq` is only checked.
                _ = try Self.minSeq(query)
            }
            return (try await operation.handler(self, .init(request: request, query: query, id: id)), operation.name)
        } catch var problem as Problem {
            // Every 503 of cluster mode says when to retry (SPEC.md section 17).
            if cluster != nil, problem.statusCode == 503 { problem.retryAfter = 1 }
            return (problem.render(), operation.name)
        } catch let error as any HTTPResponseError {
            // A `Problem` renders itself, as Hummingbird's router does with its errors.
            let response = (try? error.response(from: request, context: context)) ?? Problem.internalError.render()
            return (response, operation.name)
        } catch {
            // Anything else is our fault, never the client's: say so without leaking internals.
            context.logger.error("unexpected error answering \(request.method) \(request.uri.path): \(error)")
            return (Problem.internalError.render(), operation.name)
        }
    }

    /// Authentication comes first (SPEC.md section 14): a request without the role it needs is
    /// answered 401 or 403 before its body is read or checked. Unknown paths and methods need no
    /// role; routing answers them 404 and 405.
    private func authorize(_ request: Request, needs needed: Role?) throws {
        guard let needed else { return }
        var token: [UInt8]?
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                token = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
            }
        }
        switch access.check(token: token, needs: needed) {
        case .allowed:
            return
        case .missingToken:
            throw Problem(
                status: 401, title: "Unauthorized",
                detail: "this request needs a bearer token with the \(needed) role (Authorization: Bearer TOKEN)"
            )
        case .unknownToken:
            throw Problem(status: 401, title: "Unauthorized", detail: "unknown token")
        case .forbidden(let role):
            throw Problem(
                status: 403, title: "Forbidden", detail: "this request needs the \(needed) role; the token has \(role)"
            )
        }
    }

    /// `GET /changes?after=S&limit=N` (SPEC.md section 13), or with `Accept: text/event-stream` a
    /// stream of Server-Sent Events.
    func changes(_ call: HTTPOperation.Call) async throws -> Response {
        let request = call.request
        let query = call.query
        var (after, limit) = try Self.parameter { () throws(RequestError) in
            (try query.integer("after", in: 0...Int.max) ?? 0, try query.integer("limit", in: 1...10_000) ?? 1000)
        }
        let wantsStream = request.headers[.accept]?.lowercased().contains("text/event-stream") == true
        if wantsStream, let lastEventID = request.headers[values: HTTPField.Name("Last-Event-ID")!].first {
            guard let seq = Int(lastEventID), seq >= 0, lastEventID.first != "+" else {
                throw Problem(RequestError(field: "Last-Event-ID", reason: "must be a seq, not \"\(lastEventID)\""))
            }
            after = seq
        }
        let page: IdentityEngine.ChangesPage
        do {
            // A stream reads its own pages; here it needs only to know whether `after` is still kept.
            page = try await engine.changes(after: UInt64(after), limit: wantsStream ? 1 : limit)
        } catch {
            throw Problem(error)
        }
        if after > 0, page.oldestSeq > 0, UInt64(after) < page.oldestSeq - 1 {
            throw Problem(
                status: 410, title: "Gone",
                detail: "events before seq \(page.oldestSeq) are no longer kept; the oldest available is \(page.oldestSeq)"
            )
        }
        if wantsStream { return stream(after: UInt64(after)) }
        return Self.json(page.json)
    }

    /// The change feed as Server-Sent Events: the stored events after `after`, then each new one once
    /// durable, and a comment at least every `heartbeat`. Events are read from the store a page at a
    /// time and written only when the client has taken the previous page (the writer applies the
    /// connection's backpressure), so a slow client costs at most one page of memory; it simply falls
    /// behind. One that falls so far behind that its next event was pruned is ended with a comment
    /// saying so, and can resume with `Last-Event-ID` (a `410` then says what is still kept). On
    /// graceful shutdown each stream ends after the durable events, with a last comment.
    private func stream(after start: UInt64) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let engine = self.engine
        let heartbeat = self.heartbeat
        let body = ResponseBody { writer in
            let stopping = NIOLockedValueBox(false)
            try await withGracefulShutdownHandler {
                var last = start
                var allocator = ByteBufferAllocator()
                try await writer.write(allocator.buffer(string: ": identity-graph change feed\n\n"))
                while true {
                    let page = try await engine.changes(after: last, limit: 1000)
                    if let first = page.events.first, first.seq > last + 1, last > 0 {
                        try await writer.write(allocator.buffer(
                            string: ": events after \(last) are no longer kept; the oldest is \(first.seq)\n\n"
                        ))
                        break
                    }
                    if !page.events.isEmpty {
                        var text = JSONWriter(capacity: page.events.count * 160)
                        for event in page.events {
                            text.raw("id: ")
                            text.integer(event.seq)
                            text.raw("\nevent: ")
                            text.raw(event.kind.name.utf8)
                            text.raw("\ndata: ")
                            event.writeJSON(into: &text)
                            text.raw("\n\n")
                        }
                        try await writer.write(allocator.buffer(bytes: text.bytes))
                        last = page.events.last!.seq
                        if page.events.count == 1000 { continue }
                    }
                    if stopping.withLockedValue({ $0 }) {
                        try await writer.write(allocator.buffer(string: ": the server is shutting down\n\n"))
                        break
                    }
                    if page.latestSeq <= last {
                        await engine.waitForChanges(after: last, timeout: heartbeat)
                        if await engine.latestSeq <= last && !stopping.withLockedValue({ $0 }) {
                            try await writer.write(allocator.buffer(string: ": heartbeat\n\n"))
                        }
                    }
                }
                allocator = ByteBufferAllocator()
            } onGracefulShutdown: {
                stopping.withLockedValue { $0 = true }
                engine.wakeChangeWaiters()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// Reads a JSON body (415, 413 and 400 as SPEC.md section 6 says) as an identify-shaped request:
    /// `email` and `phoneNumber` normalized, at least one given; the other `members` the route reads go to
    /// `otherMember`, and a near miss of any of them is a 400 (see ``IdentifyRequest/decode(json:members:otherMember:)``).
    func jsonBody(
        _ request: Request, members: [String], otherMember: (String, JSONValue) throws(RequestError) -> Void
    ) async throws -> IdentifyRequest {
        if let contentType = request.headers[.contentType], !Self.isJSON(contentType) {
            throw Problem(
                status: 415, title: "Unsupported media type",
                detail: "the body must be JSON (application/json), not \(contentType)"
            )
        }
        // Made only when it is thrown: its text is a string built for it, on every request otherwise.
        var tooLarge: Problem {
            Problem(status: 413, title: "Content too large", detail: "the body must be at most \(maxBodyBytes) bytes")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes { throw tooLarge }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        }
        do {
            return try body.withUnsafeReadableBytes { bytes in
                Result { () throws(RequestError) in
                    try IdentifyRequest.decode(json: bytes, members: members, otherMember: otherMember).get()
                }
            }.get()
        } catch {
            throw Problem(error)
        }
    }

    /// Runs an engine call, turning its error into the problem it answers with.
    static func engineCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as EngineError {
            throw Problem(error)
        }
    }

    static func parameter<T>(_ body: () throws(RequestError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw Problem(error)
        }
    }

    /// The normalized `email` and `phoneNumber` of a query: at least one, or with `required` both.
    static func values(_ query: QueryParameters, required: Bool) throws -> (String?, String?) {
        try parameter { () throws(RequestError) in
            let email = try query.email()
            let phone = try query.phoneNumber()
            if required, email == nil || phone == nil {
                throw RequestError(field: nil, reason: "both email and phoneNumber are required")
            }
            if email == nil && phone == nil {
                throw RequestError(field: nil, reason: "at least one of email and phoneNumber must be given and not blank")
            }
            return (email, phone)
        }
    }

    /// The contact id of a `{id}` path segment.
    static func contactId(_ text: Substring?) throws -> Int {
        let text = String(text ?? "")
        guard let id = Int(text), id >= 1, text.first != "+" else { throw Problem(invalidContactId(text)) }
        return id
    }

    static func invalidContactId(_ text: String) -> RequestError {
        RequestError(field: "id", reason: "must be a positive whole number, not \"\(text)\"")
    }

    /// A body is JSON when its media type is `application/json` or `application/*+json`.
    static func isJSON(_ contentType: String) -> Bool {
        // What nearly every client sends, compared first: the general parse below goes through Foundation's
        // trimming, a few percent of an identify's CPU in a profile of wrk's load.
        if contentType == "application/json" { return true }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
        return mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json"))
    }

    static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

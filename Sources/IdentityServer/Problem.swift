import HTTPTypes
import Hummingbird
import IdentityGraph
import NIOCore

/// An error answer, rendered as an RFC 9457 problem document over HTTP and as the `error` object of
/// a line-protocol response. Every failure a client can cause maps to one of these at the edge.
public struct Problem: Error, Sendable, Hashable {
    /// The HTTP status, also the `status` member of the document.
    public var statusCode: Int
    public var title: String
    public var detail: String
    /// For a 405: the methods the path serves, sent as `Allow`.
    public var allow: String?
    /// Seconds after which a retry may succeed: every 503 of cluster mode says 1 (SPEC.md section 17), as
    /// `Retry-After` over HTTP and `"retryAfter"` in a line-protocol error.
    public var retryAfter: Int?

    public init(status: Int, title: String, detail: String) {
        self.statusCode = status
        self.title = title
        self.detail = detail
    }

    /// 400 for a request that breaks SPEC.md section 3.
    public init(_ error: RequestError) {
        self.init(status: 400, title: "Invalid request", detail: error.detail)
    }

    /// 503 for a store that cannot take the request now.
    public init(_ error: StorageError) {
        self.init(status: 503, title: "Storage unavailable", detail: error.message)
    }

    /// The status an engine error answers with: 422 blocked, 404, 410 erased, 503 storage.
    public init(_ error: EngineError) {
        switch error {
        case .blocked(let request):
            self.init(status: 422, title: "Blocked value", detail: request.detail)
        case .notFound(let detail):
            self = .notFound(detail)
        case .erased(let detail):
            self.init(status: 410, title: "Gone", detail: detail)
        case .storage(let storage):
            self.init(storage)
        }
    }

    public static func notFound(_ detail: String) -> Problem {
        Problem(status: 404, title: "Not found", detail: detail)
    }

    /// `{"status":400,"title":"...","detail":"..."}`.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{")
        writeMembers(into: &writer)
        writer.raw("}")
    }

    /// The HTTP body: the members above plus `type`, which RFC 9457 defaults to `about:blank`.
    public var problemDocument: [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"type\":\"about:blank\",")
        writeMembers(into: &writer)
        writer.raw("}")
        return writer.bytes
    }

    private func writeMembers(into writer: inout JSONWriter) {
        writer.raw("\"status\":")
        writer.integer(statusCode)
        writer.raw(",\"title\":")
        writer.string(title)
        writer.raw(",\"detail\":")
        writer.string(detail)
        if let retryAfter {
            writer.raw(",\"retryAfter\":")
            writer.integer(retryAfter)
        }
    }
}

extension Problem: HTTPResponseError {
    /// The status as Hummingbird's error protocol wants it.
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: statusCode) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        render()
    }

    /// The problem document with its headers: `application/problem+json`, `WWW-Authenticate: Bearer`
    /// on a 401, `Allow` on a 405.
    func render() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        if statusCode == 401 { headers[.wwwAuthenticate] = "Bearer" }
        if let allow { headers[.allow] = allow }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(
            status: status, headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: problemDocument))
        )
    }

    static let internalError = Problem(status: 500, title: "Internal error", detail: "the server failed; see its log")
}

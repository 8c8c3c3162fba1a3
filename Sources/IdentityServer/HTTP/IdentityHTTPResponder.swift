import Foundation
import Hummingbird
import IdentityGraph
import Logging
import NIOCore

/// The HTTP API of SPEC.md section 6. A hand-written responder rather than a router: there are
/// five paths, and owning the dispatch lets an unknown path answer 404 and a known path with the
/// wrong method answer 405 with `Allow`, both as problem documents like every other error.
public struct IdentityHTTPResponder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let engine: IdentityEngine
    let maxBodyBytes: Int

    public init(engine: IdentityEngine, maxBodyBytes: Int) {
        self.engine = engine
        self.maxBodyBytes = maxBodyBytes
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        do {
            return try await route(request)
        } catch let problem as Problem {
            return Self.response(problem)
        } catch let error as MethodNotAllowed {
            var headers = HTTPFields()
            headers[.allow] = error.allowed.map(\.rawValue).joined(separator: ", ")
            let problem = Problem(
                status: 405, title: "Method not allowed",
                detail: "\(request.uri.path) accepts \(headers[.allow]!), not \(error.method.rawValue)"
            )
            return Self.response(problem, headers: headers)
        } catch {
            // Anything else is our fault, never the client's: say so without leaking internals.
            context.logger.error("unexpected error answering \(request.method) \(request.uri.path): \(error)")
            return Self.response(Problem(status: 500, title: "Internal error", detail: "the server failed; see its log"))
        }
    }

    private func route(_ request: Request) async throws -> Response {
        let path = request.uri.path
        switch path {
        case "/identify", "/api/identify":
            try Self.allow(request, .post)
            return try await identify(request)
        case "/healthz":
            try Self.allow(request, .get)
            return Self.json(Array(#"{"status":"ok"}"#.utf8))
        case "/":
            try Self.allow(request, .get)
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: FormPage.html)))
        case _ where path.hasPrefix("/contacts/"):
            try Self.allow(request, .get)
            return try await contact(String(path.dropFirst("/contacts/".count)))
        default:
            throw Problem.notFound("no resource at \(path)")
        }
    }

    private func identify(_ request: Request) async throws -> Response {
        if let contentType = request.headers[.contentType], !Self.isJSON(contentType) {
            throw Problem(
                status: 415, title: "Unsupported media type",
                detail: "the body must be JSON (application/json), not \(contentType)"
            )
        }
        let tooLarge = Problem(
            status: 413, title: "Content too large", detail: "the body must be at most \(maxBodyBytes) bytes"
        )
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes { throw tooLarge }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        }
        let identifyRequest: IdentifyRequest
        do {
            identifyRequest = try body.withUnsafeReadableBytes { bytes in
                Result { () throws(RequestError) in try IdentifyRequest(json: bytes) }
            }.get()
        } catch {
            throw Problem(error)
        }
        do {
            return Self.json(try await engine.identifyResponseBody(identifyRequest))
        } catch {
            throw Problem(error)
        }
    }

    private func contact(_ idText: String) async throws -> Response {
        guard let id = Int(idText), id >= 1, idText.first != "+" else {
            throw Problem(Self.invalidContactId(idText))
        }
        let contact: Contact?
        do {
            contact = try await engine.contact(id: id)
        } catch {
            throw Problem(error)
        }
        guard let contact else { throw Problem.notFound("no contact with id \(id)") }
        return Self.json(contact.json)
    }

    static func invalidContactId(_ text: String) -> RequestError {
        RequestError(field: "id", reason: "must be a positive whole number, not \"\(text)\"")
    }

    /// A body is JSON when its media type is `application/json` or `application/*+json`.
    static func isJSON(_ contentType: String) -> Bool {
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
        return mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json"))
    }

    private static func allow(_ request: Request, _ methods: HTTPRequest.Method...) throws {
        guard methods.contains(request.method) else {
            throw MethodNotAllowed(method: request.method, allowed: methods)
        }
    }

    private static func json(_ bytes: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func response(_ problem: Problem, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = "application/problem+json"
        return Response(
            status: HTTPResponse.Status(code: problem.status),
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: problem.problemDocument))
        )
    }
}

/// A known path asked with a method it does not serve: 405 with the methods it does.
struct MethodNotAllowed: Error {
    var method: HTTPRequest.Method
    var allowed: [HTTPRequest.Method]
}

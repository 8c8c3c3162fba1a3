import HTTPTypes
import Hummingbird
import IdentityGraph
import NIOCore

extension IdentityHTTPResponder {
    /// Every route of the HTTP API, the one table the responder, authorization, metrics and the tests
    /// read (see ``HTTPRoute``). Roles follow SPEC.md section 14.
    static let routes: [HTTPRoute] = [
        HTTPRoute("/identify", identifyOperations),
        HTTPRoute("/api/identify", identifyOperations),
        HTTPRoute("/healthz", [HTTPOperation(.get, "healthz", role: nil) { responder, _ in await responder.health() }]),
        HTTPRoute("/", [HTTPOperation(.get, "page", role: nil) { _, _ in page() }]),
        HTTPRoute("/openapi.json", [
            HTTPOperation(.get, "openapi", role: nil) { _, _ in json(OpenAPIDocument.bytes) },
        ]),
        HTTPRoute("/metrics", [HTTPOperation(.get, "metrics", role: nil) { responder, _ in try await responder.metricsPage() }]),
        HTTPRoute("/profiles", [
            HTTPOperation(.get, "lookup", role: .read, parameters: ["email", "phoneNumber", "minSeq"]) { responder, call in
                try await responder.lookup(call)
            },
        ]),
        HTTPRoute("/profiles/{id}", [
            HTTPOperation(.get, "profile", role: .read, parameters: ["minSeq"]) { responder, call in
                let id = try contactId(call.id)
                return json(try await engineCall { try await responder.engine.profileResponseBody(containing: id) })
            },
            HTTPOperation(.delete, "eraseProfile", role: .admin, writes: true) { responder, call in
                let id = try contactId(call.id)
                return json(try await engineCall { try await responder.engine.erase(.profile(id)) })
            },
        ]),
        HTTPRoute("/contacts/{id}", [
            HTTPOperation(.get, "contact", role: .read, parameters: ["minSeq"]) { responder, call in
                try await responder.contact(try contactId(call.id))
            },
            HTTPOperation(.delete, "eraseContact", role: .admin, writes: true) { responder, call in
                let id = try contactId(call.id)
                return json(try await engineCall { try await responder.engine.erase(.contact(id)) })
            },
        ]),
        HTTPRoute("/explain", [
            HTTPOperation(.get, "explain", role: .read, parameters: ["from", "to", "minSeq"]) { responder, call in
                try await responder.explain(call)
            },
        ]),
        HTTPRoute("/erase", [
            HTTPOperation(.post, "erase", role: .admin, writes: true) { responder, call in
                try await responder.erase(call)
            },
        ]),
        HTTPRoute("/unmerge", [
            HTTPOperation(.post, "unmerge", role: .admin, writes: true) { responder, call in
                try await responder.unmerge(call)
            },
        ]),
        HTTPRoute("/keep-apart", [
            HTTPOperation(.get, "keepApartRules", role: .read, parameters: ["minSeq"]) { responder, _ in try await responder.keepApartRules() },
            HTTPOperation(.delete, "removeKeepApart", role: .admin, parameters: ["email", "phoneNumber"], writes: true) {
                responder, call in try await responder.removeKeepApart(call)
            },
        ]),
        HTTPRoute("/cluster", [
            HTTPOperation(.get, "cluster", role: .read) { responder, _ in try await responder.clusterStatus() },
        ]),
        HTTPRoute("/changes", [
            HTTPOperation(.get, "changes", role: .read, parameters: ["after", "limit", "minSeq"]) { responder, call in
                try await responder.changes(call)
            },
        ]),
    ]

    /// `POST /identify`: a dry run (`dryRun=true`) only reads and needs the read role; anything else
    /// may write. A query that cannot be parsed counts as a write until it is rejected.
    private static let identifyOperations = [
        HTTPOperation(.post, "dryRun", role: .read, parameters: ["dryRun", "minSeq"], when: { $0?["dryRun"] == "true" }) {
            responder, call in try await responder.identify(call, dryRun: true)
        },
        HTTPOperation(.post, "identify", role: .write, parameters: ["dryRun", "minSeq"], writes: true) { responder, call in
            switch call.query["dryRun"] {
            case nil, "false": break
            case let other?:
                throw Problem(RequestError(field: "dryRun", reason: "must be true or false, not \"\(other)\""))
            }
            return try await responder.identify(call, dryRun: false)
        },
    ]

    // MARK: - Handlers

    /// `200 {"status":"ok"}` while the store accepts changes; `503 {"status":"degraded",...}` while a
    /// failed commit is being retried (SPEC.md section 8), so that a load balancer stops sending writes.
    func health() async -> Response {
        if let cluster { return await clusterHealth(cluster) }
        guard let refusal = await engine.refusal else { return Self.json(Array(#"{"status":"ok"}"#.utf8)) }
        var writer = JSONWriter()
        writer.raw(#"{"status":"degraded","detail":"#)
        writer.string("the store refuses changes: \(refusal)")
        writer.raw("}")
        return Self.json(writer.bytes, status: .serviceUnavailable)
    }

    static func page() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: FormPage.html)))
    }

    func metricsPage() async throws -> Response {
        guard metrics.isEnabled else { throw Problem.notFound("metrics are off (--no-metrics)") }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: await metrics.render(engine, cluster: cluster))))
    }

    func identify(_ call: HTTPOperation.Call, dryRun: Bool) async throws -> Response {
        // `dryRun` belongs in the query string; in the body it would be ignored and the request would write.
        let request = try await jsonBody(call.request, members: ["dryRun"]) { key, _ throws(RequestError) in
            throw RequestError(field: key, reason: "goes in the query string (?dryRun=true), not in the body")
        }
        return Self.json(try await Self.engineCall { 
            try await engine.identifyResponseBody(request, dryRun: dryRun, bitespeedCompat: bitespeedCompat)
        })
    }

    func lookup(_ call: HTTPOperation.Call) async throws -> Response {
        let (email, phone) = try Self.values(call.query, required: false)
        return Self.json(try await Self.engineCall { try await engine.lookupResponseBody(email: email, phoneNumber: phone) })
    }

    func explain(_ call: HTTPOperation.Call) async throws -> Response {
        let query = call.query
        guard let from = try Self.parameter({ () throws(RequestError) in try query.positiveInteger("from") }),
            let to = try Self.parameter({ () throws(RequestError) in try query.positiveInteger("to") })
        else { throw Problem(RequestError(field: nil, reason: "both from and to (contact ids) are required")) }
        return Self.json(try await Self.engineCall { try await engine.explain(from: from, to: to) }.json)
    }

    func erase(_ call: HTTPOperation.Call) async throws -> Response {
        let body = try await jsonBody(call.request, members: []) { _, _ throws(RequestError) in }
        return Self.json(try await Self.engineCall {
            try await engine.erase(.values(email: body.email, phoneNumber: body.phoneNumber))
        })
    }

    func unmerge(_ call: HTTPOperation.Call) async throws -> Response {
        var keepApart = false
        let body = try await jsonBody(call.request, members: ["keepApart"]) { _, value throws(RequestError) in
            guard case .bool(let flag) = value else {
                throw RequestError(field: "keepApart", reason: "must be true or false, not \(value.kindDescription)")
            }
            keepApart = flag
        }
        guard let email = body.email, let phone = body.phoneNumber else {
            throw Problem(RequestError(field: nil, reason: "both email and phoneNumber (the link to undo) are required"))
        }
        return Self.json(try await Self.engineCall {
            try await engine.unmerge(email: email, phoneNumber: phone, keepApart: keepApart)
        })
    }

    func keepApartRules() async throws -> Response {
        let rules = try await Self.engineCall { try await engine.keepApartRules() }
        var writer = JSONWriter()
        writer.raw("{\"rules\":[")
        for (index, rule) in rules.enumerated() {
            if index > 0 { writer.raw(",") }
            rule.writeJSON(into: &writer)
        }
        writer.raw("]}")
        return Self.json(writer.bytes)
    }

    func removeKeepApart(_ call: HTTPOperation.Call) async throws -> Response {
        let (email, phone) = try Self.values(call.query, required: true)
        try await Self.engineCall { try await engine.removeKeepApart(email: email!, phoneNumber: phone!) }
        return Response(status: .noContent)
    }

    func contact(_ id: Int) async throws -> Response {
        let contact = try await Self.engineCall { try await engine.contact(id: id) }
        guard let contact else { throw Problem.notFound("no contact with id \(id)") }
        return Self.json(contact.json)
    }
}

import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import IdentityGraph
@testable import IdentityServer

/// The route table (`IdentityHTTPResponder.routes`) and what is derived from it, in process: roles as
/// SPEC.md section 14 lists them, a typo that never writes (section 6), `HEAD`, trailing slashes, and
/// `/healthz` while the store refuses changes (section 8).
@Suite struct RouteTableTests {
    static let json: HTTPFields = [.contentType: "application/json"]

    private func withApplication(
        engine: IdentityEngine = IdentityEngine(),
        configuration: ServerConfiguration = ServerConfiguration(),
        _ test: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let app = try IdentityServer.buildHTTPApplication(
            engine: engine, configuration: configuration, access: AccessControl(tokens: nil),
            metrics: ServerMetrics(), logger: Logger(label: "route-table-tests")
        )
        try await app.test(.router, test)
    }

    private static func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// SPEC.md section 14's list, written out from the text: the role each operation needs, `nil` for open.
    static let specRoles: [String: Role?] = [
        "GET /contacts/{id}": .read, "GET /profiles": .read, "GET /profiles/{id}": .read, "GET /explain": .read,
        "GET /changes": .read, "GET /keep-apart": .read, "GET /cluster": .read,
        "POST /identify": .write, "POST /api/identify": .write,
        "DELETE /contacts/{id}": .admin, "DELETE /profiles/{id}": .admin, "POST /erase": .admin,
        "POST /unmerge": .admin, "DELETE /keep-apart": .admin,
        "GET /healthz": nil, "GET /metrics": nil, "GET /openapi.json": nil, "GET /": nil,
    ]

    /// The operations that change the store (cluster mode sends these to the leader).
    static let specWrites: Set<String> = [
        "POST /identify", "POST /api/identify", "DELETE /contacts/{id}", "DELETE /profiles/{id}", "POST /erase",
        "POST /unmerge", "DELETE /keep-apart",
    ]

    @Test("the route table gives every operation the role SPEC section 14 lists, and marks exactly the writes")
    func rolesFollowSpec() {
        var seen: Set<String> = []
        for route in IdentityHTTPResponder.routes {
            for operation in route.operations {
                let name = "\(operation.method.rawValue) \(route.path)"
                if operation.name == "dryRun" {
                    #expect(operation.role == .read && !operation.writes, "a dry run only reads")
                    continue
                }
                seen.insert(name)
                #expect(Self.specRoles.keys.contains(name), "\(name) is not in SPEC's list")
                #expect(Self.specRoles[name] == operation.role, "\(name): role \(String(describing: operation.role))")
                #expect(operation.writes == Self.specWrites.contains(name), "\(name): writes \(operation.writes)")
            }
        }
        #expect(seen == Set(Self.specRoles.keys), "missing: \(Set(Self.specRoles.keys).subtracting(seen).sorted())")
        // /api/identify is /identify under a second path, and counts as the same operation.
        let names = IdentityHTTPResponder.routes.filter { $0.path != "/api/identify" }.flatMap(\.operations).map(\.name)
        #expect(Set(names).count == names.count, "two operations share a metrics name: \(names.sorted())")
    }

    // MARK: - A typo never writes

    @Test("an unknown query parameter is a 400 naming it and the route's parameters, and writes nothing")
    func unknownQueryParameter() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine) { client in
            let identify = Self.body(#"{"email":"doc@hillvalley.edu"}"#)
            try await client.execute(uri: "/identify?dryrun=true", method: .post, headers: Self.json, body: identify) {
                #expect($0.status == .badRequest)
                let detail = $0.json["detail"] as? String ?? ""
                #expect(detail.contains(#"unknown query parameter "dryrun""#), "\(detail)")
                #expect(detail.contains("this route takes: dryRun"), "\(detail)")
            }
            try await client.execute(uri: "/profiles?email=a@x.io&phone=1", method: .get) {
                #expect($0.status == .badRequest)
                #expect(($0.json["detail"] as? String)?.contains("this route takes: email, phoneNumber") == true)
            }
            try await client.execute(uri: "/healthz?verbose=1", method: .get) {
                #expect($0.status == .badRequest)
                #expect(($0.json["detail"] as? String)?.contains("takes none") == true)
            }
            try await client.execute(uri: "/contacts/1?x", method: .delete) {
                #expect($0.status == .badRequest)
            }
        }
        #expect(await engine.statistics.contacts == 0)
        #expect(await engine.latestSeq == 0)
    }

    @Test("a body member that is a near miss of a known one is a 400 naming the member meant; others are ignored")
    func nearMissMembers() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine) { client in
            let cases = [
                (#"{"Email":"a@x.io"}"#, #""email""#),
                (#"{"email":"a@x.io","phone_number":"123"}"#, #""phoneNumber""#),
                (#"{"email":"a@x.io","PHONE-NUMBER":"123"}"#, #""phoneNumber""#),
                (#"{"email":"a@x.io","dryrun":true}"#, #""dryRun""#),
            ]
            for (body, meant) in cases {
                try await client.execute(uri: "/identify", method: .post, headers: Self.json, body: Self.body(body)) {
                    #expect($0.status == .badRequest, "\(body)")
                    #expect(($0.json["detail"] as? String)?.contains("did you mean \(meant)") == true, "\(body): \($0.text)")
                }
            }
            // dryRun in the body (not the query) would be ignored and the request would write.
            let inBody = Self.body(#"{"email":"a@x.io","dryRun":true}"#)
            try await client.execute(uri: "/identify", method: .post, headers: Self.json, body: inBody) {
                #expect($0.status == .badRequest)
                #expect(($0.json["detail"] as? String)?.contains("query string") == true, "\($0.text)")
            }
            let unmerge = Self.body(#"{"email":"a@x.io","phoneNumber":"1","keep_apart":true}"#)
            try await client.execute(uri: "/unmerge", method: .post, headers: Self.json, body: unmerge) {
                #expect($0.status == .badRequest)
                #expect(($0.json["detail"] as? String)?.contains(#"did you mean "keepApart""#) == true, "\($0.text)")
            }
        }
        #expect(await engine.statistics.contacts == 0, "a rejected request wrote")
        try await withApplication(engine: engine) { client in
            let other = Self.body(#"{"email":"a@x.io","name":"Doc","emails":["b@x.io"]}"#)
            try await client.execute(uri: "/identify", method: .post, headers: Self.json, body: other) {
                #expect($0.status == .ok, "\($0.text)")
            }
        }
        #expect(await engine.statistics.contacts == 1)
    }

    // MARK: - HEAD and trailing slashes

    @Test("every GET route answers HEAD with the GET's status and headers and no body")
    func head() async throws {
        try await withApplication { client in
            try await client.execute(uri: "/identify", method: .post, headers: Self.json, body: Self.body(#"{"email":"a@x.io"}"#)) {
                #expect($0.status == .ok)
            }
            for route in IdentityHTTPResponder.routes {
                guard route.operations.contains(where: { $0.method == .get }) else { continue }
                let path = route.path.replacingOccurrences(of: "{id}", with: "1")
                let target = path == "/profiles" ? "/profiles?email=a@x.io" : path == "/explain" ? "/explain?from=1&to=1" : path
                let get = try await client.execute(uri: target, method: .get)
                let head = try await client.execute(uri: target, method: .head)
                #expect(head.status == get.status, "HEAD \(target)")
                #expect(head.headers[.contentType] == get.headers[.contentType], "HEAD \(target)")
                if path != "/metrics" {  // the metrics page changes with every request, its own included
                    #expect(head.headers[.contentLength] == get.headers[.contentLength], "HEAD \(target)")
                }
                #expect(head.body.readableBytes == 0, "HEAD \(target) sent a body")
            }
            try await client.execute(uri: "/identify", method: .head) {
                #expect($0.status == .methodNotAllowed)
                #expect($0.headers[.allow] == "POST")
            }
            try await client.execute(uri: "/contacts/1", method: .put) {
                #expect($0.headers[.allow] == "GET, HEAD, DELETE")
            }
        }
    }

    @Test("a trailing slash is ignored on every route")
    func trailingSlash() async throws {
        try await withApplication { client in
            let body = Self.body(#"{"email":"a@x.io","phoneNumber":"1"}"#)
            try await client.execute(uri: "/api/identify/", method: .post, headers: Self.json, body: body) {
                #expect($0.status == .ok, "\($0.text)")
                #expect(($0.json["contact"] as? [String: Any])?["primaryContactId"] as? Int == 1)
            }
            try await client.execute(uri: "/contacts/1/", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/healthz/", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/profiles/?email=a@x.io", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/identify//", method: .post, headers: Self.json, body: body) {
                #expect($0.status == .notFound, "only one trailing slash is ignored")
            }
        }
    }

    // MARK: - Health

    @Test("/healthz is 503 degraded while the store refuses changes, and 200 again once it accepts them")
    func healthDegraded() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.store)
        defer { engine.close() }
        try await withApplication(engine: engine) { client in
            try await client.execute(uri: "/healthz", method: .get) {
                #expect($0.status == .ok)
                #expect($0.text == #"{"status":"ok"}"#)
            }
            engine.injectWriteFailures(1_000_000)
            let write = Self.body(#"{"email":"a@x.io"}"#)
            try await client.execute(uri: "/identify", method: .post, headers: Self.json, body: write) {
                #expect($0.status == .serviceUnavailable)
            }
            try await client.execute(uri: "/healthz", method: .get) {
                #expect($0.status == .serviceUnavailable)
                #expect($0.json["status"] as? String == "degraded")
                #expect(($0.json["detail"] as? String)?.isEmpty == false)
            }
            engine.injectWriteFailures(0)
            var status: HTTPResponse.Status = .serviceUnavailable
            for _ in 0..<200 where status != .ok {
                status = try await client.execute(uri: "/healthz", method: .get).status
                if status != .ok { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(status == .ok, "the store did not accept changes again within 10 s")
        }
    }
}

import Foundation
import HTTPTypes
import HummingbirdTesting
import IdentityGraph
import Logging
import NIOCore
import Testing

@testable import IdentityServer

/// The HTTP API of SPEC.md sections 6, 9 to 15 in-process: the application `buildHTTPApplication` assembles, on
/// a fresh in-memory engine, driven through HummingbirdTesting's router client without binding a socket. Every
/// error is a problem document with its status, and a rejected request writes nothing.
@Suite struct HTTPRoutesInProcessTests {
    static let tokens = TestTokens.table
    static let json: HTTPFields = [.contentType: "application/json"]

    /// Runs `test` against the application on `engine`.
    private func withApplication(
        engine: IdentityEngine = IdentityEngine(),
        access: AccessControl = AccessControl(tokens: nil),
        metrics: ServerMetrics = ServerMetrics(),
        _ test: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let app = try IdentityServer.buildHTTPApplication(
            engine: engine, configuration: ServerConfiguration(), access: access, metrics: metrics,
            logger: Logger(label: "http-routes-in-process-tests")
        )
        try await app.test(.router, test)
    }

    /// Runs `test` on a fresh engine, then checks that the engine is still empty: no contact, no change.
    private func withEmptyEngineAfter(_ test: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine) { client in
            try await test(client)
            try await client.execute(uri: "/contacts/1", method: .get) { response in
                #expect(response.status == .notFound, "a rejected request wrote a contact")
            }
        }
        #expect((await engine.statistics).contacts == 0, "a rejected request wrote a contact")
        #expect((await engine.latestSeq) == 0, "a rejected request recorded a change")
    }

    private func expectProblem(
        _ response: TestResponse, status: HTTPResponse.Status, mentioning: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(response.status == status, "\(response.text)", sourceLocation: sourceLocation)
        #expect(response.headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
        #expect(response.json["type"] as? String == "about:blank", sourceLocation: sourceLocation)
        #expect(response.json["status"] as? Int == Int(status.code), sourceLocation: sourceLocation)
        #expect((response.json["title"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        let detail = response.json["detail"] as? String ?? ""
        #expect(!detail.isEmpty, sourceLocation: sourceLocation)
        if let mentioning { #expect(detail.contains(mentioning), "\(detail)", sourceLocation: sourceLocation) }
    }

    // MARK: - identify

    @Test("POST /identify and /api/identify answer 200 with the profile, also when a contact is created")
    func identify() async throws {
        try await withApplication { client in
            let lorraine = #"{"email":"lorraine@hillvalley.edu","phoneNumber":"123456"}"#
            try await client.post("/identify", json: lorraine) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(response.text == #"{"contact":{"primaryContactId":1,"emails":["lorraine@hillvalley.edu"],"#
                    + #""phoneNumbers":["123456"],"secondaryContactIds":[]}}"#)
            }
            let mcfly = #"{"email":" McFly@HillValley.edu ","phoneNumber":123456}"#
            try await client.post("/api/identify", json: mcfly) { response in
                #expect(response.status == .ok)
                #expect(response.text == #"{"contact":{"primaryContactId":1,"#
                    + #""emails":["lorraine@hillvalley.edu","mcfly@hillvalley.edu"],"phoneNumbers":["123456"],"#
                    + #""secondaryContactIds":[2]}}"#)
            }
        }
    }

    @Test("malformed JSON is a 400 problem")
    func malformedJSON() async throws {
        try await withEmptyEngineAfter { client in
            try await client.post("/identify", json: #"{"email":"#) { response in
                expectProblem(response, status: .badRequest, mentioning: "malformed JSON")
            }
        }
    }

    @Test("invalid UTF-8 is a 400 problem")
    func invalidUTF8() async throws {
        try await withEmptyEngineAfter { client in
            let body = Array(#"{"email":""#.utf8) + [0xFF, 0xFE] + Array(#"@x.io"}"#.utf8)
            try await client.execute(
                uri: "/identify", method: .post, headers: Self.json, body: ByteBuffer(bytes: body)
            ) { response in
                expectProblem(response, status: .badRequest, mentioning: "UTF-8")
            }
        }
    }

    @Test("a JSON array body is a 400 problem")
    func arrayBody() async throws {
        try await withEmptyEngineAfter { client in
            try await client.post("/identify", json: #"[{"email":"a@x.io"}]"#) { response in
                expectProblem(response, status: .badRequest)
            }
        }
    }

    @Test("an invalid field is a 400 problem naming the field")
    func invalidField() async throws {
        try await withEmptyEngineAfter { client in
            try await client.post("/identify", json: #"{"phoneNumber":1.5}"#) { response in
                expectProblem(response, status: .badRequest, mentioning: "phoneNumber")
            }
            try await client.post("/api/identify", json: "{}") { response in
                expectProblem(response, status: .badRequest, mentioning: "email")
            }
        }
    }

    @Test("an invalid email is a 400 problem naming email and the reason")
    func invalidEmail() async throws {
        try await withEmptyEngineAfter { client in
            for email in ["not-an-email", "a@", "@x.io", "a b@x.io", "a@b@x.io"] {
                try await client.post("/identify", json: #"{"email":"\#(email)"}"#) { response in
                    expectProblem(response, status: .badRequest, mentioning: "email")
                    let detail = response.json["detail"] as? String
                    #expect(detail?.hasPrefix("email:") == true, "\(email): \(response.text)")
                }
            }
        }
    }

    @Test("a body over the limit is a 413 problem")
    func bodyTooLarge() async throws {
        try await withEmptyEngineAfter { client in
            let padding = String(repeating: "x", count: 70_000)
            try await client.post("/identify", json: #"{"email":"a@x.io","pad":"\#(padding)"}"#) { response in
                expectProblem(response, status: .contentTooLarge, mentioning: "65536")
            }
            let prefix = #"{"email":"a@x.io","pad":""#
            let oneOver = prefix + String(repeating: "x", count: 65_537 - prefix.utf8.count - 2) + #""}"#
            #expect(oneOver.utf8.count == 65_537)
            try await client.post("/identify", json: oneOver) { response in
                expectProblem(response, status: .contentTooLarge, mentioning: "65536")
            }
        }
    }

    @Test("a body of exactly the limit is accepted")
    func bodyAtLimit() async throws {
        try await withApplication { client in
            let prefix = #"{"email":"a@x.io","pad":""#
            let body = prefix + String(repeating: "x", count: 65_536 - prefix.utf8.count - 2) + #""}"#
            #expect(body.utf8.count == 65_536)
            try await client.post("/identify", json: body) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("a body that is not JSON is a 415 problem")
    func notJSON() async throws {
        try await withEmptyEngineAfter { client in
            for type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
                try await client.execute(
                    uri: "/identify", method: .post, headers: [.contentType: type],
                    body: ByteBuffer(string: #"{"email":"a@x.io"}"#)
                ) { response in
                    expectProblem(response, status: .unsupportedMediaType, mentioning: type)
                }
            }
        }
    }

    @Test("application/*+json and a missing Content-Type are JSON")
    func jsonMediaTypes() async throws {
        try await withApplication { client in
            let headerSets: [HTTPFields] = [
                [.contentType: "application/merge-patch+json"], [.contentType: "application/json; charset=utf-8"], [:],
            ]
            for headers in headerSets {
                try await client.execute(
                    uri: "/identify", method: .post, headers: headers, body: ByteBuffer(string: #"{"email":"a@x.io"}"#)
                ) { response in
                    #expect(response.status == .ok, "\(headers): \(response.text)")
                }
            }
        }
    }

    // MARK: - Routing

    @Test("a wrong method is a 405 problem with Allow")
    func wrongMethod() async throws {
        try await withEmptyEngineAfter { client in
            try await client.execute(uri: "/identify", method: .get) { response in
                expectProblem(response, status: .methodNotAllowed)
                #expect(response.headers[.allow] == "POST")
            }
            try await client.execute(uri: "/contacts/1", method: .put) { response in
                expectProblem(response, status: .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, HEAD, DELETE")
            }
            try await client.execute(uri: "/changes", method: .post) { response in
                expectProblem(response, status: .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, HEAD")
            }
        }
    }

    @Test("an unknown route is a 404 problem")
    func unknownRoute() async throws {
        try await withEmptyEngineAfter { client in
            try await client.execute(uri: "/nowhere", method: .get) { response in
                expectProblem(response, status: .notFound, mentioning: "/nowhere")
            }
            try await client.post("/identify/more", json: "{}") { response in
                expectProblem(response, status: .notFound)
            }
        }
    }

    @Test("GET /contacts/abc is a 400 problem naming the id")
    func contactIdNotANumber() async throws {
        try await withEmptyEngineAfter { client in
            try await client.execute(uri: "/contacts/abc", method: .get) { response in
                expectProblem(response, status: .badRequest, mentioning: "id")
            }
            for id in ["-1", "0", "+1", "1.5"] {
                try await client.execute(uri: "/contacts/\(id)", method: .get) { response in
                    expectProblem(response, status: .badRequest)
                }
            }
            try await client.execute(uri: "/contacts/99", method: .get) { response in
                expectProblem(response, status: .notFound)
            }
        }
    }

    @Test("GET /contacts/{id} answers the Contact record with every field; an unknown contact is a 404 problem")
    func contactRecord() async throws {
        try await withApplication { client in
            try await client.post("/identify", json: #"{"email":"doc@hillvalley.edu"}"#)
            try await client.execute(uri: "/contacts/1", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let record = response.json
                #expect(record["id"] as? Int == 1)
                #expect(record["email"] as? String == "doc@hillvalley.edu")
                #expect(record["phoneNumber"] is NSNull)
                #expect(record["linkedId"] is NSNull)
                #expect(record["linkPrecedence"] as? String == "primary")
                #expect(record["createdAt"] is String && record["updatedAt"] is String)
                #expect(record["deletedAt"] is NSNull)
            }
            try await client.execute(uri: "/contacts/2", method: .get) { response in
                expectProblem(response, status: .notFound, mentioning: "2")
            }
        }
    }

    @Test("healthz answers 200")
    func healthz() async throws {
        try await withApplication { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.json["status"] as? String == "ok")
            }
        }
    }

    @Test("the form page is served and posts to the identify endpoint, blank fields as null")
    func formPage() async throws {
        try await withApplication { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                let page = response.text
                #expect(page.contains("<form"))
                #expect(page.contains(#"api("/identify""#))
                // It asks for a token, and sends one only when given.
                #expect(page.contains(#"id="token""#) && page.contains(#"if (token !== "") headers["Authorization"]"#))
                #expect(page.contains(#"id="email""#) && page.contains(#"id="phoneNumber""#))
                #expect(page.contains(#"=== "" ? null"#))
                #expect(
                    !page.contains("http://") && !page.contains("https://"), "the page must not load external assets"
                )
            }
        }
    }

    // MARK: - Looking up without writing

    @Test("a dry run answers what identify would, with what it would do, and writes nothing")
    func dryRun() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine) { client in
            for body in [#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"2"}"#] {
                try await client.post("/identify", json: body)
            }
            try await client.post("/identify?dryRun=true", json: #"{"email":"a@x.io","phoneNumber":"2"}"#) { response in
                #expect(response.status == .ok)
                #expect(response.text == #"{"contact":{"primaryContactId":1,"emails":["a@x.io","b@x.io"],"#
                    + #""phoneNumbers":["1","2"],"secondaryContactIds":[2]},"#
                    + #""dryRun":{"created":[],"mergedPrimaryIds":[2]}}"#)
            }
            try await client.post("/api/identify?dryRun=true", json: #"{"email":"c@x.io"}"#) { response in
                #expect(response.text == #"{"contact":{"primaryContactId":3,"emails":["c@x.io"],"phoneNumbers":[],"#
                    + #""secondaryContactIds":[]},"dryRun":{"created":[3],"mergedPrimaryIds":[]}}"#)
            }
            try await client.execute(uri: "/contacts/3", method: .get) { response in
                #expect(response.status == .notFound)
            }
        }
        #expect((await engine.statistics).contacts == 2)
        #expect((await engine.statistics).profiles == 2)
        #expect((await engine.latestSeq) == 2)
    }

    @Test("dryRun other than true or false is a 400 problem that writes nothing; false is identify")
    func dryRunValues() async throws {
        try await withEmptyEngineAfter { client in
            for value in ["yes", "1", "TRUE", ""] {
                try await client.post("/identify?dryRun=\(value)", json: #"{"email":"a@x.io"}"#) { response in
                    expectProblem(response, status: .badRequest, mentioning: "dryRun")
                }
            }
        }
        try await withApplication { client in
            try await client.post("/identify?dryRun=false", json: #"{"email":"a@x.io"}"#) { response in
                #expect(response.status == .ok)
                #expect(response.json["dryRun"] == nil)
            }
            try await client.execute(uri: "/contacts/1", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("GET /profiles answers the profiles holding the email or the phone number, by primary; it writes nothing")
    func lookup() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine) { client in
            for body in [#"{"email":"a@x.io","phoneNumber":"+1"}"#, #"{"email":"b@x.io","phoneNumber":"2"}"#] {
                try await client.post("/identify", json: body)
            }
            try await client.execute(uri: "/profiles?phoneNumber=2&email=A%40X.io", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.text == #"{"profiles":["#
                    + #"{"primaryContactId":1,"emails":["a@x.io"],"phoneNumbers":["+1"],"secondaryContactIds":[]},"#
                    + #"{"primaryContactId":2,"emails":["b@x.io"],"phoneNumbers":["2"],"secondaryContactIds":[]}]}"#)
            }
            try await client.execute(uri: "/profiles?phoneNumber=+1", method: .get) { response in
                #expect((response.json["profiles"] as? [Any])?.count == 1, "+ is a plus sign: \(response.text)")
            }
            try await client.execute(uri: "/profiles?email=nobody@x.io", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.text == #"{"profiles":[]}"#)
            }
            for query in ["", "?email=", "?email=not-an-email", "?email=%zz", "?email=a@x.io&email=b@x.io"] {
                try await client.execute(uri: "/profiles\(query)", method: .get) { response in
                    expectProblem(response, status: .badRequest)
                }
            }
            try await client.execute(uri: "/profiles/2", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.json["contact"] != nil)
            }
            try await client.execute(uri: "/profiles/9", method: .get) { response in
                expectProblem(response, status: .notFound)
            }
        }
        #expect((await engine.statistics).contacts == 2)
        #expect((await engine.latestSeq) == 2)
    }

    // MARK: - explain, keep-apart, the change feed

    @Test("GET /explain names the chain of contacts that links two contacts")
    func explain() async throws {
        try await withApplication { client in
            for body in [#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"1"}"#] {
                try await client.post("/identify", json: body)
            }
            try await client.execute(uri: "/explain?from=1&to=2", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.text == #"{"linked":true,"steps":[{"from":1,"to":2,"phoneNumber":"1"}]}"#)
            }
            try await client.execute(uri: "/explain?from=2&to=2", method: .get) { response in
                #expect(response.text == #"{"linked":true,"steps":[]}"#)
            }
        }
    }

    @Test("GET /explain without both ids, or with one that is not a positive whole number, is a 400 problem")
    func explainBadQuery() async throws {
        try await withEmptyEngineAfter { client in
            for query in ["", "?from=1", "?to=1", "?from=abc&to=1", "?from=0&to=1", "?from=1&to=-2", "?from=+1&to=1"] {
                try await client.execute(uri: "/explain\(query)", method: .get) { response in
                    expectProblem(response, status: .badRequest)
                }
            }
            try await client.execute(uri: "/explain?from=1&to=9", method: .get) { response in
                expectProblem(response, status: .notFound)
            }
        }
    }

    @Test("DELETE /keep-apart removes a rule with 204; an unknown rule is a 404 problem")
    func keepApart() async throws {
        try await withApplication { client in
            for body in [
                #"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io","phoneNumber":"2"}"#,
                #"{"email":"a@x.io","phoneNumber":"2"}"#,
            ] {
                try await client.post("/identify", json: body)
            }
            let link = #"{"email":"a@x.io","phoneNumber":"2","keepApart":true}"#
            try await client.post("/unmerge", json: link) { response in
                #expect(response.status == .ok, "\(response.text)")
            }
            try await client.execute(uri: "/keep-apart", method: .get) { response in
                let rules = response.json["rules"] as? [[String: Any]] ?? []
                #expect(rules.count == 1, "\(response.text)")
                #expect(rules.first?["email"] as? String == "a@x.io")
                #expect(rules.first?["phoneNumber"] as? String == "2")
            }
            try await client.execute(uri: "/keep-apart?email=A@x.io&phoneNumber=2", method: .delete) { response in
                #expect(response.status == .noContent)
                #expect(response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/keep-apart", method: .get) { response in
                #expect(response.text == #"{"rules":[]}"#)
            }
            try await client.execute(uri: "/keep-apart?email=a@x.io&phoneNumber=2", method: .delete) { response in
                expectProblem(response, status: .notFound)
            }
            try await client.execute(uri: "/keep-apart?email=a@x.io", method: .delete) { response in
                expectProblem(response, status: .badRequest)
            }
        }
    }

    @Test("GET /changes pages through the events by after and limit, with the latest seq")
    func changesPaging() async throws {
        try await withApplication { client in
            for index in 1...3 {
                try await client.post("/identify", json: #"{"email":"c\#(index)@x.io"}"#)
            }
            func seqs(_ response: TestResponse) -> [Int] {
                (response.json["changes"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
            }
            try await client.execute(uri: "/changes", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(seqs(response) == [1, 2, 3])
                #expect(response.json["latestSeq"] as? Int == 3)
                let first = (response.json["changes"] as? [[String: Any]])?.first
                #expect(first?["type"] as? String == "created")
                #expect(first?["contactIds"] as? [Int] == [1])
                #expect(!response.text.contains("@x.io"), "events carry ids, never emails")
            }
            try await client.execute(uri: "/changes?after=0&limit=2", method: .get) { response in
                #expect(seqs(response) == [1, 2])
                #expect(response.json["latestSeq"] as? Int == 3)
            }
            try await client.execute(uri: "/changes?after=2&limit=2", method: .get) { response in
                #expect(seqs(response) == [3])
            }
            try await client.execute(uri: "/changes?after=3", method: .get) { response in
                #expect(seqs(response) == [])
                #expect(response.json["latestSeq"] as? Int == 3)
            }
        }
    }

    @Test("GET /changes with an after or a limit out of range or not a whole number is a 400 problem")
    func changesBadQuery() async throws {
        try await withEmptyEngineAfter { client in
            for query in [
                "after=-1", "after=x", "after=+1", "limit=0", "limit=10001", "limit=100000", "limit=1.5",
                "after=1&after=2",
            ] {
                try await client.execute(uri: "/changes?\(query)", method: .get) { response in
                    expectProblem(response, status: .badRequest)
                }
            }
            try await client.execute(uri: "/changes?limit=10000", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    // MARK: - Operating it

    @Test("GET /metrics answers 200 in Prometheus text format, counting requests by transport, op and status")
    func metrics() async throws {
        try await withApplication { client in
            try await client.post("/identify", json: #"{"email":"a@x.io"}"#)
            try await client.execute(uri: "/contacts/9", method: .get)
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                for series in [
                    #"identity_graph_requests_total{transport="http",op="identify",status="200"} 1"#,
                    #"identity_graph_requests_total{transport="http",op="contact",status="404"} 1"#,
                    "identity_graph_contacts 1", "identity_graph_latest_change_seq 1",
                ] {
                    #expect(response.text.contains(series), "missing \(series)")
                }
                #expect(!response.text.contains("@x.io"), "personal data in the metrics")
            }
        }
    }

    @Test("GET /openapi.json answers 200 with the OpenAPI document")
    func openAPI() async throws {
        try await withApplication { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                // The file in the repository, not the constant the route serves: a route that served
                // anything else, or a resource that did not ship, fails here.
                let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .deletingLastPathComponent().appendingPathComponent("Sources/IdentityServer/HTTP/openapi.json")
                let bytes = Array((try? Data(contentsOf: file)) ?? Data())
                #expect(!bytes.isEmpty, "cannot read \(file.path)")
                #expect(Array(response.body.readableBytesView) == bytes)
                #expect(response.json["openapi"] as? String == "3.1.0")
            }
        }
    }

    // MARK: - Access control

    /// Routes that need a role, with a request that the role lets through.
    static let guarded: [(method: HTTPRequest.Method, uri: String, body: String?, role: Role)] = [
        (.post, "/identify", #"{"email":"m@x.io"}"#, .write),
        (.post, "/api/identify", #"{"email":"n@x.io"}"#, .write),
        (.post, "/identify?dryRun=true", #"{"email":"o@x.io"}"#, .read),
        (.get, "/profiles?email=a@x.io", nil, .read),
        (.get, "/profiles/1", nil, .read),
        (.get, "/contacts/1", nil, .read),
        (.get, "/explain?from=1&to=1", nil, .read),
        (.get, "/changes", nil, .read),
        (.get, "/keep-apart", nil, .read),
        (.delete, "/keep-apart?email=a@x.io&phoneNumber=1", nil, .admin),
        (.post, "/unmerge", #"{"email":"a@x.io","phoneNumber":"2"}"#, .admin),
        (.post, "/erase", #"{"email":"zz@x.io"}"#, .admin),
        (.delete, "/contacts/99", nil, .admin),
        (.delete, "/profiles/99", nil, .admin),
    ]

    static let tokenOfRole = TestTokens.byRole

    private func headers(bearer token: String?) -> HTTPFields {
        var headers = Self.json
        if let token { headers[.authorization] = "Bearer \(token)" }
        return headers
    }

    @Test("without a token, or with an unknown one, a route that needs a role is 401 with WWW-Authenticate: Bearer")
    func unauthenticated() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine, access: AccessControl(tokens: Self.tokens)) { client in
            for route in Self.guarded {
                for token in [nil, "not-a-known-token", ""] {
                    try await client.execute(
                        uri: route.uri, method: route.method, headers: headers(bearer: token),
                        body: route.body.map { ByteBuffer(string: $0) }
                    ) { response in
                        expectProblem(response, status: .unauthorized)
                        #expect(response.headers[.wwwAuthenticate] == "Bearer", "\(route.method) \(route.uri)")
                    }
                }
            }
            try await client.execute(
                uri: "/identify", method: .post, headers: [.authorization: "Basic \(TestTokens.read)"],
                body: ByteBuffer(string: #"{"email":"a@x.io"}"#)
            ) { response in
                #expect(response.status == .unauthorized, "only a Bearer token counts")
            }
        }
        #expect((await engine.statistics).contacts == 0)
    }

    @Test("authentication comes before the body is read: a bad body without a token is 401, not 400")
    func authenticationFirst() async throws {
        try await withApplication(access: AccessControl(tokens: Self.tokens)) { client in
            try await client.post("/identify", json: "{not json") { response in
                expectProblem(response, status: .unauthorized)
            }
            try await client.execute(
                uri: "/identify", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "x")
            ) { response in
                expectProblem(response, status: .unauthorized)
            }
        }
    }

    @Test("a token whose role is too low is a 403 problem naming the role needed")
    func forbidden() async throws {
        let engine = IdentityEngine()
        try await withApplication(engine: engine, access: AccessControl(tokens: Self.tokens)) { client in
            for route in Self.guarded {
                for role in [Role.read, .write, .admin] where role < route.role {
                    try await client.execute(
                        uri: route.uri, method: route.method, headers: headers(bearer: Self.tokenOfRole[role]),
                        body: route.body.map { ByteBuffer(string: $0) }
                    ) { response in
                        expectProblem(response, status: .forbidden, mentioning: "\(route.role)")
                        #expect(response.headers[.wwwAuthenticate] == nil)
                    }
                }
            }
        }
        #expect((await engine.statistics).contacts == 0)
    }

    @Test("a token with the role a route needs, or a higher one, is let through")
    func allowed() async throws {
        try await withApplication(access: AccessControl(tokens: Self.tokens)) { client in
            try await client.execute(
                uri: "/identify", method: .post, headers: headers(bearer: Self.tokenOfRole[.write]),
                body: ByteBuffer(string: #"{"email":"a@x.io","phoneNumber":"1"}"#)
            ) { response in
                #expect(response.status == .ok)
            }
            for route in Self.guarded {
                for role in [Role.read, .write, .admin] where role >= route.role {
                    try await client.execute(
                        uri: route.uri, method: route.method, headers: headers(bearer: Self.tokenOfRole[role]),
                        body: route.body.map { ByteBuffer(string: $0) }
                    ) { response in
                        let label = "\(route.method) \(route.uri) as \(role): \(response.status) \(response.text)"
                        #expect(![.unauthorized, .forbidden].contains(response.status), "\(label)")
                        #expect(response.status.code < 500, "\(label)")
                    }
                }
            }
        }
    }

    @Test("healthz, metrics, openapi.json and the page are open to all")
    func openRoutes() async throws {
        try await withApplication(access: AccessControl(tokens: Self.tokens)) { client in
            for uri in ["/healthz", "/metrics", "/openapi.json", "/"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok, "\(uri): \(response.text.prefix(200))")
                }
            }
        }
    }
}

extension TestClientProtocol {
    /// A `POST` of `json` with `Content-Type: application/json`, as a client of the API sends it.
    @discardableResult func post<Return>(
        _ uri: String, json: String, testCallback: @escaping (TestResponse) async throws -> Return = { $0 }
    ) async throws -> Return {
        try await execute(
            uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: json),
            testCallback: testCallback
        )
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body parsed as a JSON object; empty when it is not one.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
}

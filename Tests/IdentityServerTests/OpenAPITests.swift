import Foundation
import Testing

@testable import IdentityServer

/// `openapi.json` (SPEC.md section 15) against the server: it documents exactly the routes of
/// ``HTTPRoutes``, every route answers on a real server with a status and a media type the document
/// lists for it, and `GET /openapi.json` serves the file byte for byte. `.ci/schemathesis` goes further
/// and fuzzes every operation against the schemas.
@Suite(.timeLimit(.minutes(5))) struct OpenAPITests {
    /// Tests/IdentityServerTests/OpenAPITests.swift → Sources/IdentityServer/HTTP/openapi.json.
    static let documentURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/IdentityServer/HTTP/openapi.json")

    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The file's bytes, as the repository holds it.
    private func documentBytes() throws -> [UInt8] {
        Array(try Data(contentsOf: Self.documentURL))
    }

    private func document() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(try documentBytes()))
        return try #require(object as? [String: Any], "openapi.json is not a JSON object")
    }

    /// `"METHOD /path"` for every operation of the document.
    private func documentedRoutes(_ document: [String: Any]) throws -> [String: [String: Any]] {
        let paths = try #require(document["paths"] as? [String: [String: Any]], "the document has no paths")
        var operations: [String: [String: Any]] = [:]
        for (path, item) in paths {
            for method in Self.methods {
                guard let operation = item[method] else { continue }
                operations["\(method.uppercased()) \(path)"] = try #require(operation as? [String: Any])
            }
        }
        return operations
    }

    @Test("openapi.json parses as JSON and is an OpenAPI 3.1.0 document")
    func parses() throws {
        let document = try document()
        #expect(document["openapi"] as? String == "3.1.0")
        let info = document["info"] as? [String: Any]
        #expect(info?["title"] as? String == "identity-graph")
        #expect(info?["version"] is String)
    }

    @Test("every $ref in openapi.json points at something in the document")
    func referencesResolve() throws {
        let document = try document()
        var unresolved: [String] = []
        func visit(_ value: Any) {
            if let object = value as? [String: Any] {
                if let reference = object["$ref"] as? String, resolve(reference, in: document) == nil {
                    unresolved.append(reference)
                }
                object.values.forEach(visit)
            } else if let array = value as? [Any] {
                array.forEach(visit)
            }
        }
        visit(document)
        #expect(unresolved.isEmpty, "unresolved: \(unresolved.sorted())")
    }

    private func resolve(_ reference: String, in document: [String: Any]) -> Any? {
        guard reference.hasPrefix("#/") else { return nil }
        var node: Any = document
        for token in reference.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            guard let next = (node as? [String: Any])?[key] else { return nil }
            node = next
        }
        return node
    }

    /// `"METHOD /path"` for every operation of the route table, with its query parameters and role;
    /// for a method served by two operations (a dry run before identify), the one without a condition.
    static var tableOperations: [String: HTTPOperation] {
        var operations: [String: HTTPOperation] = [:]
        for route in IdentityHTTPResponder.routes {
            for operation in route.operations where operation.applies == nil {
                operations["\(operation.method.rawValue) \(route.path)"] = operation
            }
        }
        return operations
    }

    @Test("openapi.json documents exactly the route table: paths, methods, query parameters and roles")
    func documentMatchesRoutes() throws {
        let document = try document()
        let operations = try documentedRoutes(document)
        let served = Self.tableOperations
        let routeCount = IdentityHTTPResponder.routes.flatMap { route in
            Set(route.operations.map(\.method.rawValue)).map { "\($0) \(route.path)" }
        }.count
        #expect(served.count == routeCount, "the route table serves a method of a path without an unconditional operation")
        let documentedNames = Set(operations.keys)
        let servedNames = Set(served.keys)
        #expect(servedNames.subtracting(documentedNames).isEmpty, "served, not documented: \(servedNames.subtracting(documentedNames).sorted())")
        #expect(documentedNames.subtracting(servedNames).isEmpty, "documented, not served: \(documentedNames.subtracting(servedNames).sorted())")
        for (name, operation) in served {
            guard let documented = operations[name] else { continue }
            let parameters = (documented["parameters"] as? [Any] ?? []).compactMap { parameter -> String? in
                var parameter = parameter as? [String: Any] ?? [:]
                if let reference = parameter["$ref"] as? String {
                    parameter = resolve(reference, in: document) as? [String: Any] ?? [:]
                }
                return parameter["in"] as? String == "query" ? parameter["name"] as? String : nil
            }
            #expect(Set(parameters) == Set(operation.parameters), "\(name): documented \(parameters), served \(operation.parameters)")
            let security = documented["security"] as? [[String: [String]]]
            let documentedRole = security?.first?["bearer"]?.first
            #expect(documentedRole == operation.role?.description, "\(name): documented role \(documentedRole ?? "none"), served \(operation.role?.description ?? "none")")
        }
    }

    @Test("the resource shipped with the server is openapi.json byte for byte")
    func shippedResource() throws {
        #expect(OpenAPIDocument.bytes == (try documentBytes()))
    }

    /// The order the live test sends its examples in: the order of ``examples`` below.
    static func exampleOrder(_ first: String, _ second: String) -> Bool {
        (exampleSequence.firstIndex(of: first) ?? .max) < (exampleSequence.firstIndex(of: second) ?? .max)
    }

    static let exampleSequence = [
        "POST /identify", "POST /api/identify", "GET /healthz", "GET /", "GET /profiles", "GET /profiles/{id}",
        "DELETE /profiles/{id}", "GET /contacts/{id}", "DELETE /contacts/{id}", "GET /explain", "POST /erase",
        "POST /unmerge", "GET /keep-apart", "DELETE /keep-apart", "GET /changes", "GET /cluster", "GET /metrics", "GET /openapi.json",
    ]

    /// The request the live test sends for each route, in ``exampleSequence`` order on one new store:
    /// identify creates contact 1, `DELETE /profiles/1` erases it, and what follows sees its tombstone;
    /// unmerge and the keep-apart rule name nothing that exists (`404`, a status the document lists).
    static let examples: [String: (target: String, body: String?)] = [
        "POST /identify": ("/identify", #"{"email":"doc@hillvalley.edu","phoneNumber":"123456"}"#),
        "POST /api/identify": ("/api/identify?dryRun=true", #"{"email":"marty@hillvalley.edu","phoneNumber":"123456"}"#),
        "GET /healthz": ("/healthz", nil),
        "GET /": ("/", nil),
        "GET /profiles": ("/profiles?email=doc@hillvalley.edu&phoneNumber=%2B49%20123", nil),
        "GET /profiles/{id}": ("/profiles/1", nil),
        "DELETE /profiles/{id}": ("/profiles/1", nil),
        "GET /contacts/{id}": ("/contacts/1", nil),
        "DELETE /contacts/{id}": ("/contacts/1", nil),
        "GET /explain": ("/explain?from=1&to=1", nil),
        "POST /erase": ("/erase", #"{"email":"doc@hillvalley.edu"}"#),
        "POST /unmerge": ("/unmerge", #"{"email":"doc@hillvalley.edu","phoneNumber":"123456","keepApart":true}"#),
        "GET /keep-apart": ("/keep-apart", nil),
        "DELETE /keep-apart": ("/keep-apart?email=doc@hillvalley.edu&phoneNumber=123456", nil),
        "GET /changes": ("/changes?after=0&limit=10", nil),
        "GET /cluster": ("/cluster", nil),
        "GET /metrics": ("/metrics", nil),
        "GET /openapi.json": ("/openapi.json", nil),
    ]

    @Test("every route answers on a live server, with a status and a media type the document lists")
    func everyRouteAnswers() throws {
        let document = try document()
        let operations = try documentedRoutes(document)
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        for name in Self.tableOperations.keys.sorted(by: Self.exampleOrder) {
            let method = String(name.prefix { $0 != " " })
            let example = try #require(Self.examples[name], "no example request for \(name)")
            var headers: [String: String] = [:]
            if example.body != nil { headers["Content-Type"] = "application/json" }
            let answer = try HTTPExchange.send(
                port: server.httpPort, method: method, path: example.target, headers: headers,
                body: Array((example.body ?? "").utf8)
            )
            let unknownPath = answer.status == 404 && (answer.json["detail"] as? String)?.hasPrefix("no resource at") == true
            #expect(!unknownPath, "\(name): the server does not know \(example.target)")
            #expect(answer.status != 405, "\(name): \(answer.text)")
            let responses = operations[name]?["responses"] as? [String: Any] ?? [:]
            let documented = responses["\(answer.status)"] as? [String: Any]
            #expect(documented != nil, "\(name) answered \(answer.status), which the document does not list: \(answer.text)")
            if var response = documented, answer.status != 204 {
                if let reference = response["$ref"] as? String {
                    response = resolve(reference, in: document) as? [String: Any] ?? [:]
                }
                let mediaTypes = Set(((response["content"] as? [String: Any]) ?? [:]).keys.map(Self.mediaType))
                let received = Self.mediaType(answer.headers["content-type"] ?? "")
                #expect(mediaTypes.contains(received), "\(name) answered \(received), documented: \(mediaTypes.sorted())")
            }
        }
        #expect(server.stop() == 0)
    }

    /// `text/plain; version=0.0.4` → `text/plain`.
    private static func mediaType(_ contentType: String) -> String {
        contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
    }

    @Test("GET /openapi.json serves the document: 200, application/json, the file's bytes")
    func servesDocument() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let answer = try HTTPExchange.get(port: server.httpPort, path: "/openapi.json")
        #expect(answer.status == 200)
        #expect(answer.headers["content-type"] == "application/json")
        #expect(answer.body == (try documentBytes()))
        #expect(server.stop() == 0)
    }

    @Test("openapi-spec-validator accepts openapi.json as OpenAPI 3.1")
    func validatorAccepts() throws {
        // openapi-spec-validator from PyPI, installed by `.ci/setup --tests`.
        let result = try runPython(["-m", "openapi_spec_validator", "--schema", "3.1", Self.documentURL.path], timeout: 120)
        #expect(result.status == 0, "\(result.output) (run .ci/setup --tests to install openapi-spec-validator)")
    }
}

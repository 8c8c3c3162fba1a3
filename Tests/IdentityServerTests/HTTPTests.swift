import Foundation
import Testing

/// The HTTP API over a real socket: every error is a problem document with its status, and a
/// rejected request writes nothing.
@Suite struct HTTPTests {
    /// Starts a server on a fresh store, runs `body`, then checks that the store is still empty.
    private func withEmptyStoreAfter(_ body: (ServerProcess) throws -> Void) throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        try body(server)
        let first = try HTTPExchange.get(port: server.httpPort, path: "/contacts/1")
        #expect(first.status == 404, "a rejected request wrote a contact")
        #expect(server.stop() == 0)
    }

    private func expectProblem(_ answer: HTTPExchange, status: Int, mentioning: String? = nil) {
        #expect(answer.status == status, "\(answer.text)")
        #expect(answer.headers["content-type"] == "application/problem+json")
        #expect(answer.json["status"] as? Int == status)
        #expect((answer.json["title"] as? String)?.isEmpty == false)
        let detail = answer.json["detail"] as? String ?? ""
        #expect(!detail.isEmpty)
        if let mentioning { #expect(detail.contains(mentioning), "\(detail)") }
    }

    @Test("malformed JSON is a 400 problem")
    func malformedJSON() throws {
        try withEmptyStoreAfter { server in
            expectProblem(try HTTPExchange.post(port: server.httpPort, json: #"{"email":"#), status: 400,
                          mentioning: "malformed JSON")
        }
    }

    @Test("invalid UTF-8 is a 400 problem")
    func invalidUTF8() throws {
        try withEmptyStoreAfter { server in
            let body = Array(#"{"email":""#.utf8) + [0xFF, 0xFE] + Array(#"@x.io"}"#.utf8)
            expectProblem(try HTTPExchange.post(port: server.httpPort, json: body), status: 400, mentioning: "UTF-8")
        }
    }

    @Test("a JSON array body is a 400 problem")
    func arrayBody() throws {
        try withEmptyStoreAfter { server in
            expectProblem(try HTTPExchange.post(port: server.httpPort, json: #"[{"email":"a@x.io"}]"#), status: 400)
        }
    }

    @Test("an invalid field is a 400 problem naming the field")
    func invalidField() throws {
        try withEmptyStoreAfter { server in
            let answer = try HTTPExchange.post(port: server.httpPort, json: #"{"phoneNumber":1.5}"#)
            expectProblem(answer, status: 400, mentioning: "phoneNumber")
            let neither = try HTTPExchange.post(port: server.httpPort, path: "/api/identify", json: "{}")
            expectProblem(neither, status: 400, mentioning: "email")
        }
    }

    @Test("a body over the limit is a 413 problem")
    func bodyTooLarge() throws {
        try withEmptyStoreAfter { server in
            let padding = String(repeating: "x", count: 70_000)
            let answer = try HTTPExchange.post(port: server.httpPort, json: #"{"email":"a@x.io","pad":"\#(padding)"}"#)
            expectProblem(answer, status: 413, mentioning: "65536")
        }
    }

    @Test("a body of exactly the limit is accepted")
    func bodyAtLimit() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let prefix = #"{"email":"a@x.io","pad":""#
        let padding = String(repeating: "x", count: 65_536 - prefix.utf8.count - 2)
        let answer = try HTTPExchange.post(port: server.httpPort, json: prefix + padding + #""}"#)
        #expect(answer.status == 200)
    }

    @Test("a body that is not JSON is a 415 problem")
    func notJSON() throws {
        try withEmptyStoreAfter { server in
            for type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
                let answer = try HTTPExchange.send(
                    port: server.httpPort, method: "POST", path: "/identify", headers: ["Content-Type": type],
                    body: Array(#"{"email":"a@x.io"}"#.utf8)
                )
                expectProblem(answer, status: 415, mentioning: type)
            }
        }
    }

    @Test("application/*+json and a missing Content-Type are JSON")
    func jsonMediaTypes() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let body = Array(#"{"email":"a@x.io"}"#.utf8)
        for headers in [["Content-Type": "application/merge-patch+json"], ["Content-Type": "application/json; charset=utf-8"], [:]] {
            let answer = try HTTPExchange.send(port: server.httpPort, method: "POST", path: "/identify",
                                               headers: headers, body: body)
            #expect(answer.status == 200, "\(headers): \(answer.text)")
        }
    }

    @Test("a wrong method is a 405 problem with Allow")
    func wrongMethod() throws {
        try withEmptyStoreAfter { server in
            let get = try HTTPExchange.get(port: server.httpPort, path: "/identify")
            expectProblem(get, status: 405)
            #expect(get.headers["allow"] == "POST")
            let put = try HTTPExchange.send(port: server.httpPort, method: "PUT", path: "/contacts/1")
            expectProblem(put, status: 405)
            #expect(put.headers["allow"] == "GET, DELETE")
            let post = try HTTPExchange.send(port: server.httpPort, method: "POST", path: "/changes")
            expectProblem(post, status: 405)
            #expect(post.headers["allow"] == "GET")
        }
    }

    @Test("an unknown route is a 404 problem")
    func unknownRoute() throws {
        try withEmptyStoreAfter { server in
            expectProblem(try HTTPExchange.get(port: server.httpPort, path: "/nowhere"), status: 404)
            expectProblem(try HTTPExchange.post(port: server.httpPort, path: "/identify/more", json: "{}"), status: 404)
        }
    }

    @Test("GET /contacts/abc is a 400 problem naming the id")
    func contactIdNotANumber() throws {
        try withEmptyStoreAfter { server in
            expectProblem(try HTTPExchange.get(port: server.httpPort, path: "/contacts/abc"), status: 400, mentioning: "id")
            expectProblem(try HTTPExchange.get(port: server.httpPort, path: "/contacts/-1"), status: 400)
            expectProblem(try HTTPExchange.get(port: server.httpPort, path: "/contacts/99"), status: 404)
        }
    }

    @Test("healthz answers 200")
    func healthz() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let answer = try HTTPExchange.get(port: server.httpPort, path: "/healthz")
        #expect(answer.status == 200)
        #expect(answer.json["status"] as? String == "ok")
    }

    @Test("the form page is served and posts to the identify endpoint, blank fields as null")
    func formPage() throws {
        let directory = TemporaryDirectory()
        let server = try ServerProcess(dataDirectory: directory.store)
        let answer = try HTTPExchange.get(port: server.httpPort, path: "/")
        #expect(answer.status == 200)
        #expect(answer.headers["content-type"]?.hasPrefix("text/html") == true)
        let page = answer.text
        #expect(page.contains("<form"))
        #expect(page.contains(#"fetch("/identify""#))
        #expect(page.contains(#"id="email""#) && page.contains(#"id="phoneNumber""#))
        #expect(page.contains(#"=== "" ? null"#))
        #expect(!page.contains("http://") && !page.contains("https://"), "the page must not load external assets")
    }
}

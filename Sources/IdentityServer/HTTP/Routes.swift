/// Every route the HTTP API answers (SPEC.md sections 6 and 9 to 15), as a method and a path
/// template in OpenAPI's spelling (`/profiles/{id}`). `openapi.json` documents exactly these:
/// `OpenAPITests` compares the two in both directions, so a route added to the responder without
/// its documentation, or documented but not served, fails the tests.
enum HTTPRoutes {
    static let all: [(method: String, path: String)] = [
        ("POST", "/identify"),
        ("POST", "/api/identify"),
        ("GET", "/healthz"),
        ("GET", "/"),
        ("GET", "/profiles"),
        ("GET", "/profiles/{id}"),
        ("DELETE", "/profiles/{id}"),
        ("GET", "/contacts/{id}"),
        ("DELETE", "/contacts/{id}"),
        ("GET", "/explain"),
        ("POST", "/erase"),
        ("POST", "/unmerge"),
        ("GET", "/keep-apart"),
        ("DELETE", "/keep-apart"),
        ("GET", "/changes"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]
}

import HTTPTypes
import Hummingbird
import IdentityGraph

/// One path of the HTTP API (SPEC.md sections 6 and 9 to 15) and the operations it serves. The table of
/// them, ``IdentityHTTPResponder/routes``, is the one source of every fact about a route: routing, `405`
/// with `Allow`, `HEAD`, the query-parameter check, the role (section 14), the metrics label and whether
/// the operation writes (which cluster mode forwards to the leader). `OpenAPITests` compares it with
/// `openapi.json`, and `HTTPRouteTableTests` with SPEC's role list.
struct HTTPRoute: Sendable {
    /// The path in OpenAPI's spelling; `{id}` stands for one path segment (`/contacts/{id}`).
    let path: String
    let operations: [HTTPOperation]

    /// What comes before `{id}` in a path template, `nil` for a fixed path.
    private let prefix: Substring?

    init(_ path: String, _ operations: [HTTPOperation]) {
        self.path = path
        self.operations = operations
        self.prefix = path.hasSuffix("{id}") ? path.dropLast("{id}".count) : nil
    }

    /// Whether `requestPath` (trailing `/` already removed) names this route; for a template, also the
    /// text that stands for `{id}` (validated by the handler, so that `/contacts/abc` is a `400`).
    func match(_ requestPath: Substring) -> (matched: Bool, id: Substring?) {
        guard let prefix else { return (requestPath == path, nil) }
        guard requestPath.count > prefix.count, requestPath.hasPrefix(prefix) else { return (false, nil) }
        return (true, requestPath.dropFirst(prefix.count))
    }

    /// The methods the path serves, as `Allow` lists them: `HEAD` beside every `GET`.
    var allowedMethods: [HTTPRequest.Method] {
        var methods: [HTTPRequest.Method] = []
        for operation in operations where !methods.contains(operation.method) {
            methods.append(operation.method)
            if operation.method == .get { methods.append(.head) }
        }
        return methods
    }

    /// The operation a request with `method` and `query` runs: the first whose method matches and whose
    /// condition holds (`HEAD` runs the `GET` operation). `nil` when the path does not serve the method.
    func operation(for method: HTTPRequest.Method, query: QueryParameters?) -> HTTPOperation? {
        let method = method == .head ? .get : method
        return operations.first { $0.method == method && ($0.applies?(query) ?? true) }
    }
}

/// One method of one route.
struct HTTPOperation: Sendable {
    /// What a handler is given: the request, its query (parsed once, already checked against the
    /// operation's parameters) and, for a template path, the text of `{id}`.
    struct Call: Sendable {
        let request: Request
        let query: QueryParameters
        let id: Substring?
    }

    typealias Handler = @Sendable (IdentityHTTPResponder, Call) async throws -> Response

    let method: HTTPRequest.Method
    /// The operation's name: its metrics label (`op`), and its `operationId` in `openapi.json`.
    let name: String
    /// The role a request needs (SPEC.md section 14); `nil` when it is open to all.
    let role: Role?
    /// The query parameters it defines; any other is a `400`, so that a typo never writes.
    let parameters: [String]
    /// Whether it may change the store.
    let writes: Bool
    /// When set, the operation applies only to requests whose query it accepts; the route's next
    /// operation of the same method takes the others (a dry run before identify).
    let applies: (@Sendable (QueryParameters?) -> Bool)?
    let handler: Handler

    init(
        _ method: HTTPRequest.Method, _ name: String, role: Role?, parameters: [String] = [], writes: Bool = false,
        when applies: (@Sendable (QueryParameters?) -> Bool)? = nil, handler: @escaping Handler
    ) {
        self.method = method
        self.name = name
        self.role = role
        self.parameters = parameters
        self.writes = writes
        self.applies = applies
        self.handler = handler
    }

    /// A `400` for the first query parameter the operation does not define, naming those it does.
    func checkParameters(_ query: QueryParameters) throws(RequestError) {
        guard let unknown = query.names.first(where: { !parameters.contains($0) }) else { return }
        let takes = parameters.isEmpty ? "this route takes none" : "this route takes: \(parameters.joined(separator: ", "))"
        throw RequestError(field: nil, reason: "unknown query parameter \"\(unknown)\"; \(takes)")
    }
}

extension HTTPRoute {
    /// The route `path` names and the text of its `{id}`; a trailing `/` is ignored (SPEC.md section 6).
    static func find(_ path: String, in routes: [HTTPRoute]) -> (route: HTTPRoute, id: Substring?)? {
        var path = Substring(path)
        if path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        for route in routes {
            let (matched, id) = route.match(path)
            if matched { return (route, id) }
        }
        return nil
    }
}

import IdentityGraph

/// One parsed line of the line protocol (SPEC.md section 7): the identify fields plus `op`, `id`
/// and `contactId`.
struct LineRequest {
    enum Operation {
        case identify(IdentifyRequest, dryRun: Bool)
        case lookup(email: String?, phoneNumber: String?)
        case ping
        case get(contactId: Int)
        case auth(token: [UInt8])

        /// Whether it may change the store (cluster mode relays it to the leader).
        var writes: Bool {
            if case .identify(_, dryRun: false) = self { true } else { false }
        }

        /// The role the operation needs (SPEC.md section 14).
        var requiredRole: Role {
            switch self {
            case .identify(_, let dryRun): dryRun ? .read : .write
            case .lookup, .ping, .get, .auth: .read
            }
        }
    }

    /// The operation's name for metrics, as HTTP names its operations: a rejected line counts under the
    /// op it names (`identify` when it names none, as over HTTP a malformed identify body does), and
    /// under `unknown` when its `op` is not one of ours.
    var operationName: String {
        switch operation {
        case .success(.identify(_, let dryRun)): dryRun ? "dryRun" : "identify"
        case .success(.lookup): "lookup"
        case .success(.ping): "ping"
        case .success(.get): "get"
        case .success(.auth): "auth"
        case .failure: namedOperation
        }
    }

    /// The members a request line may carry besides `email` and `phoneNumber`; a near miss of any of
    /// them (`"dryrun"`, `"OP"`) is a 400, so that a typo never writes.
    static let members = ["op", "contactId", "id", "dryRun", "token", "minSeq"]

    /// The operation the line's `op` names, when it names one of ours; `identify` when it names none.
    private var namedOperation = "identify"

    /// The `id` to echo: a string or a number, `nil` when absent or unreadable.
    var id: JSONValue?
    /// The operation, or the problem that rejects the line.
    var operation: Result<Operation, Problem>
    /// Read your writes (SPEC.md section 17): answer once this server has applied this change event.
    var minSeq: UInt64?

    init(line: UnsafeRawBufferPointer) {
        var op: JSONValue?
        var contactId: JSONValue?
        var echo: JSONValue?
        var dryRun: JSONValue?
        var token: JSONValue?
        var minSeqValue: JSONValue?
        var named = "identify"
        defer { namedOperation = named }
        do throws(RequestError) {
            let identify = try IdentifyRequest.decode(json: line, members: Self.members) {
                (key, value) throws(RequestError) in
                switch key {
                case "op":
                    guard op == nil else { throw RequestError.duplicate(key) }
                    op = value
                    switch value {
                    case .string(let name) where ["identify", "lookup", "ping", "get", "auth"].contains(name):
                        named = name
                    default:
                        named = "unknown"
                    }
                case "contactId":
                    guard contactId == nil else { throw RequestError.duplicate(key) }
                    contactId = value
                case "id":
                    guard echo == nil else { throw RequestError.duplicate(key) }
                    echo = value
                case "dryRun":
                    guard dryRun == nil else { throw RequestError.duplicate(key) }
                    dryRun = value
                case "token":
                    guard token == nil else { throw RequestError.duplicate(key) }
                    token = value
                case "minSeq":
                    guard minSeqValue == nil else { throw RequestError.duplicate(key) }
                    minSeqValue = value
                default:
                    break
                }
            }
            id = echo.flatMap(Self.echoable)
            if let echo, id == nil {
                throw RequestError(field: "id", reason: "must be a string or a number, not \(echo.kindDescription)")
            }
            if let minSeqValue {
                guard case .number(let literal) = minSeqValue, let seq = UInt64(literal) else {
                    throw RequestError(field: "minSeq", reason: "must be a whole number, at least 0 (a seq)")
                }
                minSeq = seq
            }
            if case .string("auth")? = op {
                // A missing or malformed token is a failed attempt like a wrong one (it counts
                // towards closing the connection), so it becomes an empty token nobody holds.
                if case .string(let text)? = token {
                    operation = .success(.auth(token: Array(text.utf8)))
                } else {
                    operation = .success(.auth(token: []))
                }
            } else {
                operation = .success(try Self.operation(op, identify: identify, contactId: contactId, dryRun: dryRun))
            }
        } catch {
            id = echo.flatMap(Self.echoable)
            operation = .failure(Problem(error))
        }
    }

    private static func echoable(_ value: JSONValue) -> JSONValue? {
        switch value {
        case .string, .number: value
        default: nil
        }
    }

    private static func operation(
        _ op: JSONValue?, identify: Result<IdentifyRequest, RequestError>, contactId: JSONValue?, dryRun: JSONValue?
    ) throws(RequestError) -> Operation {
        switch op {
        case nil, .string("identify")?:
            switch dryRun {
            case nil, .bool(false)?:
                return .identify(try identify.get(), dryRun: false)
            case .bool(true)?:
                return .identify(try identify.get(), dryRun: true)
            case let other?:
                throw RequestError(field: "dryRun", reason: "must be true or false, not \(other.kindDescription)")
            }
        case .string("lookup")?:
            let request = try identify.get()
            return .lookup(email: request.email, phoneNumber: request.phoneNumber)
        case .string("ping")?:
            return .ping
        case .string("get")?:
            guard case .number(let literal)? = contactId, let id = Int(literal), id >= 1 else {
                throw RequestError(field: "contactId", reason: "must be a positive whole number for op \"get\"")
            }
            return .get(contactId: id)
        case .string(let name)?:
            throw RequestError(field: "op", reason: "unknown operation \"\(name)\"; use identify, lookup, ping, get or auth")
        case let other?:
            throw RequestError(field: "op", reason: "must be a string, not \(other.kindDescription)")
        }
    }

    /// One answer line: `{"id":...,"MEMBER":VALUE}` and a line break, with `value` writing VALUE.
    static func answerLine(id: JSONValue?, member: StaticString, _ value: (inout JSONWriter) -> Void) -> [UInt8] {
        var writer = answerHead(id: id, member: member)
        value(&writer)
        writer.raw("}\n")
        return writer.bytes
    }

    /// The start of an answer line, `{"id":...,"MEMBER":`, for the caller to add the value and `}\n`.
    static func answerHead(id: JSONValue?, member: StaticString) -> JSONWriter {
        var writer = JSONWriter()
        writer.raw("{\"id\":")
        switch id {
        case .string(let text)?: writer.string(text)
        case .number(let literal)?: writer.raw(literal.utf8)
        default: writer.raw("null")
        }
        writer.raw(",\"")
        writer.raw(member)
        writer.raw("\":")
        return writer
    }

    /// A whole error answer line.
    static func errorLine(id: JSONValue?, _ problem: Problem) -> [UInt8] {
        answerLine(id: id, member: "error") { problem.writeJSON(into: &$0) }
    }
}

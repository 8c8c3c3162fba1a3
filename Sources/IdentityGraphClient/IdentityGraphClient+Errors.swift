extension IdentityGraphClient {
    /// An error line of the server (`{"id":..., "error": {"status": 400, ...}}`): the request was
    /// refused, and nothing it asked for was written.
    public struct ServerError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The HTTP status the error corresponds to: 400 invalid input, 401 no or unknown token, 403 a
        /// role too low, 404 unknown contact, 413 a line over the limit, 422 every value blocked,
        /// 503 storage unavailable or (cluster mode) no leader.
        public var status: Int
        public var title: String
        /// Names the field and the reason, for a person to read.
        public var detail: String
        /// Seconds to wait before trying again, when the server says (cluster mode's 503s do).
        public var retryAfter: Int?

        public init(status: Int, title: String, detail: String, retryAfter: Int? = nil) {
            self.status = status
            self.title = title
            self.detail = detail
            self.retryAfter = retryAfter
        }

        public var description: String {
            "\(status) \(title): \(detail)" + (retryAfter.map { " (retry after \($0) s)" } ?? "")
        }
    }

    /// The connection failed the call: the server could not be reached, the connection was lost
    /// while the call waited for its answer, or the client was closed.
    ///
    /// A call lost in flight (``Reason/connectionLost``) may or may not have been applied by the
    /// server; the client never sends it again by itself, since an identify may already have written.
    public struct ConnectionError: Error, Sendable, Hashable, CustomStringConvertible {
        public enum Reason: Sendable, Hashable {
            /// Connecting, the TLS handshake or the token's `auth` line failed; nothing was sent.
            case cannotConnect
            /// The connection closed before the answer came.
            case connectionLost
            /// ``IdentityGraphClient/close()`` was called.
            case closed
            /// The server answered something the line protocol does not allow (an answer with no
            /// request waiting, another request's `id`, a line that is not JSON). The connection is
            /// closed, as its answers can no longer be matched to their callers.
            case unexpectedAnswer
        }

        public var reason: Reason
        public var message: String

        public init(_ reason: Reason, _ message: String) {
            self.reason = reason
            self.message = message
        }

        public var description: String { message }
    }
}

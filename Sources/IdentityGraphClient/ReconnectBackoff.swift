extension IdentityGraphClient {
    /// How long the client waits before connecting again after failed attempts: the delay doubles
    /// from ``initialDelay`` with each consecutive failure up to ``maximumDelay``, and a random part
    /// of up to half of it is taken off, so that the many clients of a server that went away do not
    /// all come back at the same instant. A connection that was established and then lost is
    /// reconnected at once by the next call.
    public struct ReconnectBackoff: Sendable, Hashable {
        public var initialDelay: Duration
        public var maximumDelay: Duration

        public init(initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(5)) {
            self.initialDelay = initialDelay
            self.maximumDelay = max(initialDelay, maximumDelay)
        }

        /// The wait before the next attempt after `failures` consecutive failed ones.
        public func delay(afterFailures failures: Int) -> Duration {
            guard failures > 0 else { return .zero }
            let doubled = initialDelay * (1 << min(failures - 1, 30))
            return min(doubled, maximumDelay) * Double.random(in: 0.5...1.0)
        }
    }
}

/// How a failure that the node's loop retries every 200 ms is logged: its first occurrence at once, then
/// at most once every ``interval`` with how often it happened meanwhile, and a line when it stops. A
/// database down for an hour so writes about 120 lines per server, not 18,000, and an operator
/// still sees when it began, that it goes on, and when it ended.
struct RepeatedFailure {
    static let interval: Duration = .seconds(30)

    /// What to say about a failure that just happened: nothing (`nil`), or a line that counts the
    /// occurrences since the last one said (1 for the first).
    enum Report: Equatable {
        case first
        case repeated(times: Int, over: Duration)
    }

    private var began: ContinuousClock.Instant?
    private var lastSaid: ContinuousClock.Instant?
    private var unsaid = 0
    private var total = 0

    /// Records a failure at `now`; returns what to log, if anything.
    mutating func failed(at now: ContinuousClock.Instant = .now) -> Report? {
        total += 1
        guard let said = lastSaid, let began else {
            self.began = now
            lastSaid = now
            return .first
        }
        unsaid += 1
        guard now - said >= Self.interval else { return nil }
        defer {
            lastSaid = now
            unsaid = 0
        }
        return .repeated(times: unsaid, over: now - began)
    }

    /// Records a success at `now`: when failures came before it, returns how many and for how long (to
    /// log that they stopped), and forgets them.
    mutating func succeeded(at now: ContinuousClock.Instant = .now) -> (failures: Int, lasted: Duration)? {
        guard let began else { return nil }
        defer { self = RepeatedFailure() }
        return (total, now - began)
    }
}

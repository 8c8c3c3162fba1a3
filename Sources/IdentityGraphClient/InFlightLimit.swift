import NIOConcurrencyHelpers
import NIOCore

/// At most `limit` holders at a time; the others wait, first come first served.
final class InFlightLimit: Sendable {
    private struct State {
        var available: Int
        var waiters = CircularBuffer<CheckedContinuation<Void, Never>>()
    }

    private let state: NIOLockedValueBox<State>

    init(limit: Int) {
        precondition(limit > 0, "the in-flight limit must be at least 1")
        state = NIOLockedValueBox(State(available: limit))
    }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLockedValue { state in
                guard state.available > 0 else {
                    state.waiters.append(continuation)
                    return false
                }
                state.available -= 1
                return true
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLockedValue { state in
            guard let next = state.waiters.popFirst() else {
                state.available += 1
                return nil as CheckedContinuation<Void, Never>?
            }
            return next
        }
        next?.resume()
    }
}

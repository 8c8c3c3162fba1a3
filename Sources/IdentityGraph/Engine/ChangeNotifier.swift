import Foundation

/// Wakes those who wait for the change feed to grow: Server-Sent Events streams wait here between
/// pages instead of polling. The writer publishes each newly durable seq; a waiter is resumed once,
/// by a newer seq, by its timeout, or by ``wakeAll()``.
///
/// `@unchecked Sendable`: every field is touched only while `lock` is held.
final class ChangeNotifier: @unchecked Sendable {
    private let lock = NSLock()
    private var latest: UInt64
    private var waiters: [UInt64: (after: UInt64, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var nextWaiter: UInt64 = 0
    /// Waiters whose timeout fired before they were registered.
    private var expired: Set<UInt64> = []

    init(latest: UInt64) {
        self.latest = latest
    }

    /// Cluster mode: the newest seq in the log (or, on a follower, applied in memory), which may run
    /// ahead of `latest` while the local copy catches up.
    private var acknowledgedSeq: UInt64 = 0

    /// The newest durable seq published.
    var current: UInt64 {
        locked { latest }
    }

    /// The newest seq an answer may reflect: durable here, or in the cluster's log.
    var acknowledged: UInt64 {
        locked { max(latest, acknowledgedSeq) }
    }

    /// Records that everything up to `seq` is in the cluster's log (the local copy follows).
    func acknowledge(_ seq: UInt64) {
        locked { acknowledgedSeq = max(acknowledgedSeq, seq) }
    }

    /// Records that everything up to `seq` is durable and wakes the waiters it satisfies.
    func publish(_ seq: UInt64) {
        let ready = locked { () -> [CheckedContinuation<Void, Never>] in
            guard seq > latest else { return [] }
            latest = seq
            let due = waiters.filter { $0.value.after < seq }
            for key in due.keys { waiters.removeValue(forKey: key) }
            return due.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    /// Wakes every waiter (shutdown, or a stream that must look at its own state again).
    func wakeAll() {
        let all = locked { () -> [CheckedContinuation<Void, Never>] in
            let all = waiters.values.map(\.continuation)
            waiters.removeAll()
            return all
        }
        for continuation in all { continuation.resume() }
    }

    /// Returns once a seq newer than `seq` is durable, after `timeout`, or at ``wakeAll()``.
    func wait(after seq: UInt64, timeout: Duration) async {
        let id = locked { () -> UInt64 in
            nextWaiter += 1
            return nextWaiter
        }
        let timer = Task {
            // Cancelled once the wait is over; only a timeout that really elapsed resumes.
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self.resume(id)
        }
        defer { locked { _ = expired.remove(id) } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = locked { () -> Bool in
                if latest > seq || expired.remove(id) != nil { return true }
                waiters[id] = (seq, continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        timer.cancel()
    }

    private func resume(_ id: UInt64) {
        let waiter = locked { () -> (after: UInt64, continuation: CheckedContinuation<Void, Never>)? in
            guard let waiter = waiters.removeValue(forKey: id) else {
                expired.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.continuation.resume()
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

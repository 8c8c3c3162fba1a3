import Foundation
import Synchronization

/// The engine's own thread, as the `SerialExecutor` of the ``IdentityEngine`` actor.
///
/// It runs the actor's jobs, and plain closures handed over with ``execute(_:)``, one at a time in
/// the order they arrive. Event loops use ``execute(_:)`` to reach the engine without creating a
/// task: the closure runs on this thread, where `assumeIsolated` holds, so one hand-over carries a
/// whole channel read. Keeping the engine on a thread of its own also keeps its work off the
/// cooperative pool and off the event loops, which stay free for I/O.
///
/// Before it sleeps on an empty queue the thread spins for a few microseconds (``spinNanoseconds``),
/// watching ``pending`` without the lock: a caller that hands work over within that window then
/// costs no futex wake-up, and the thread no trip through the scheduler.
///
/// `@unchecked Sendable`: `queue`, `sleeping` and `stopping` are touched only while `condition` is
/// held; `thread` is written once, before the initializer returns, and only read after; `pending` is
/// atomic.
final class EngineExecutor: SerialExecutor, @unchecked Sendable {
    /// How long the idle thread spins before it sleeps, from `IDENTITY_GRAPH_ENGINE_SPIN_US`
    /// (microseconds, 0 turns the spin off), read once.
    static let spinNanoseconds: UInt64 = {
        guard let text = ProcessInfo.processInfo.environment["IDENTITY_GRAPH_ENGINE_SPIN_US"],
              let micros = UInt64(text) else { return defaultSpinMicroseconds * 1000 }
        return min(micros, 10_000) * 1000
    }()
    static let defaultSpinMicroseconds: UInt64 = 0

    private let condition = NSCondition()
    /// Set (under the lock) when work is queued, cleared when the thread takes the queue; read by the spin.
    private let pending = Atomic<Bool>(false)
    private var queue: [() -> Void] = []
    private var sleeping = false
    private var stopping = false
    private var thread: pthread_t?

    /// Starts the thread; `name` shows in debuggers and `top -H`.
    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
        condition.lock()
        while self.thread == nil { condition.wait() }
        condition.unlock()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        push { job.runSynchronously(on: executor) }
    }

    /// Runs `body` on the engine's thread, after everything handed over before it.
    func execute(_ body: @escaping @Sendable () -> Void) {
        push(body)
    }

    /// Whether the caller runs on the engine's thread.
    var isCurrent: Bool {
        guard let thread else { return false }
        return pthread_equal(pthread_self(), thread) != 0
    }

    func checkIsolated() {
        precondition(isCurrent, "expected to run on the identity engine's thread")
    }

    func isIsolatingCurrentContext() -> Bool? {
        isCurrent
    }

    /// Lets the thread end once the work already handed over is done.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func push(_ work: @escaping () -> Void) {
        condition.lock()
        queue.append(work)
        pending.store(true, ordering: .releasing)
        // A signal costs a system call; the thread only needs one when it is asleep.
        if sleeping { condition.signal() }
        condition.unlock()
    }

    private func run() {
        condition.lock()
        thread = pthread_self()
        condition.broadcast()
        var work: [() -> Void] = []
        let spin = Self.spinNanoseconds
        while true {
            if queue.isEmpty && !stopping && spin > 0 {
                condition.unlock()
                spinForWork(nanoseconds: spin)
                condition.lock()
            }
            while queue.isEmpty && !stopping {
                sleeping = true
                condition.wait()
                sleeping = false
            }
            if queue.isEmpty { break }
            swap(&work, &queue)
            pending.store(false, ordering: .relaxed)
            condition.unlock()
            for item in work { item() }
            work.removeAll(keepingCapacity: true)
            condition.lock()
        }
        condition.unlock()
    }

    /// Returns once work is pending or `nanoseconds` have passed. Each turn yields the core, so an event
    /// loop waiting for it (two cores here) runs instead of the spin.
    private func spinForWork(nanoseconds: UInt64) {
        let deadline = Self.now() &+ nanoseconds
        while !pending.load(ordering: .acquiring) {
            sched_yield()
            if Self.now() >= deadline { return }
        }
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}

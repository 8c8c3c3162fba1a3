import Foundation

/// The engine's own thread, as the `SerialExecutor` of the ``IdentityEngine`` actor.
///
/// It runs the actor's jobs, and plain closures handed over with ``execute(_:)``, one at a time in
/// the order they arrive. Event loops use ``execute(_:)`` to reach the engine without creating a
/// task: the closure runs on this thread, where `assumeIsolated` holds, so one hand-over carries a
/// whole channel read. Keeping the engine on a thread of its own also keeps its work off the
/// cooperative pool and off the event loops, which stay free for I/O.
///
/// `@unchecked Sendable`: `queue`, `sleeping` and `stopping` are touched only while `condition` is
/// held; `thread` is written once, before the initializer returns, and only read after.
final class EngineExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
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
        // A signal costs a system call; the thread only needs one when it is asleep.
        if sleeping { condition.signal() }
        condition.unlock()
    }

    private func run() {
        condition.lock()
        thread = pthread_self()
        condition.broadcast()
        var work: [() -> Void] = []
        while true {
            while queue.isEmpty && !stopping {
                sleeping = true
                condition.wait()
                sleeping = false
            }
            if queue.isEmpty { break }
            swap(&work, &queue)
            condition.unlock()
            for item in work { item() }
            work.removeAll(keepingCapacity: true)
            condition.lock()
        }
        condition.unlock()
    }
}

import NIOEmbedded
import Testing
@testable import IdentityCluster

/// The node loop's sleep (``Wakeup``): it ends at its deadline, at a signal, or at cancellation, and a
/// timer never ends a wait other than its own.
@Suite(.timeLimit(.minutes(1))) struct WakeupTests {
    @Test("a wait ends at its deadline and not before")
    func deadline() async {
        let wakeup = Wakeup()
        let start = ContinuousClock.now
        await wakeup.wait(until: start + .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
    }

    @Test("a signal ends a wait long before its deadline; one that came while nobody waited ends the next at once, once")
    func signals() async {
        let wakeup = Wakeup()
        let signaller = Task {
            try? await Task.sleep(for: .milliseconds(20))
            wakeup.signal()
        }
        var start = ContinuousClock.now
        await wakeup.wait(until: start + .seconds(3600))
        #expect(ContinuousClock.now - start < .seconds(3600))
        await signaller.value

        wakeup.signal()
        start = ContinuousClock.now
        await wakeup.wait(until: start + .seconds(3600))
        #expect(ContinuousClock.now - start < .seconds(3600))
        // Consumed: the next wait lasts until its deadline.
        start = ContinuousClock.now
        await wakeup.wait(until: start + .milliseconds(30))
        #expect(ContinuousClock.now - start >= .milliseconds(30))
    }

    @Test("the timer of a wait a signal ended does not end the next wait")
    func staleTimer() async throws {
        // The timers run on a loop whose clock the test moves, so that nothing depends on the pool's
        // threads being on time.
        let loop = NIOAsyncTestingEventLoop()
        let wakeup = Wakeup(loop: loop)
        let first = Task { await wakeup.wait(until: .now + .seconds(3600)) }
        try await Self.untilWaiting(wakeup)
        wakeup.signal()
        await first.value
        let second = Task { await wakeup.wait(until: .now + .seconds(7200)) }
        try await Self.untilWaiting(wakeup)
        // Past the first wait's deadline: its timer fires, and finds a wait that is not its own.
        await loop.advanceTime(by: .seconds(3601))
        #expect(wakeup.isWaiting)
        wakeup.signal()
        await second.value
        #expect(!wakeup.isWaiting)
        await loop.shutdownGracefully()
    }

    private static func untilWaiting(_ wakeup: Wakeup) async throws {
        while !wakeup.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
    }

    @Test("cancelling the task ends its wait")
    func cancellation() async {
        let wakeup = Wakeup()
        let waiting = Task { await wakeup.wait(until: .now + .seconds(3600)) }
        try? await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await waiting.value
        let cancelledFirst = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await wakeup.wait(until: .now + .seconds(3600))
        }
        await cancelledFirst.value
    }
}

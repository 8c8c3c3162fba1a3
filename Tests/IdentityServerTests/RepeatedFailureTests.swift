import Testing
@testable import IdentityCluster

/// How the cluster node's loop logs a failure it retries every 200 ms (``RepeatedFailure``): the first at
/// once, then one line every 30 s with the count since the last, and the end with the total.
@Suite struct RepeatedFailureTests {
    @Test("the first failure is said, the next ones within 30 s are not, then one line counts them")
    func repeatsAreCounted() {
        var failure = RepeatedFailure()
        let start = ContinuousClock.now
        #expect(failure.failed(at: start) == .first)
        for tenth in 1..<300 {
            #expect(failure.failed(at: start + .milliseconds(100 * tenth)) == nil)
        }
        #expect(failure.failed(at: start + .seconds(30)) == .repeated(times: 300, over: .seconds(30)))
        #expect(failure.failed(at: start + .seconds(31)) == nil)
        #expect(failure.failed(at: start + .seconds(60)) == .repeated(times: 2, over: .seconds(60)))
        let ended = failure.succeeded(at: start + .seconds(61))
        #expect(ended?.failures == 303 && ended?.lasted == .seconds(61))
    }

    @Test("a success with no failure before it says nothing; after one, the next failure is a first again")
    func successResets() {
        var failure = RepeatedFailure()
        let start = ContinuousClock.now
        #expect(failure.succeeded(at: start) == nil)
        #expect(failure.failed(at: start) == .first)
        #expect(failure.succeeded(at: start + .seconds(1))?.failures == 1)
        #expect(failure.succeeded(at: start + .seconds(2)) == nil)
        #expect(failure.failed(at: start + .seconds(3)) == .first)
    }
}

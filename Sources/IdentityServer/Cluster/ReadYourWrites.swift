import IdentityGraph

/// Read your writes in cluster mode (SPEC.md section 17), the same on both transports: a read given
/// `minSeq` waits until this server has applied that change event, at most ``wait``, then gets a `503`
/// that says when to retry.
enum ReadYourWrites {
    /// The longest a read given `minSeq` waits.
    static let wait = Duration.seconds(5)

    /// `nil` once event `seq` is applied here (at once when it is already), else the problem to answer.
    static func problem(waitingFor seq: UInt64, on engine: IdentityEngine) async -> Problem? {
        if await engine.waitUntilApplied(seq, timeout: wait) { return nil }
        var problem = Problem(
            status: 503, title: "Not caught up",
            detail: "this server has not applied change event \(seq) within 5 seconds; retry, or ask the leader"
        )
        problem.retryAfter = 1
        return problem
    }
}

import Foundation
import Testing
@testable import IdentityGraph

@Suite struct StorageFailureTests {
    @Test("a failed commit answers unavailable, refuses changes until a retry succeeds, and loses nothing acknowledged")
    func failedCommitRecovers() async throws {
        let directory = TemporaryDirectory()
        let events = Protected<[String]>([])
        let engine = try IdentityEngine(
            dataDirectory: directory.path,
            options: .init { event in
                events.withLock {
                    switch event {
                    case .writeFailed: $0.append("failed")
                    case .recovered: $0.append("recovered")
                    case .upgraded: $0.append("upgraded")
                    case .fenced: $0.append("fenced")
                    }
                }
            }
        )
        let acknowledged = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))

        engine.injectWriteFailures(3)
        await #expect(throws: EngineError.self) {
            _ = try await engine.identify(.json(#"{"email":"b@x.io","phoneNumber":"2"}"#))
        }
        // Committed data can still be read while changes are refused.
        #expect(try await engine.identify(.json(#"{"email":"a@x.io"}"#)) == acknowledged)

        // The retry runs on the engine's back-off; the engine reports when one has committed.
        let deadline = ContinuousClock.now + .seconds(60)
        while !events.withLock({ $0.contains("recovered") }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
        try #require(events.withLock { $0.contains("recovered") }, "no successful retry within 60 s: \(events.withLock { $0 })")
        let recovered = try await engine.identify(.json(#"{"email":"c@x.io","phoneNumber":"1"}"#))
        #expect(recovered.primaryContactId == 1)
        #expect(events.withLock { $0 } == ["failed", "failed", "failed", "recovered"])

        let rows = try await engine.allContacts()
        engine.close()
        // The refused request's row was committed by the retry: memory and disk agree.
        let stored = try StoredContacts.read(dataDirectory: directory.path)
        #expect(stored == rows)
        #expect(stored.map(\.email) == ["a@x.io", "b@x.io", "c@x.io"])
        #expect(InvariantCheck(contacts: stored).isValid)
    }
}

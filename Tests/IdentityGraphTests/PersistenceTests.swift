import Foundation
import Testing
@testable import IdentityGraph

@Suite struct PersistenceTests {
    @Test("rows and profiles survive closing and reopening the store")
    func reopenKeepsRows() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        _ = try await engine.identify(.json(#"{"email":"george@hillvalley.edu","phoneNumber":"919191"}"#))
        _ = try await engine.identify(.json(#"{"email":"biffsucks@hillvalley.edu","phoneNumber":"717171"}"#))
        let merged = try await engine.identify(.json(#"{"email":"george@hillvalley.edu","phoneNumber":"717171"}"#))
        let rows = try await engine.allContacts()
        engine.close()

        let reopened = try IdentityEngine(dataDirectory: directory.path)
        defer { reopened.close() }
        #expect(try await reopened.allContacts() == rows)
        #expect(try await reopened.identify(.json(#"{"phoneNumber":"717171"}"#)) == merged)
        let next = try await reopened.identify(.json(#"{"email":"new@x.io"}"#))
        #expect(next.primaryContactId == 3)
    }

    @Test("thousands of random requests come back identical after a reopen")
    func reopenAfterRandomRequests() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        var requests = RequestGenerator(seed: 7, emails: 400, phones: 300)
        for _ in 0..<3000 {
            _ = try await engine.identify(requests.next())
        }
        let rows = try await engine.allContacts()
        var profiles: [Profile] = []
        for id in stride(from: 1, through: rows.count, by: 17) {
            profiles.append(try #require(try await engine.profile(containing: id)))
        }
        engine.close()

        let reopened = try IdentityEngine(dataDirectory: directory.path)
        defer { reopened.close() }
        #expect(try await reopened.allContacts() == rows)
        for (index, id) in stride(from: 1, through: rows.count, by: 17).enumerated() {
            #expect(try await reopened.profile(containing: id) == profiles[index])
        }
        #expect(InvariantCheck(contacts: rows).isValid)
    }

    @Test("a tiny memory map grows by itself as the store fills")
    func mapGrows() async throws {
        let directory = TemporaryDirectory()
        let initial = 128 * 1024
        let engine = try IdentityEngine(dataDirectory: directory.path, options: .init(initialMapSize: initial))
        #expect(engine.mapSize == initial)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<40 {
                group.addTask {
                    for index in 0..<250 {
                        let email = "someone.with.a.long.address.\(worker).\(index)@example.org"
                        _ = try await engine.identify(IdentifyRequest(email: email, phoneNumber: "\(worker)\(index)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(engine.mapSize >= initial * 8, "the map grew only to \(engine.mapSize) bytes")
        let rows = try await engine.allContacts()
        #expect(rows.count == 10_000)
        engine.close()
        #expect(try StoredContacts.read(dataDirectory: directory.path) == rows)
    }

    @Test("a snapshot taken while writes continue opens as a consistent store")
    func snapshotWhileWriting() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path, options: .init(initialMapSize: 256 * 1024))
        var requests = RequestGenerator(seed: 11, emails: 3000, phones: 2000)
        var acknowledged: [(IdentifyRequest, Profile)] = []
        for _ in 0..<1500 {
            let request = requests.next()
            acknowledged.append((request, try await engine.identify(request)))
        }
        let committed = Protected(0)
        let writer = Task {
            var more = RequestGenerator(seed: 12, emails: 3000, phones: 2000)
            while !Task.isCancelled {
                _ = try await engine.identify(more.next())
                committed.withLock { $0 += 1 }
            }
        }
        defer { writer.cancel() }
        // The snapshot starts once the writer has committed 100 requests, and the writer is still
        // committing after it: the snapshot was taken in the middle of its writes.
        try #require(try await Self.waited { committed.withLock { $0 } >= 100 }, "the writer never committed 100 requests")
        let copy = directory.subdirectory("snapshot")
        try engine.snapshot(to: copy)
        let atSnapshot = committed.withLock { $0 }
        try #require(
            try await Self.waited { committed.withLock { $0 } >= atSnapshot + 100 },
            "the writer stopped committing at the snapshot"
        )
        writer.cancel()
        try await writer.value
        engine.close()

        #expect(throws: StorageError.self) { try engine.snapshot(to: copy) }
        let restored = try IdentityEngine(dataDirectory: copy)
        defer { restored.close() }
        let rows = try await restored.allContacts()
        let check = InvariantCheck(contacts: rows)
        #expect(check.isValid, "\(check.violations)")
        let commits = (await restored.statistics).commits
        for (request, profile) in acknowledged {
            let now = try await restored.identify(request)
            #expect(Set(profile.emails).isSubset(of: now.emails))
            #expect(Set(profile.phoneNumbers).isSubset(of: now.phoneNumbers))
        }
        #expect((await restored.statistics).commits == commits, "an acknowledged request was missing from the snapshot")
    }

    /// Polls `condition` until it holds, for at most 60 s, then looks once more; returns whether it held.
    private static func waited(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            if ContinuousClock.now >= deadline { return condition() }
            try await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    @Test("a snapshot of a stopped store through StoredContacts holds every row")
    func snapshotOfStoppedStore() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        var requests = RequestGenerator(seed: 5, emails: 50, phones: 50)
        for _ in 0..<200 { _ = try await engine.identify(requests.next()) }
        let rows = try await engine.allContacts()
        engine.close()
        let copy = directory.subdirectory("copy")
        try StoredContacts.snapshot(dataDirectory: directory.path, to: copy)
        #expect(try StoredContacts.read(dataDirectory: copy) == rows)
        #expect(throws: StorageError.self) { try StoredContacts.snapshot(dataDirectory: directory.path, to: copy) }
    }
}

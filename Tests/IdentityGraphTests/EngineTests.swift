import Foundation
import Testing
@testable import IdentityGraph

@Suite struct EngineTests {
    @Test("a request that brings nothing new writes nothing")
    func noOpWritesNothing() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        defer { engine.close() }
        _ = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))
        _ = try await engine.identify(.json(#"{"email":"b@x.io","phoneNumber":"1"}"#))
        let rows = try await engine.allContacts()
        let commits = (await engine.statistics).commits
        for body in [#"{"email":"a@x.io","phoneNumber":"1"}"#, #"{"email":"b@x.io"}"#, #"{"phoneNumber":"1"}"#,
                     #"{"email":"a@x.io","phoneNumber":"1"}"#] {
            _ = try await engine.identify(.json(body))
        }
        #expect(try await engine.allContacts() == rows)
        #expect((await engine.statistics).commits == commits)
    }

    @Test("a merge rewrites each relinked row with a new updatedAt and keeps createdAt")
    func mergeUpdatesTimestamps() async throws {
        let engine = IdentityEngine()
        _ = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))
        _ = try await engine.identify(.json(#"{"email":"b@x.io","phoneNumber":"2"}"#))
        _ = try await engine.identify(.json(#"{"email":"c@x.io","phoneNumber":"2"}"#))
        let before = try await engine.allContacts()
        try await Task.sleep(for: .milliseconds(5))
        _ = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"2"}"#))
        let after = try await engine.allContacts()
        #expect(after[0] == before[0])
        for index in 1...2 {
            #expect(after[index].linkedId == 1)
            #expect(after[index].createdAt == before[index].createdAt)
            #expect(after[index].updatedAt > before[index].updatedAt)
        }
    }

    @Test("timestamps are RFC 3339 UTC with milliseconds")
    func timestampFormat() {
        #expect(Timestamp(millisecondsSince1970: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(millisecondsSince1970: 1_795_757_608_123).rfc3339 == "2026-11-27T05:33:28.123Z")
        #expect(Timestamp(millisecondsSince1970: 951_782_400_000).rfc3339 == "2000-02-29T00:00:00.000Z")
    }

    @Test("a contact record shows every field, nulls included")
    func contactRecordJSON() async throws {
        let engine = IdentityEngine()
        _ = try await engine.identify(.json(#"{"phoneNumber":"42"}"#))
        let contact = try #require(try await engine.contact(id: 1))
        let json = String(decoding: contact.json, as: UTF8.self)
        let stamp = contact.createdAt.rfc3339
        #expect(json == #"{"id":1,"email":null,"phoneNumber":"42","linkedId":null,"linkPrecedence":"primary","#
            + #""createdAt":"\#(stamp)","updatedAt":"\#(stamp)","deletedAt":null}"#)
        #expect(try await engine.contact(id: 2) == nil)
        #expect(try await engine.contact(id: 0) == nil)
    }

    @Test("the profile of any contact is its primary's profile")
    func profileOfContact() async throws {
        let engine = IdentityEngine()
        _ = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))
        let profile = try await engine.identify(.json(#"{"email":"b@x.io","phoneNumber":"1"}"#))
        #expect(try await engine.profile(containing: 2) == profile)
        #expect(try await engine.profile(containing: 1) == profile)
        #expect(try await engine.profile(containing: 3) == nil)
    }

    @Test("the identify response is encoded exactly as SPEC shows it")
    func responseEncoding() {
        let profile = Profile(primaryContactId: 1, emails: ["lorraine@hillvalley.edu", "mcfly@hillvalley.edu"],
                              phoneNumbers: ["123456"], secondaryContactIds: [23])
        #expect(String(decoding: profile.responseJSON, as: UTF8.self)
            == #"{"contact":{"primaryContactId":1,"emails":["lorraine@hillvalley.edu","mcfly@hillvalley.edu"],"#
            + #""phoneNumbers":["123456"],"secondaryContactIds":[23]}}"#)
    }

    @Test("concurrent requests for one new email create one primary")
    func concurrentNewEmail() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        defer { engine.close() }
        let request = try IdentifyRequest.json(#"{"email":"same@x.io"}"#)
        let profiles = try await withThrowingTaskGroup(of: Profile.self) { group in
            for _ in 0..<200 { group.addTask { try await engine.identify(request) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(profiles).count == 1)
        #expect((await engine.statistics).contacts == 1)
    }

    @Test("a burst of concurrent changes is committed in far fewer transactions than requests")
    func groupCommit() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        defer { engine.close() }
        let count = 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                let request = try IdentifyRequest.json(#"{"email":"person\#(index)@x.io"}"#)
                group.addTask { _ = try await engine.identify(request) }
            }
            try await group.waitForAll()
        }
        let statistics = (await engine.statistics)
        #expect(statistics.contacts == count)
        #expect(statistics.commits < count / 2, "\(statistics.commits) commits for \(count) requests")
    }

    @Test("a closed engine refuses requests instead of losing them")
    func closedEngineRefuses() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        engine.close()
        await #expect(throws: EngineError.self) {
            _ = try await engine.identify(.json(#"{"email":"a@x.io"}"#))
        }
    }

    @Test("the invariant check reports a broken store")
    func invariantCheckFindsViolations() {
        let t = Timestamp(millisecondsSince1970: 1000)
        let rows = [
            Contact(id: 1, email: "a@x.io", phoneNumber: nil, linkedId: nil, createdAt: t, updatedAt: t),
            Contact(id: 2, email: "a@x.io", phoneNumber: "1", linkedId: nil, createdAt: t, updatedAt: t),
            Contact(id: 3, email: nil, phoneNumber: "2", linkedId: 2, createdAt: t,
                    updatedAt: Timestamp(millisecondsSince1970: 10)),
            Contact(id: 5, email: nil, phoneNumber: "3", linkedId: 9, createdAt: t, updatedAt: t),
        ]
        let check = InvariantCheck(contacts: rows)
        #expect(!check.isValid)
        #expect(check.violations.contains { $0.contains("email a@x.io belongs to profiles 1 and 2") })
        #expect(check.violations.contains { $0.contains("contact 3: updatedAt") })
        #expect(check.violations.contains { $0.contains("not dense") })
        #expect(check.violations.contains { $0.contains("links to contact 9, which does not exist") })
    }
}

@Suite struct DirectJSONTests {
    /// Checked against the reference model, and read back with Foundation's parser: neither shares
    /// code with the engine's index or its JSON writer.
    @Test("the answer written straight from the index is the reference model's profile", arguments: [21, 22] as [UInt64])
    func directJSONMatchesReferenceModel(seed: UInt64) async throws {
        let engine = IdentityEngine()
        var model = ReferenceModel()
        var requests = RequestGenerator(seed: seed, emails: 12, phones: 9)
        for step in 0..<500 {
            var request = requests.next()
            if step % 50 == 0 {
                // Values that need escaping go through the same writer.
                request = try IdentifyRequest(email: #"quote"and\slash\#(step)@x.io"#, phoneNumber: request.phoneNumber)
            }
            let expected = model.identify(email: request.email, phoneNumber: request.phoneNumber)
            var head = JSONWriter()
            head.raw("{\"contact\":")
            let answers = await withCheckedContinuation { continuation in
                engine.submit([.identify(request, dryRun: false, head: head)]) { continuation.resume(returning: $0) }
            }
            guard case .written(var writer) = answers.first else {
                Issue.record("seed \(seed), step \(step): \(answers)")
                return
            }
            writer.raw("}")
            let text = String(decoding: writer.bytes, as: UTF8.self)
            let object = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String: Any]
            let contact = try #require(object?["contact"] as? [String: Any], "seed \(seed), step \(step): \(text)")
            #expect(object?.count == 1 && contact.count == 4, "seed \(seed), step \(step): \(text)")
            #expect(contact["primaryContactId"] as? Int == expected.primaryContactId, "seed \(seed), step \(step): \(text)")
            #expect(contact["emails"] as? [String] == expected.emails, "seed \(seed), step \(step): \(text)")
            #expect(contact["phoneNumbers"] as? [String] == expected.phoneNumbers, "seed \(seed), step \(step): \(text)")
            #expect(contact["secondaryContactIds"] as? [Int] == expected.secondaryContactIds, "seed \(seed), step \(step): \(text)")
            if contact["primaryContactId"] as? Int != expected.primaryContactId { return }
        }
    }
}

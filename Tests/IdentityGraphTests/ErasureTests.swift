import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// Erased data is really gone (SPEC.md section 12): from the index and value tables, the rows,
/// links, keep-apart rules and events, and from a snapshot's bytes.
@Suite struct ErasureTests {
    private func contains(_ haystack: Data, _ needle: String) -> Bool {
        haystack.range(of: Data(needle.utf8)) != nil
    }

    @Test("an erased value appears nowhere in a snapshot's files, nor in the feed or the index")
    func erasedValueLeavesNoBytes() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        let secretEmail = "erase-me-7f3a9c@example.org"
        let secretPhone = "+4915550123987"
        _ = try await engine.identify(.json(#"{"email":"\#(secretEmail)","phoneNumber":"100"}"#))
        _ = try await engine.identify(.json(#"{"email":"other@example.org","phoneNumber":"\#(secretPhone)"}"#))
        // A merge without a row: a link holding the secret email and the secret phone.
        _ = try await engine.identify(.json(#"{"email":"\#(secretEmail)","phoneNumber":"\#(secretPhone)"}"#))
        // Unmerge with keepApart: a keep-apart rule holding them too; then merge them back by another route.
        _ = try await engine.unmerge(email: secretEmail, phoneNumber: secretPhone, keepApart: true)
        #expect(try await engine.keepApartRules().count == 1)
        _ = try await engine.identify(.json(#"{"email":"bridge@example.org","phoneNumber":"100"}"#))

        _ = try await engine.erase(.values(email: secretEmail, phoneNumber: nil))
        _ = try await engine.erase(.values(email: nil, phoneNumber: secretPhone))

        let contents = try await engine.contents()
        #expect(!contents.contacts.contains { $0.email == secretEmail || $0.phoneNumber == secretPhone })
        #expect(contents.links.isEmpty && contents.keepApart.isEmpty)
        #expect(try await engine.lookupResponseBody(email: secretEmail, phoneNumber: secretPhone) == Array(#"{"profiles":[]}"#.utf8))
        let feed = try await engine.changes(after: 0, limit: 1000)
        let feedText = String(decoding: feed.events.flatMap(\.json), as: UTF8.self)
        #expect(!feedText.contains(secretEmail) && !feedText.contains(secretPhone) && !feedText.contains("@"))

        let snapshot = directory.subdirectory("snapshot")
        try engine.snapshot(to: snapshot)
        engine.close()
        let files = try FileManager.default.contentsOfDirectory(atPath: snapshot)
        #expect(!files.isEmpty)
        for file in files {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: snapshot + "/" + file))
            #expect(!contains(bytes, secretEmail), "\(file) still holds the erased email")
            #expect(!contains(bytes, secretPhone), "\(file) still holds the erased phone number")
            // The snapshot still holds what was not erased.
            if file == "data.mdb" { #expect(contains(bytes, "other@example.org")) }
        }
        let reopened = try IdentityEngine(dataDirectory: snapshot)
        let check = InvariantCheck(contents: try await reopened.contents())
        #expect(check.isValid, "\(check.violations)")
        reopened.close()
    }

    @Test("a value with no live carrier leaves the value table; ownership moves to the next live carrier")
    func valueTableForgetsErasedValues() async throws {
        var graph = ContactGraph()
        var changes = GraphChanges()
        var ignored: [IgnoredValue] = []
        for (email, phone) in [("a@x.io", "1"), ("b@x.io", "1"), ("c@x.io", "1")] {
            let plan = graph.plan(email: email, phone: phone, limits: .none, ignored: &ignored)
            _ = graph.apply(plan, email: email, phone: phone, now: 1, changes: &changes)
        }
        #expect(graph.emailValue("a@x.io") != nil)
        _ = graph.erase(contacts: [1], now: 2, changes: &changes)
        #expect(graph.emailValue("a@x.io") == nil)
        #expect(graph.profile(containing: 2) == Profile(
            primaryContactId: 2, emails: ["b@x.io", "c@x.io"], phoneNumbers: ["1"], secondaryContactIds: [3]
        ))
        // The freed slot does not hide the values that probed past it.
        for email in ["b@x.io", "c@x.io"] { #expect(graph.emailValue(email) != nil) }
        #expect(graph.profileCount == 1)
    }

    @Test("removing values keeps every other value findable, across many inserts and removals", arguments: [1, 2, 3] as [UInt64])
    func valueTableRemovalKeepsProbeChains(seed: UInt64) {
        var table = ValueTable()
        var present: [String: Int] = [:]
        var generator = SeededGenerator(seed: seed)
        for round in 0..<20_000 {
            let key = "v\(Int.random(in: 0..<3_000, using: &generator))"
            if let value = present[key], round % 3 == 0 {
                table.remove(value)
                present[key] = nil
            } else if present[key] == nil {
                var text = key
                present[key] = text.withUTF8 { table.findOrInsert(UnsafeRawBufferPointer($0), owner: 1).value }
            }
        }
        for (key, value) in present { #expect(table.find(key) == value, "seed \(seed): \(key)") }
        #expect(table.find("absent") == nil, "seed \(seed)")
    }
}

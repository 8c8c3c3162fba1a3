import Foundation
import LMDB
import Testing
@testable import IdentityGraph

/// Stores written before links existed (format v1) are upgraded in place, once, when opened.
@Suite struct UpgradeTests {
    /// Writes a v1 store as the previous release did: the `contacts` and `meta` tables only.
    private func writeV1Store(at path: String, rows: [Contact]) throws {
        let environment = try Environment(path: path, options: .init(maxDatabases: 4))
        try environment.write { transaction in
            let contacts = try transaction.openDatabase(named: "contacts", create: true)
            let meta = try transaction.openDatabase(named: "meta", create: true)
            for row in rows {
                var record: [UInt8] = []
                ContactRecord.encode(row, into: &record)
                try transaction.put(record, forKey: ContactRecord.key(row.id), in: contacts)
            }
            try transaction.put(ContactStore.formatV1, forKey: Array("format".utf8), in: meta)
        }
    }

    private func row(_ id: Int, _ email: String?, _ phone: String?, linkedTo: Int? = nil, updated: Int64? = nil) -> Contact {
        Contact(
            id: id, email: email, phoneNumber: phone, linkedId: linkedTo,
            createdAt: Timestamp(millisecondsSince1970: 1_000 * Int64(id)),
            updatedAt: Timestamp(millisecondsSince1970: updated ?? 1_000 * Int64(id))
        )
    }

    @Test("a v1 store gains the fewest links that connect its merged profiles, once, with a log event")
    func upgradeDerivesLinks() async throws {
        let directory = TemporaryDirectory()
        let rows = [
            // Profile 1: a merge without a row joined 1 and 2 (the request was g@x.io with 717171).
            row(1, "g@x.io", "919191"), row(2, "b@x.io", "717171", linkedTo: 1, updated: 9_000),
            row(3, "s@x.io", "717171", linkedTo: 1, updated: 9_000),
            // Profile 4: connected by its rows alone; it needs no link.
            row(4, "a@x.io", "1"), row(5, "c@x.io", "1", linkedTo: 4),
            // Profile 6: three parts joined by two merges.
            row(6, "p@x.io", "6"), row(7, "q@x.io", "7", linkedTo: 6, updated: 11_000),
            row(8, nil, "8", linkedTo: 6, updated: 12_000),
        ]
        try writeV1Store(at: directory.path, rows: rows)
        #expect(!InvariantCheck(contents: try StoredContacts.readContents(dataDirectory: directory.path)).isValid)

        let events = Protected<[String]>([])
        let record: @Sendable (IdentityEngine.StorageEvent) -> Void = { event in
            if case .upgraded(let from, let to, let links) = event {
                events.withLock { $0.append("\(from)->\(to) \(links)") }
            }
        }
        let engine = try IdentityEngine(dataDirectory: directory.path, options: .init(onStorageEvent: record))
        #expect(events.withLock { $0 } == ["v1->v2 3"])
        let contents = try await engine.contents()
        #expect(contents.contacts == rows)
        #expect(contents.links.count == 3)
        // Each derived link pairs an email of one part with a phone number of another, dated by
        // the updatedAt of the part it joins.
        #expect(contents.links[0].email == "b@x.io" && contents.links[0].phoneNumber == "919191")
        #expect(contents.links[0].at == Timestamp(millisecondsSince1970: 9_000))
        #expect(InvariantCheck(contents: contents).isValid)
        let explanation = try await engine.explain(from: 1, to: 2)
        #expect(explanation.linked && explanation.steps.count == 1)
        engine.close()

        let stored = try StoredContacts.readContents(dataDirectory: directory.path)
        #expect(stored == contents)
        #expect(InvariantCheck(contents: stored).isValid)
        let reopened = try IdentityEngine(dataDirectory: directory.path, options: .init(onStorageEvent: record))
        #expect(events.withLock { $0 }.count == 1, "the upgrade ran twice")
        #expect(try await reopened.contents() == contents)
        reopened.close()
    }

    @Test("a v1 store whose profiles are all connected upgrades with no links")
    func upgradeWithoutLinks() async throws {
        let directory = TemporaryDirectory()
        try writeV1Store(at: directory.path, rows: [row(1, "a@x.io", "1"), row(2, "b@x.io", "1", linkedTo: 1)])
        let engine = try IdentityEngine(dataDirectory: directory.path)
        #expect(try await engine.contents().links.isEmpty)
        _ = try await engine.identify(.json(#"{"email":"c@x.io","phoneNumber":"1"}"#))
        engine.close()
        #expect(try StoredContacts.read(dataDirectory: directory.path).count == 3)
    }
}

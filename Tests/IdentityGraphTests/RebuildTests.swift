import Foundation
import LMDB
import Testing
@testable import IdentityGraph

/// A rebuild (a start without a saved index) interns the emails on a thread of their own and checks
/// afterwards what that thread could not: that an email a row shares with an earlier row belongs to the
/// row's profile. A store that breaks the invariants is refused, naming the first row that breaks one,
/// whichever thread found it.
@Suite struct RebuildTests {
    private func row(
        _ id: Int, _ email: String?, _ phone: String?, linkedTo: Int? = nil, erased: Bool = false
    ) -> Contact {
        Contact(
            id: id, email: email, phoneNumber: phone, linkedId: linkedTo,
            createdAt: Timestamp(millisecondsSince1970: 1_000 * Int64(id)),
            updatedAt: Timestamp(millisecondsSince1970: 1_000 * Int64(id)),
            deletedAt: erased ? Timestamp(millisecondsSince1970: 99_000) : nil
        )
    }

    /// A store of the current format holding exactly `rows` (written behind the engine's back), and
    /// `unreadable` rows of bytes that decode as no row, with no index image, so that the next start
    /// rebuilds.
    private func writeStore(at path: String, rows: [Contact], unreadable: [Int] = []) throws {
        try IdentityEngine(dataDirectory: path).close()
        try FileManager.default.removeItem(atPath: IndexImage.path(in: path))
        let environment = try Environment(path: path, options: .init(maxDatabases: ContactStore.maxDatabases))
        try environment.write { transaction in
            let contacts = try transaction.openDatabase(named: "contacts", create: true)
            for row in rows {
                var record: [UInt8] = []
                ContactRecord.encode(row, into: &record)
                try transaction.put(record, forKey: ContactRecord.key(row.id), in: contacts)
            }
            for id in unreadable {
                try transaction.put([0xFF, 0xFF, 0xFF], forKey: ContactRecord.key(id), in: contacts)
            }
        }
    }

    /// The message an engine gives when it cannot open the store of `rows`, or nil when it opens.
    private func refusal(of rows: [Contact], unreadable: [Int] = []) throws -> String? {
        let directory = TemporaryDirectory()
        try writeStore(at: directory.path, rows: rows, unreadable: unreadable)
        do {
            let engine = try IdentityEngine(dataDirectory: directory.path)
            engine.close()
            return nil
        } catch {
            #expect(error.kind == .corrupt)
            return error.message
        }
    }

    @Test("a valid store with shared emails, shared phone numbers and erased rows opens and answers its profiles")
    func validStoreLoads() async throws {
        let rows = [
            row(1, "a@x.io", "1"), row(2, "a@x.io", "2", linkedTo: 1), row(3, nil, "2", linkedTo: 1),
            row(4, nil, nil, erased: true), row(5, "b@x.io", "5"), row(6, "b@x.io", nil, linkedTo: 5),
        ]
        let directory = TemporaryDirectory()
        try writeStore(at: directory.path, rows: rows)
        let engine = try IdentityEngine(dataDirectory: directory.path)
        defer { engine.close() }
        #expect(try await engine.contents().contacts == rows)
        let first = try await engine.profile(containing: 3)
        #expect(first?.emails == ["a@x.io"] && first?.phoneNumbers == ["1", "2"])
        #expect(first?.secondaryContactIds == [2, 3])
        #expect(try await engine.profile(containing: 6)?.primaryContactId == 5)
    }

    @Test("an email of another profile is refused with the row that carries it")
    func emailOfAnotherProfile() throws {
        let message = try refusal(of: [row(1, "a@x.io", "1"), row(2, "b@x.io", "2"), row(3, "a@x.io", "3")])
        #expect(message?.contains("contact 3 cannot be loaded: its email belongs to another profile") == true)
    }

    @Test("a phone number of another profile is refused with the row that carries it")
    func phoneOfAnotherProfile() throws {
        let message = try refusal(of: [row(1, "a@x.io", "1"), row(2, "b@x.io", "2"), row(3, "c@x.io", "1")])
        #expect(message?.contains("contact 3 cannot be loaded: its phone number belongs to another profile") == true)
    }

    @Test("of two broken rows the older is named, whichever thread finds it", arguments: [true, false])
    func firstBrokenRowIsNamed(emailFirst: Bool) throws {
        let badEmail = row(3, "a@x.io", "3")
        let badLink = row(emailFirst ? 5 : 3, "e@x.io", "9", linkedTo: 2)
        var rows = [row(1, "a@x.io", "1"), row(2, "b@x.io", "2", linkedTo: 1)]
        if emailFirst {
            rows += [badEmail, row(4, "d@x.io", "4"), badLink]
        } else {
            rows += [badLink, row(4, "d@x.io", "4"), row(5, "a@x.io", "5")]
        }
        let message = try refusal(of: rows)
        if emailFirst {
            #expect(message?.contains("contact 3 cannot be loaded: its email belongs to another profile") == true)
        } else {
            #expect(message?.contains("contact 3 cannot be loaded: linkedId 2 is not an older primary") == true)
        }
    }

    @Test("ids with a gap are refused at the gap")
    func idsMustBeDense() throws {
        let message = try refusal(of: [row(1, "a@x.io", "1"), row(2, "b@x.io", "2"), row(4, "c@x.io", "4")])
        #expect(message?.contains("contact 4 cannot be loaded: expected contact 3 next") == true)
    }

    /// Rows 1...count, each a profile of its own with its own values.
    private func people(_ count: Int) -> [Contact] {
        (1...count).map { row($0, "p\($0)@x.io", "\(1_000 + $0)") }
    }

    @Test("past the first batch of rows: a gap, an email of another profile, and one shared within a profile")
    func pastTheFirstBatch() async throws {
        var rows = people(40)
        rows.remove(at: 19)
        #expect(try refusal(of: rows)?.contains("contact 21 cannot be loaded: expected contact 20 next") == true)

        rows = people(40)
        rows[34] = row(35, "p18@x.io", "1035")
        let message = try refusal(of: rows)
        #expect(message?.contains("contact 35 cannot be loaded: its email belongs to another profile") == true)

        rows = people(40)
        rows[34] = row(35, "p18@x.io", "1035", linkedTo: 18)
        let directory = TemporaryDirectory()
        try writeStore(at: directory.path, rows: rows)
        let engine = try IdentityEngine(dataDirectory: directory.path)
        defer { engine.close() }
        #expect(try await engine.profile(containing: 35)?.emails == ["p18@x.io"])
        #expect(try await engine.contents().contacts == rows)
    }

    @Test("a row that cannot be read does not hide an older broken row")
    func unreadableRowAfterABrokenOne() throws {
        var rows = people(45)
        rows[2] = row(3, "p1@x.io", "1003")
        rows.remove(at: 40)
        let message = try refusal(of: rows, unreadable: [41])
        #expect(message?.contains("contact 3 cannot be loaded: its email belongs to another profile") == true)
        #expect(try refusal(of: people(40), unreadable: [41])?.contains("an unreadable row") == true)
    }
}

import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// Restore (SPEC.md section 16): Contact records imported into an empty store are kept exactly.
@Suite struct RestoreTests {
    typealias Bulk = BulkImportExportTests

    static func changes(of directory: String) async throws -> [ChangeEvent] {
        let engine = try IdentityEngine(dataDirectory: directory)
        defer { engine.close() }
        return try await engine.changes(after: 0, limit: 10_000).events
    }

    @Test("export, restore into an empty store, export again: the same bytes, in NDJSON and in CSV")
    func roundTripIsByteIdentical() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        _ = try await Bulk.buildRichStore(source)
        for format in BulkImport.Format.allCases {
            let exported = try Bulk.export(source, format)
            let file = directory.subdirectory("export.\(format.rawValue)")
            try Bulk.write(exported, to: file)
            let target = directory.subdirectory("target-\(format.rawValue)")
            let (summary, rejections) = try Bulk.importFiles([file], into: target)
            #expect(rejections.isEmpty, "\(rejections)")
            #expect(summary.restored && summary.outcome == .completed)
            #expect(try Bulk.export(target, format) == exported, "\(format)")
            #expect(InvariantCheck(contents: try StoredContacts.readContents(dataDirectory: target)).isValid)
        }
        // NDJSON carries the links and rules with their times; CSV has no place for them, so its
        // restore derives links that join the same profiles.
        let original = try StoredContacts.readContents(dataDirectory: source)
        let fromNDJSON = try StoredContacts.readContents(dataDirectory: directory.subdirectory("target-ndjson"))
        #expect(fromNDJSON == original)
        #expect(try Bulk.shapes(of: directory.subdirectory("target-csv")) == Bulk.shapes(of: source))
    }

    @Test("rows in any order restore the same store; the restore records one `restored` event")
    func shuffledRowsRestore() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        _ = try await Bulk.buildRichStore(source)
        let exported = try Bulk.export(source, .ndjson)
        let seed = UInt64(20_261_207)
        var generator = SeededGenerator(seed: seed)
        let shuffled = exported.split(separator: "\n").shuffled(using: &generator).joined(separator: "\n")
        let file = directory.subdirectory("shuffled.ndjson")
        try Bulk.write(shuffled, to: file)
        let target = directory.subdirectory("target")
        let (summary, rejections) = try Bulk.importFiles([file], into: target)
        #expect(rejections.isEmpty, "seed \(seed): \(rejections)")
        // Links and rules keep the order of the file: compare the rows, and the pairs as sets.
        let original = try StoredContacts.readContents(dataDirectory: source)
        let restored = try StoredContacts.readContents(dataDirectory: target)
        #expect(restored.contacts == original.contacts, "seed \(seed)")
        #expect(Set(restored.links.map { "\($0)" }) == Set(original.links.map { "\($0)" }))
        #expect(Set(restored.keepApart.map { "\($0)" }) == Set(original.keepApart.map { "\($0)" }))

        let events = try await Self.changes(of: target)
        #expect(events.count == 1)
        #expect(events.first?.kind == .restored && events.first?.seq == 1)
        #expect(events.first?.contacts == original.contacts.count && summary.contacts == original.contacts.count)
        let json = String(decoding: events[0].json, as: UTF8.self)
        #expect(json.hasPrefix(#"{"seq":1,"at":""#) && json.hasSuffix(#"","type":"restored","contacts":\#(original.contacts.count)}"#), "\(json)")
    }

    @Test("a restored store serves the same profiles; new contacts get ids after the largest restored one")
    func restoredStoreServes() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        _ = try await Bulk.buildRichStore(source)
        let file = directory.subdirectory("export.ndjson")
        try Bulk.write(try Bulk.export(source, .ndjson), to: file)
        let target = directory.subdirectory("target")
        try Bulk.importFiles([file], into: target)
        let original = try IdentityEngine(dataDirectory: source)
        let restored = try IdentityEngine(dataDirectory: target)
        let contacts = try await original.allContacts()
        for contact in contacts where contact.deletedAt == nil {
            #expect(try await restored.profileResponseBody(containing: contact.id)
                == original.profileResponseBody(containing: contact.id), "contact \(contact.id)")
        }
        original.close()
        let created = try await restored.identify(IdentifyRequest(email: "new@x.io", phoneNumber: nil))
        #expect(created.primaryContactId == contacts.count + 1)
        let events = try await restored.changes(after: 0, limit: 10).events
        #expect(events.map(\.kind) == [.restored, .created] && events.map(\.seq) == [1, 2])
        restored.close()
    }

    /// The Bitespeed `Contact` table as `SELECT * FROM Contact` may give it: rows in no order, a
    /// PostgreSQL timestamp form, ids a sequence skipped (6), a profile whose secondary shares no
    /// value with its primary (a link is derived), an erased row.
    static let bitespeedTable = """
        id,phoneNumber,email,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
        7,"22
        33",doc@hillvalley.edu,,primary,2023-04-24 10:00:00.5+00,2023-04-24 10:00:00.5+00,NULL
        3,717171,biffsucks@hillvalley.edu,2,secondary,2023-04-21 00:00:00+00,2023-04-21 00:00:00+00,
        1,123456,lorraine@hillvalley.edu,,primary,2023-04-01 00:00:00.374+00,2023-04-01 00:00:00.374+00,
        5,,,,primary,2023-04-23 00:00:00+00,2023-04-23 00:00:00+00,2023-05-01 12:00:00+02
        4,123456,mcfly@hillvalley.edu,1,secondary,2023-04-22T00:00:00Z,2023-04-22T00:00:00Z,
        2,919191,george@hillvalley.edu,,primary,2023-04-11 00:00:00.000+00,2023-04-21 00:00:00+00,

        """

    @Test("a Bitespeed Contact table, unsorted: every id, linkedId, timestamp and tombstone is kept")
    func bitespeedTableRestores() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("contact.csv")
        try Bulk.write(Self.bitespeedTable, to: file)
        let target = directory.subdirectory("store")
        let (summary, rejections) = try Bulk.importFiles([file], into: target)
        #expect(rejections.isEmpty, "\(rejections)")
        #expect(summary.restored && summary.contacts == 7 && summary.idsFilled == 1 && summary.derivedLinks == 1)
        let contents = try StoredContacts.readContents(dataDirectory: target)
        #expect(InvariantCheck(contents: contents).isValid)
        func at(_ text: String) -> Timestamp { Timestamp(parsing: text)! }
        #expect(contents.contacts.map(\.id) == Array(1...7))
        #expect(contents.contacts.map(\.linkedId) == [nil, nil, 2, 1, nil, nil, nil])
        #expect(contents.contacts[0].createdAt == at("2023-04-01T00:00:00.374Z"))
        #expect(contents.contacts[1].updatedAt == at("2023-04-21T00:00:00.000Z"))
        #expect(contents.contacts[4].deletedAt == at("2023-05-01T10:00:00.000Z") && contents.contacts[4].email == nil)
        // Id 6 was never in the table: it stays out of use, as a tombstone dated like row 5.
        #expect(contents.contacts[5].deletedAt == contents.contacts[4].createdAt)
        #expect(contents.contacts[6].phoneNumber == "2233" && contents.contacts[6].createdAt == at("2023-04-24T10:00:00.500Z"))
        // 2 and 3 share no value: the link the merge once made is derived from their values.
        #expect(contents.links.map { [$0.email, $0.phoneNumber] } == [["biffsucks@hillvalley.edu", "919191"]]
            || contents.links.map { [$0.email, $0.phoneNumber] } == [["george@hillvalley.edu", "717171"]])

        let engine = try IdentityEngine(dataDirectory: target)
        let profile = try await engine.identify(IdentifyRequest(email: "biffsucks@hillvalley.edu", phoneNumber: nil))
        #expect(profile.primaryContactId == 2 && profile.secondaryContactIds == [3])
        #expect(try await engine.identify(IdentifyRequest(email: "x@y.io", phoneNumber: nil)).primaryContactId == 8)
        engine.close()
    }

    @Test("records that break an invariant are reported by file and line, and nothing is written")
    func violationsWriteNothing() throws {
        let directory = TemporaryDirectory()
        let cases: [(String, Int, String)] = [
            // A secondary linked to a secondary (a chain).
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,a@x.io,1,,primary,2023-01-01,2023-01-01,
            2,b@x.io,1,1,secondary,2023-01-02,2023-01-02,
            3,c@x.io,1,2,secondary,2023-01-03,2023-01-03,
            """, 4, "contact 3 links to contact 2, which is itself a secondary"),
            // One email in two profiles.
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            2,a@x.io,2,,primary,2023-01-02,2023-01-02,
            1,a@x.io,1,,primary,2023-01-01,2023-01-01,
            """, 2, "its email belongs to profiles 1 and 2"),
            // A primary younger than its secondary.
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,a@x.io,1,,primary,2023-01-05,2023-01-05,
            2,b@x.io,1,1,secondary,2023-01-02,2023-01-02,
            """, 3, "was created before the older contact 1"),
            // The same id twice.
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,a@x.io,1,,primary,2023-01-01,2023-01-01,
            1,b@x.io,2,,primary,2023-01-01,2023-01-01,
            """, 3, "is given twice"),
            // linkPrecedence that contradicts linkedId, and a timestamp that is not one.
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,a@x.io,1,,secondary,2023-01-01,2023-01-01,
            2,b@x.io,2,,primary,yesterday,2023-01-01,
            """, 2, "linkPrecedence"),
            // A secondary that shares no value with its primary, and no email of one with a phone
            // number of the other from which a link could be derived.
            ("""
            id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,a@x.io,,,primary,2023-01-01,2023-01-01,
            2,b@x.io,,1,secondary,2023-01-02,2023-01-02,
            """, 2, "profile 1 is not connected by shared values and links"),
        ]
        for (index, (text, line, reason)) in cases.enumerated() {
            let file = directory.subdirectory("case\(index).csv")
            try Bulk.write(text, to: file)
            let target = directory.subdirectory("store\(index)")
            let (summary, rejections) = try Bulk.importFiles([file], into: target)
            #expect(summary.outcome == .refused, "case \(index)")
            #expect(rejections.contains { $0.file == file && $0.line == line && $0.reason.contains(reason) },
                    "case \(index): \(rejections)")
            // No email or phone number in a reason: they go to logs.
            #expect(!rejections.contains { $0.reason.contains("@x.io") }, "case \(index): \(rejections)")
            #expect(try StoredContacts.read(dataDirectory: target).isEmpty, "case \(index)")
            // Still empty: fixing the file and importing again is a restore.
        }
    }

    @Test("the first file that holds a record decides: an empty file before an export still restores it")
    func firstFileWithRecordsDecides() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("contact.csv")
        try Bulk.write(Self.bitespeedTable, to: file)
        let empty = directory.subdirectory("empty.ndjson")
        try Bulk.write("\n\n", to: empty)
        let restored = directory.subdirectory("restored")
        let (summary, rejections) = try Bulk.importFiles([empty, file], into: restored)
        #expect(rejections.isEmpty && summary.restored && summary.contacts == 7, "\(rejections)")
        // Identify bodies first: an import, and the records after them are applied as identify.
        let bodies = directory.subdirectory("bodies.ndjson")
        try Bulk.write(#"{"email":"first@x.io"}"#, to: bodies)
        let imported = directory.subdirectory("imported")
        let (other, _) = try Bulk.importFiles([bodies, file], into: imported)
        #expect(!other.restored && other.outOfOrder > 0)
    }

    @Test("into a store that is not empty, records are applied as identify and get new ids")
    func nonEmptyStoreMerges() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("contact.csv")
        try Bulk.write(Self.bitespeedTable, to: file)
        let target = directory.subdirectory("store")
        let engine = try IdentityEngine(dataDirectory: target)
        _ = try await engine.identify(IdentifyRequest(email: "first@x.io", phoneNumber: nil))
        engine.close()
        let (summary, rejections) = try Bulk.importFiles([file], into: target)
        #expect(!summary.restored)
        // Unsorted records cannot be applied in id order here: the ones after a larger id are skipped,
        // counted, and the command exits 1 for them.
        #expect(summary.outOfOrder == rejections.filter { $0.reason.contains("ascending id order") }.count)
        #expect(summary.outOfOrder > 0)
        let contacts = try StoredContacts.read(dataDirectory: target)
        #expect(contacts[0].email == "first@x.io")
        #expect(contacts.dropFirst().first?.email == "doc@hillvalley.edu" && contacts.dropFirst().first?.id == 2)
    }

    @Test("import records change events like any identify: one per created or merged profile, in order")
    func importRecordsChangeEvents() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("in.ndjson")
        try Bulk.write("""
            {"email":"a@x.io","phoneNumber":"1"}
            {"email":"b@x.io","phoneNumber":"2"}
            {"email":"a@x.io","phoneNumber":"1"}
            {"email":"a@x.io","phoneNumber":"2"}
            {"email":"c@x.io","phoneNumber":"2"}
            """, to: file)
        let target = directory.subdirectory("store")
        let (summary, _) = try Bulk.importFiles([file], into: target, options: .init(batchSize: 2))
        #expect(summary.contactsCreated == 3 && summary.merged == 1)
        let events = try await Self.changes(of: target)
        #expect(events.map(\.seq) == [1, 2, 3, 4])
        #expect(events.map(\.kind) == [.created, .created, .merged, .created])
        #expect(events[2].mergedPrimaryIds == [2] && events[2].contactIds == [2])
        #expect(events[3].contactIds == [3] && events[3].primaryContactIds == [1])
    }

    @Test("a CSV column that looks like the email or phone number, while that field has none, is a usage error")
    func nearMissColumns() throws {
        let directory = TemporaryDirectory()
        let target = directory.subdirectory("store")
        for (header, flag) in [("email,phone", "--phone-column"), ("Email,phoneNumber", "--email-column"),
                               ("e-mail,phoneNumber", "--email-column"), ("email,Phone_Number", "--phone-column"),
                               ("mail,mobile", "--email-column"), ("email, phoneNumber ", "--phone-column"),
                               ("email,msisdn", "--phone-column")] {
            let file = directory.subdirectory("near.csv")
            try Bulk.write(header + "\na@x.io,1\n", to: file)
            let error = #expect(throws: BulkImport.Failure.self) { try Bulk.importFiles([file], into: target) }
            #expect(error?.isUsage == true, "\(header)")
            #expect(error?.message.contains(flag) == true, "\(header): \(String(describing: error))")
        }
        #expect(!FileManager.default.fileExists(atPath: target + "/data.mdb"))
        // Named with the flag, the column is read; the summary names every column not read.
        let file = directory.subdirectory("chosen.csv")
        try Bulk.write("name,email,Mobile,city\nA,a@x.io,5550001,X\n", to: file)
        let (summary, rejections) = try Bulk.importFiles(
            [file], into: target, options: .init(phoneColumn: "Mobile")
        )
        #expect(rejections.isEmpty && summary.contactsCreated == 1)
        #expect(summary.unusedColumns == [BulkImport.UnusedColumns(file: file, columns: ["name", "city"])])
        #expect(try StoredContacts.read(dataDirectory: target).first?.phoneNumber == "5550001")
        let missing = #expect(throws: BulkImport.Failure.self) {
            try Bulk.importFiles([file], into: target, options: .init(emailColumn: "mail"))
        }
        #expect(missing?.isUsage == true && missing?.message.contains("--email-column mail") == true)
    }

    @Test("timestamps as exports and database dumps write them")
    func timestampForms() {
        let expected = Timestamp(parsing: "2023-04-01T10:20:30.374Z")
        #expect(expected?.rfc3339 == "2023-04-01T10:20:30.374Z")
        for text in ["2023-04-01 10:20:30.374+00", "2023-04-01 12:20:30.374+02:00", "2023-04-01T10:20:30.374123Z",
                     "2023-04-01t05:20:30.374-0500", "2023-04-01 10:20:30.374"] {
            #expect(Timestamp(parsing: text) == expected, "\(text)")
        }
        #expect(Timestamp(parsing: "2023-04-01")?.rfc3339 == "2023-04-01T00:00:00.000Z")
        #expect(Timestamp(parsing: "2024-02-29T00:00Z")?.rfc3339 == "2024-02-29T00:00:00.000Z")
        for bad in ["", "yesterday", "2023-02-29", "2023-04-01T25:00:00Z", "2023-04-01 10:20:30.", "2023-04-01Z"] {
            #expect(Timestamp(parsing: bad) == nil, "\(bad)")
        }
    }
}

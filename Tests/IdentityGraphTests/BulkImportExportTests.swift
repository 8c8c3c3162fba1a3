import Foundation
import Testing
@testable import IdentityGraph

/// Bulk import and export (SPEC.md section 16), in process.
@Suite struct BulkImportExportTests {
    /// A profile as the values it holds: what "the same profiles" means across stores whose ids differ.
    struct Shape: Hashable, CustomStringConvertible {
        var emails: Set<String>
        var phones: Set<String>
        var description: String { "\(emails.sorted()) \(phones.sorted())" }
    }

    /// The profiles of a store, each as its values, after checking that the store is valid (which
    /// includes that each profile's primary is its oldest contact).
    static func shapes(of directory: String) throws -> Set<Shape> {
        let contents = try StoredContacts.readContents(dataDirectory: directory)
        let check = InvariantCheck(contents: contents)
        #expect(check.isValid, "\(check.violations)")
        var byPrimary: [Int: Shape] = [:]
        for contact in contents.contacts where contact.deletedAt == nil {
            let primary = contact.linkedId ?? contact.id
            var shape = byPrimary[primary] ?? Shape(emails: [], phones: [])
            if let email = contact.email { shape.emails.insert(email) }
            if let phone = contact.phoneNumber { shape.phones.insert(phone) }
            byPrimary[primary] = shape
        }
        return Set(byPrimary.values)
    }

    static func export(_ directory: String, _ format: BulkImport.Format) throws -> String {
        var bytes: [UInt8] = []
        _ = try BulkExport.run(dataDirectory: directory, format: format, chunkBytes: 4096) { bytes.append(contentsOf: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    @discardableResult
    static func importFiles(
        _ files: [String], into directory: String, options: BulkImport.Options = .init()
    ) throws -> (BulkImport.Summary, [BulkImport.Rejection]) {
        var rejections: [BulkImport.Rejection] = []
        let summary = try BulkImport.run(
            dataDirectory: directory, files: files, options: options, onReject: { rejections.append($0) }
        )
        return (summary, rejections)
    }

    /// A store that is not empty (one contact, `seed@x.io`), so that an import into it applies Contact
    /// records as identify rather than restoring them (SPEC.md section 16). Returns that contact's shape.
    @discardableResult
    static func nonEmptyStore(_ directory: String) async throws -> Shape {
        let engine = try IdentityEngine(dataDirectory: directory)
        _ = try await engine.identify(IdentifyRequest(email: "seed@x.io", phoneNumber: nil))
        engine.close()
        return Shape(emails: ["seed@x.io"], phones: [])
    }

    /// A store with merges (some by links), an unmerge with a keep-apart rule, erasures (tombstones),
    /// and values the blocklist held back. Returns the rule's email and phone number.
    static func buildRichStore(_ directory: String) async throws -> (email: String, phone: String) {
        let blocklist = try Blocklist(parsing: "phoneNumber 0000000000\n", source: "test")
        let engine = try IdentityEngine(dataDirectory: directory, options: .init(guards: Guards(blocklist: blocklist)))
        var requests = RequestGenerator(seed: 11, emails: 120, phones: 90)
        for _ in 0..<600 { _ = try await engine.identify(requests.next()) }
        _ = try await engine.identify(.json(#"{"email":"junk@x.io","phoneNumber":"0000000000"}"#))
        _ = try await engine.identify(.json(#"{"email":"lorraine@hv.edu","phoneNumber":"555001"}"#))
        _ = try await engine.identify(.json(#"{"email":"marty@hv.edu","phoneNumber":"555002"}"#))
        // A merge without a row (a link), then undone for good: the two stay apart.
        _ = try await engine.identify(.json(#"{"email":"lorraine@hv.edu","phoneNumber":"555002"}"#))
        _ = try await engine.unmerge(email: "lorraine@hv.edu", phoneNumber: "555002", keepApart: true)
        // Another merge by a link that stays.
        _ = try await engine.identify(.json(#"{"email":"doc@hv.edu","phoneNumber":"555003"}"#))
        _ = try await engine.identify(.json(#"{"email":"einstein@hv.edu","phoneNumber":"555004"}"#))
        _ = try await engine.identify(.json(#"{"email":"doc@hv.edu","phoneNumber":"555004"}"#))
        // Erasures: a whole contact, and one value of others.
        _ = try await engine.erase(.contact(5))
        _ = try await engine.erase(.values(email: "e7@x.io", phoneNumber: nil))
        _ = try await engine.erase(.values(email: nil, phoneNumber: "13"))
        let contents = try await engine.contents()
        #expect(contents.contacts.contains { $0.deletedAt != nil })
        #expect(contents.keepApart.count == 1 && !contents.links.isEmpty)
        engine.close()
        return ("lorraine@hv.edu", "555002")
    }

    @Test("an NDJSON export imported into a store that is not empty merges in the same profiles, links and rules")
    func ndjsonRoundTrip() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        let rule = try await Self.buildRichStore(source)
        let exported = try Self.export(source, .ndjson)
        let original = try StoredContacts.readContents(dataDirectory: source)
        let lines = exported.split(separator: "\n")
        #expect(lines.count == original.contacts.count + original.links.count + original.keepApart.count)
        #expect(lines.filter { $0.hasPrefix("{\"keepApart\":") }.count == 1)
        #expect(!exported.contains("0000000000"))

        let file = directory.subdirectory("export.ndjson")
        try Self.write(exported, to: file)
        let target = directory.subdirectory("target")
        let seed = try await Self.nonEmptyStore(target)
        let (summary, rejections) = try Self.importFiles([file], into: target)
        #expect(rejections.isEmpty, "\(rejections)")
        #expect(summary.outcome == .completed && !summary.restored)
        #expect(summary.erasedSkipped == original.contacts.filter { $0.deletedAt != nil }.count)
        #expect(summary.keepApartRules == 1)
        #expect(try Self.shapes(of: target) == Self.shapes(of: source).union([seed]))
        let imported = try StoredContacts.readContents(dataDirectory: target)
        #expect(Set(imported.keepApart.map { [$0.email, $0.phoneNumber] }) == Set(original.keepApart.map { [$0.email, $0.phoneNumber] }))
        #expect(Set(imported.links.map { [$0.email, $0.phoneNumber] }) == Set(original.links.map { [$0.email, $0.phoneNumber] }))

        // The rule survives: the imported store refuses the merge it forbids.
        let engine = try IdentityEngine(dataDirectory: target)
        let answer = try await engine.identify(IdentifyRequest(email: rule.email, phoneNumber: rule.phone))
        #expect(!answer.phoneNumbers.contains(rule.phone))
        engine.close()
    }

    @Test("a CSV export imported into a store that is not empty rebuilds the same profiles from linkedId")
    func csvRoundTrip() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        _ = try await Self.buildRichStore(source)
        let exported = try Self.export(source, .csv)
        #expect(exported.hasPrefix("id,email,phoneNumber,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt\n"))
        let file = directory.subdirectory("export.csv")
        try Self.write(exported, to: file)
        let target = directory.subdirectory("target")
        let seed = try await Self.nonEmptyStore(target)
        let (_, rejections) = try Self.importFiles([file], into: target)
        #expect(rejections.isEmpty, "\(rejections)")
        #expect(try Self.shapes(of: target) == Self.shapes(of: source).union([seed]))
        // Links have no place in CSV: the profiles the store merged without a row are joined again by a link.
        #expect(try !StoredContacts.readContents(dataDirectory: target).links.isEmpty)
    }

    @Test("exported records are the Contact records of the store, byte for byte as GET /contacts/{id}")
    func exportMatchesContactJSON() async throws {
        let directory = TemporaryDirectory()
        let source = directory.subdirectory("source")
        _ = try await Self.buildRichStore(source)
        let contacts = try StoredContacts.read(dataDirectory: source)
        let lines = try Self.export(source, .ndjson).split(separator: "\n").prefix(contacts.count)
        #expect(lines.map(String.init) == contacts.map { String(decoding: $0.json, as: UTF8.self) })
    }

    @Test("erased values are gone from export: no byte of them in NDJSON or CSV, links and rules included")
    func erasedValuesAreGoneFromExport() async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try IdentityEngine(dataDirectory: store)
        let secretEmail = "erase-me-export-41c2@example.org"
        let secretPhone = "+4915550999123"
        _ = try await engine.identify(.json(#"{"email":"\#(secretEmail)","phoneNumber":"100"}"#))
        _ = try await engine.identify(.json(#"{"email":"other@example.org","phoneNumber":"\#(secretPhone)"}"#))
        // A link and a keep-apart rule hold both values too.
        _ = try await engine.identify(.json(#"{"email":"\#(secretEmail)","phoneNumber":"\#(secretPhone)"}"#))
        _ = try await engine.unmerge(email: secretEmail, phoneNumber: secretPhone, keepApart: true)
        _ = try await engine.identify(.json(#"{"email":"bridge@example.org","phoneNumber":"100"}"#))
        let before = try await engine.contents()
        #expect(before.links.count + before.keepApart.count >= 1)
        _ = try await engine.erase(.values(email: secretEmail, phoneNumber: nil))
        _ = try await engine.erase(.values(email: nil, phoneNumber: secretPhone))
        engine.close()
        for format in BulkImport.Format.allCases {
            var bytes: [UInt8] = []
            _ = try BulkExport.run(dataDirectory: store, format: format) { bytes.append(contentsOf: $0) }
            let data = Data(bytes)
            #expect(data.range(of: Data(secretEmail.utf8)) == nil, "\(format) export holds the erased email")
            #expect(data.range(of: Data(secretPhone.utf8)) == nil, "\(format) export holds the erased phone number")
            // The phone number's digits alone, as a normalizer might have kept them.
            #expect(data.range(of: Data("15550999123".utf8)) == nil, "\(format)")
            #expect(data.range(of: Data("other@example.org".utf8)) != nil, "\(format) export lost a live value")
        }
    }

    @Test("a Bitespeed Contact table in CSV: secondaries join their primary, erased rows are skipped, quotes work")
    func bitespeedTable() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("contact.csv")
        try Self.write("""
            id,phoneNumber,email,linkedId,linkPrecedence,createdAt,updatedAt,deletedAt
            1,123456,lorraine@hillvalley.edu,,primary,2023-04-01,2023-04-01,
            2,919191,george@hillvalley.edu,,primary,2023-04-11,2023-04-11,
            3,717171,"biff,sucks@hillvalley.edu",2,secondary,2023-04-21,2023-04-21,
            4,,mcfly@hillvalley.edu,1,secondary,2023-04-22,2023-04-22,
            5,000111,gone@hillvalley.edu,,primary,2023-04-23,2023-04-23,2023-05-01
            6,"22
            33",doc@hillvalley.edu,,primary,2023-04-24,2023-04-24,NULL

            """, to: file)
        let target = directory.subdirectory("store")
        let seed = try await Self.nonEmptyStore(target)
        let (summary, rejections) = try Self.importFiles([file], into: target)
        // The quoted email keeps its comma (a valid email), the quoted phone number its line break
        // (whitespace, removed by normalization); 2 and 3 share no value and are joined by a link.
        #expect(rejections.isEmpty, "\(rejections)")
        #expect(summary.erasedSkipped == 1)
        #expect(summary.records == 6)
        #expect(try Self.shapes(of: target) == [
            Shape(emails: ["lorraine@hillvalley.edu", "mcfly@hillvalley.edu"], phones: ["123456"]),
            Shape(emails: ["george@hillvalley.edu", "biff,sucks@hillvalley.edu"], phones: ["919191", "717171"]),
            Shape(emails: ["doc@hillvalley.edu"], phones: ["2233"]), seed,
        ])
    }

    @Test("Contact records of one profile that share no value are joined by a link, as the merge did")
    func contactRecordsJoinedByLink() async throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("records.ndjson")
        try Self.write("""
            {"id":1,"email":"a@x.io","phoneNumber":"1","linkedId":null,"linkPrecedence":"primary","createdAt":"x","updatedAt":"x","deletedAt":null}
            {"id":2,"email":"b@x.io","phoneNumber":"2","linkedId":1,"linkPrecedence":"secondary","createdAt":"x","updatedAt":"x","deletedAt":null}
            {"id":3,"email":"c@x.io","phoneNumber":null,"linkedId":null,"linkPrecedence":"primary","createdAt":"x","updatedAt":"x","deletedAt":null}
            {"id":4,"email":"d@x.io","phoneNumber":null,"linkedId":3,"linkPrecedence":"secondary","createdAt":"x","updatedAt":"x","deletedAt":null}
            {"id":3,"email":"late@x.io","phoneNumber":null,"linkedId":null,"linkPrecedence":"primary","createdAt":"x","updatedAt":"x","deletedAt":null}
            """, to: file)
        let target = directory.subdirectory("store")
        try await Self.nonEmptyStore(target)
        let (summary, rejections) = try Self.importFiles([file], into: target)
        #expect(summary.outOfOrder == 1)
        // Record 4 cannot be joined to 3 (two emails, no phone number); the repeated id is out of order.
        #expect(rejections.map(\.line).sorted() == [4, 5])
        #expect(rejections.contains { $0.reason.contains("ascending id order") })
        let shapes = try Self.shapes(of: target)
        #expect(shapes.contains(Shape(emails: ["a@x.io", "b@x.io"], phones: ["1", "2"])))
        #expect(try StoredContacts.readContents(dataDirectory: target).links.count == 1)
    }

    @Test("bad records are skipped and reported with their line: invalid UTF-8, a line over the limit, blocked values")
    func badRecords() throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("in.ndjson")
        var bytes = Array(#"{"email":"a@x.io","phoneNumber":"1"}"#.utf8) + [0x0A]
        bytes += Array(#"{"email":"b@x.io","phoneNumber":"2"}"#.utf8) + [0x0A]
        bytes += Array(#"{"email":"bad"#.utf8) + [0xC3, 0x28] + Array(#"@x.io"}"#.utf8) + [0x0A]
        bytes += Array(#"{"email":""#.utf8) + Array(repeating: UInt8(ascii: "z"), count: 3 << 20) + Array(#"@x.io"}"#.utf8) + [0x0A]
        bytes += Array(#"{"phoneNumber":"0000000000"}"#.utf8) + [0x0D, 0x0A]
        bytes += Array("\n   \n".utf8)
        bytes += Array(#"{"link":{"email":"a@x.io","phoneNumber":"999"}}"#.utf8) + [0x0A]
        bytes += Array(#"{"link":{"email":"a@x.io","phoneNumber":"2"}}"#.utf8) + [0x0A]
        bytes += Array(#"{"keepApart":{"email":"nobody@x.io","phoneNumber":"1"}}"#.utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let target = directory.subdirectory("store")
        let blocklist = try Blocklist(parsing: "phoneNumber 0000000000\n", source: "test")
        let (summary, rejections) = try Self.importFiles(
            [file], into: target, options: .init(guards: Guards(blocklist: blocklist), maximumLineBytes: 1 << 20)
        )
        #expect(rejections.map(\.line) == [3, 4, 5, 8, 10])
        #expect(rejections[0].reason.contains("UTF-8") && rejections[0].record == nil)
        #expect(rejections[1].reason.contains("longer than") && rejections[1].record == nil)
        #expect(rejections[2].reason.contains("blocked"))
        #expect(rejections[2].record == #"{"phoneNumber":"0000000000"}"#)
        #expect(rejections[3].reason.contains("no live contact"))
        #expect(rejections[4].reason.hasPrefix("keepApart:"))
        #expect(summary.records == 8 && summary.rejected == 5 && summary.merged == 1 && summary.contactsCreated == 2)
        #expect(try Self.shapes(of: target) == [Shape(emails: ["a@x.io", "b@x.io"], phones: ["1", "2"])])
    }

    @Test("--strict stops at the first bad record with everything before it committed")
    func strictStops() throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("in.ndjson")
        let good = (0..<250).map { #"{"email":"p\#($0)@x.io"}"# }
        try Self.write((good + ["{oops}"] + good.map { $0.replacingOccurrences(of: "p", with: "q") }).joined(separator: "\n"), to: file)
        let target = directory.subdirectory("store")
        let (summary, _) = try Self.importFiles([file], into: target, options: .init(batchSize: 100, strict: true))
        guard case .stoppedAtBadRecord(let rejection) = summary.outcome else {
            Issue.record("expected a stop, got \(summary.outcome)")
            return
        }
        #expect(rejection.line == 251)
        let contacts = try StoredContacts.read(dataDirectory: target)
        #expect(contacts.map(\.email) == (0..<250).map { "p\($0)@x.io" })
    }

    @Test("a file that cannot be read, or a CSV without an email or phoneNumber column, fails before anything is written")
    func unusableFiles() throws {
        let directory = TemporaryDirectory()
        let good = directory.subdirectory("good.ndjson")
        try Self.write(#"{"email":"a@x.io"}"#, to: good)
        let noColumns = directory.subdirectory("other.csv")
        try Self.write("name,city\nx,y\n", to: noColumns)
        let target = directory.subdirectory("store")
        for (files, expected) in [([good, directory.subdirectory("missing.ndjson")], "missing.ndjson"),
                                  ([good, noColumns], "other.csv:1:"), ([directory.subdirectory("x.txt")], "x.txt")] {
            let error = #expect(throws: BulkImport.Failure.self) { try Self.importFiles(files, into: target) }
            #expect(error?.message.contains(expected) == true, "\(String(describing: error))")
        }
        #expect(!FileManager.default.fileExists(atPath: target + "/data.mdb"))
        let empty = directory.subdirectory("empty.csv")
        try Self.write("", to: empty)
        let (summary, rejections) = try Self.importFiles([empty, good], into: target)
        #expect(summary.records == 1 && rejections.isEmpty)
    }

    @Test("a stop requested between records commits what was read, a prefix of the input")
    func interruptedImportHoldsPrefix() throws {
        let directory = TemporaryDirectory()
        let file = directory.subdirectory("in.ndjson")
        try Self.write((0..<5000).map { #"{"email":"p\#($0)@x.io","phoneNumber":"\#($0 / 2)"}"# }.joined(separator: "\n"), to: file)
        let target = directory.subdirectory("store")
        var polls = 0
        let summary = try BulkImport.run(
            dataDirectory: target, files: [file], options: .init(batchSize: 300),
            shouldStop: {
                polls += 1
                return polls == 3
            }
        )
        #expect(summary.outcome == .interrupted)
        #expect(summary.records == 3 * 1024)
        let contacts = try StoredContacts.read(dataDirectory: target)
        #expect(contacts.map(\.email) == (0..<(3 * 1024)).map { "p\($0)@x.io" })
        #expect(try Self.shapes(of: target).count == 3 * 512)
    }
}

import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// SPEC.md section 10's blocklist file: its rules, its errors, and the cached matcher the engine uses.
@Suite struct BlocklistTests {
    @Test("an exact email is normalized before it is compared")
    func exactEmailIsNormalized() throws {
        let blocklist = try parse("email   Test@Test.com  ")
        #expect(blocklist.blocks("test@test.com", field: .email))
        #expect(!blocklist.blocks("other@test.com", field: .email))
    }

    @Test("an exact phone number is normalized before it is compared")
    func exactPhoneNumberIsNormalized() throws {
        let blocklist = try parse("phoneNumber (123) 456-7890")
        #expect(blocklist.blocks("1234567890", field: .phoneNumber))
        #expect(!blocklist.blocks("+1234567890", field: .phoneNumber))
    }

    @Test("a regex must match the whole value")
    func regexMatchesWholeValue() throws {
        let blocklist = try parse("phoneNumber /0+/")
        #expect(blocklist.blocks("0000000", field: .phoneNumber))
        #expect(blocklist.blocks("0", field: .phoneNumber))
        #expect(!blocklist.blocks("10000", field: .phoneNumber))
        #expect(!blocklist.blocks("00001", field: .phoneNumber))
    }

    @Test("an email regex is matched against the lowercased value")
    func emailRegex() throws {
        let blocklist = try parse(#"email /.*@example\.com/"#)
        #expect(blocklist.blocks("alice@example.com", field: .email))
        #expect(!blocklist.blocks("alice@example.com.evil", field: .email))
        #expect(!blocklist.blocks("alice@example.org", field: .email))
    }

    @Test("comments and blank lines are ignored")
    func commentsAndBlankLinesAreIgnored() throws {
        let blocklist = try parse("""
            # junk that strangers share

              \t
               # an indented comment
            email test@test.com
            """)
        #expect(blocklist.ruleCount == 1)
        #expect(blocklist.blocks("test@test.com", field: .email))
    }

    @Test("an unknown field is an error naming its line")
    func unknownFieldNamesTheLine() throws {
        let error = try #require(parseError("# rules\n\nmail test@test.com"))
        #expect(error.line == 3)
        #expect(error.reason.contains("mail"))
        #expect(error.description.hasPrefix("blocklist.txt line 3: "))
    }

    @Test("a field with no value is an error naming its line")
    func missingValueNamesTheLine() throws {
        let error = try #require(parseError("email a@b.c\nphoneNumber   "))
        #expect(error.line == 2)
        #expect(error.reason.contains("phoneNumber"))
    }

    @Test("an invalid regex is an error naming its line")
    func invalidRegexNamesTheLine() throws {
        let error = try #require(parseError("email a@b.c\n\nemail /[/"))
        #expect(error.line == 3)
        #expect(error.description.hasPrefix("blocklist.txt line 3: invalid regex /[/"))
    }

    @Test("a value that fails normalization is an error naming its line")
    func invalidValueNamesTheLine() throws {
        let error = try #require(parseError("phoneNumber 000\nemail not-an-email"))
        #expect(error.line == 2)
        #expect(error.reason.contains("not-an-email"))
        #expect(try #require(parseError("phoneNumber 12ab")).line == 1)
    }

    @Test("an empty regex is an error naming its line")
    func emptyRegexNamesTheLine() throws {
        let error = try #require(parseError("# none\nphoneNumber //"))
        #expect(error.line == 2)
        #expect(error.reason.contains("empty regex"))
    }

    @Test("a regex that is not closed is an error naming its line")
    func unclosedRegexNamesTheLine() throws {
        let error = try #require(parseError("email a@b.io\nemail /.*@example\\.com"))
        #expect(error.line == 2)
        #expect(error.reason.contains("must end with /"))
    }

    @Test("lines are counted across CRLF line endings")
    func crlfLineNumbers() throws {
        #expect(try #require(parseError("email a@b.c\r\n\r\nfax 123")).line == 3)
    }

    @Test("a file that cannot be read is an error naming the file, with no line")
    func unreadableFile() throws {
        let directory = TemporaryDirectory()
        let path = directory.subdirectory("missing.txt")
        let error = try #require(#expect(throws: BlocklistError.self) { try Blocklist(contentsOfFile: path) })
        #expect(error.source == path)
        #expect(error.line == nil)
        #expect(error.description.hasPrefix(path + ": "))
    }

    @Test("a file's rules are read, and its errors name the file and line")
    func fileIsRead() throws {
        let directory = TemporaryDirectory()
        let good = directory.subdirectory("good.txt")
        try "email test@test.com\nphoneNumber /0+/\n".write(toFile: good, atomically: true, encoding: .utf8)
        #expect(try Blocklist(contentsOfFile: good).ruleCount == 2)

        let bad = directory.subdirectory("bad.txt")
        try "email test@test.com\nphone 0000\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let error = try #require(#expect(throws: BlocklistError.self) { try Blocklist(contentsOfFile: bad) })
        #expect(error.source == bad)
        #expect(error.line == 2)
    }

    @Test("the matcher gives the verdicts of the blocklist, past its cache limit")
    func matcherAgreesWithBlocklist() throws {
        let blocklist = try parse("""
            email test@test.com
            email /.*@example\\.com/
            phoneNumber /0+/
            phoneNumber 1234567890
            """)
        var matcher = BlocklistMatcher(blocklist, cacheLimit: 4)
        // More distinct values than the cache holds, some of them repeated after it has been cleared.
        let cases: [(String, GuardField, Bool)] = [
            ("test@test.com", .email, true), ("a@example.com", .email, true), ("b@example.org", .email, false),
            ("c@example.com", .email, true), ("d@x.y", .email, false), ("e@example.com", .email, true),
            ("f@g.h", .email, false), ("0", .phoneNumber, true), ("10", .phoneNumber, false),
            ("000", .phoneNumber, true), ("1234567890", .phoneNumber, true), ("0001", .phoneNumber, false),
            ("00000", .phoneNumber, true), ("555", .phoneNumber, false),
        ]
        for _ in 0..<3 {
            for (value, field, expected) in cases {
                #expect(blocklist.blocks(value, field: field) == expected, "\(field): \(value)")
                let verdict = matcher.isBlocked(value, field: field)
                #expect(verdict == expected, "\(field): \(value)")
            }
        }
    }

    @Test("a field with no rules is never blocked")
    func fieldWithoutRulesIsNeverBlocked() throws {
        let blocklist = try parse("email /.*/")
        var matcher = BlocklistMatcher(blocklist)
        #expect(!blocklist.blocks("0000000000", field: .phoneNumber))
        let phoneVerdict = matcher.isBlocked("0000000000", field: .phoneNumber)
        #expect(!phoneVerdict)
        let emailVerdict = matcher.isBlocked("a@b.c", field: .email)
        #expect(emailVerdict)

        var empty = BlocklistMatcher(.empty)
        #expect(empty.isEmpty)
        let verdicts = [
            empty.isBlocked("test@test.com", field: .email), empty.isBlocked("0000000000", field: .phoneNumber),
        ]
        #expect(verdicts == [false, false])
    }

    @Test("ruleCount counts distinct values and regexes of both fields")
    func ruleCount() throws {
        #expect(Blocklist.empty.ruleCount == 0)
        #expect(Blocklist.empty.isEmpty)
        let blocklist = try parse("""
            email test@test.com
            email TEST@test.com
            email /.*@example\\.com/
            phoneNumber 000-0000
            phoneNumber 0000000
            phoneNumber /0+/
            phoneNumber /0+/
            phoneNumber /9+/
            """)
        #expect(blocklist.ruleCount == 5)
        #expect(!blocklist.isEmpty)
    }

    // MARK: - Helpers

    private func parse(_ text: String) throws -> Blocklist {
        try Blocklist(parsing: text, source: "blocklist.txt")
    }

    /// The error parsing `text` throws, or `nil` when it parses.
    private func parseError(_ text: String) -> BlocklistError? {
        do {
            _ = try Blocklist(parsing: text, source: "blocklist.txt")
            return nil
        } catch {
            return error
        }
    }
}

/// A regex is matched only when the value holds the literal text the regex requires: that look must never
/// change a verdict, only skip matches that cannot succeed.
@Suite struct BlocklistRequiredTextTests {
    private func required(_ pattern: String) -> String? {
        Blocklist.Pattern.requiredText(of: pattern).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test("the required text of typical junk patterns is their longest literal run")
    func typicalPatterns() {
        #expect(required(#"test[0-9]*@test\.com"#) == "@test.com")
        #expect(required(#".*@mailinator\.com"#) == "@mailinator.com")
        #expect(required(#"noreply@.*"#) == "noreply@")
        #expect(required(#".*\+spam@.*"#) == "+spam@")
        #expect(required(#"\d+@nowhere\.test"#) == "@nowhere.test")
        #expect(["@shop", ".test"].contains(required(#"(support|info|sales)@shop[0-9]*\.test"#) ?? ""))
        #expect(required(#"0{6,}"#) == nil)
    }

    @Test("a pattern whose literals can be skipped or that reads unusually requires nothing")
    func cautiousPatterns() {
        #expect(required("a|bc") == nil, "top-level alternation")
        #expect(required("(?i)abc") == nil, "inline options")
        #expect(required(#"\x41bc"#) == nil, "an escape with arguments")
        #expect(required(#"\p{L}+abc"#) == nil, "a property escape")
        #expect(required("ab*c") == nil, "b may be absent, leaving runs of one")
        #expect(required("abc?d") == "ab")
        #expect(required("x+y+") == nil, "single characters are not selective")
        #expect(required("ab+cd") == "ab")
        #expect(required("[]ab]cd") == nil, "a class that starts with ]")
        #expect(required("[a[b]]cd") == nil, "a nested class")
        #expect(required("(ab[)]cd)ef") == "ef", "a ) inside a class inside a group")
    }

    @Test("with or without the look for required text, random patterns give the same verdicts on random values")
    func verdictsUnchanged() throws {
        var generator = SeededGenerator(seed: 20261127)
        let atoms = ["a", "b", "@", #"\."#, ".", "[ab]", "[^a]", "(a|b)", "(ab)", #"\d"#, "1", "ab", "b@"]
        let quantifiers = ["", "", "", "*", "+", "?", "{1,2}", "+?"]
        let alphabet: [Character] = ["a", "b", "@", ".", "1"]
        var checked = 0
        for _ in 0..<400 {
            let length = Int.random(in: 1...6, using: &generator)
            let source = (0..<length).map { _ in
                atoms.randomElement(using: &generator)! + quantifiers.randomElement(using: &generator)!
            }.joined()
            guard let pattern = try? Blocklist.Pattern(source) else { continue }
            for _ in 0..<60 {
                let value = String((0..<Int.random(in: 0...8, using: &generator)).map { _ in
                    alphabet.randomElement(using: &generator)!
                })
                #expect(pattern.matchesWhole(value) == pattern.matchesRegex(value), "/\(source)/ on \"\(value)\"")
                if pattern.matchesRegex(value) { checked += 1 }
            }
        }
        #expect(checked > 500, "too few matching values to tell anything: \(checked)")
    }
}

import ConformanceSupport
@testable import IdentityGraph
import Testing

/// SPEC.md section 3, one rule at a time: JSON-type rules go through `IdentifyRequest(json:)`,
/// text rules through `Normalization` directly.
struct NormalizationTests {
    // MARK: - email

    @Test func emailIsTrimmed() throws {
        #expect(try Normalization.email("  a@b.c \t\n") == "a@b.c")
        #expect(try Normalization.email("\u{00A0}a@b.c\u{2003}") == "a@b.c")
    }

    @Test func emailIsLowercased() throws {
        #expect(try Normalization.email("Alice.Smith@Example.COM") == "alice.smith@example.com")
        #expect(try request(#"{"email":" ALICE@EXAMPLE.COM "}"#).email == "alice@example.com")
    }

    @Test func blankEmailIsAbsent() throws {
        #expect(try Normalization.email("") == nil)
        #expect(try Normalization.email(" \t\r\n ") == nil)
        let parsed = try request(#"{"email":"   ","phoneNumber":"123"}"#)
        #expect(parsed.email == nil)
        #expect(parsed.phoneNumber == "123")
    }

    @Test(arguments: ["alice.example.com", "a@@b.c", "a@b@c", "@@"])
    func emailWithoutExactlyOneAtIsRejected(raw: String) throws {
        try expectRejected(emailRejection(raw), field: "email")
    }

    @Test(arguments: ["@example.com", "alice@", "@", "  @b.c  ", " a@ "])
    func emailNeedsTextOnBothSidesOfTheAt(raw: String) throws {
        try expectRejected(emailRejection(raw), field: "email")
    }

    @Test func emailWithNothingBeforeTheAtIsRejectedEvenWhenAMarkFollowsIt() throws {
        // U+0301 joins the "@" into one Character, yet no text precedes the "@" itself.
        try expectRejected(emailRejection("@\u{301}example.com"), field: "email")
    }

    @Test(arguments: ["a b@c.d", "a@b\tc.d", "a@b\nc.d", "a\u{00A0}b@c.d", "a@b\u{2028}c.d"])
    func emailWithInnerWhitespaceIsRejected(raw: String) throws {
        try expectRejected(emailRejection(raw), field: "email")
    }

    @Test(arguments: ["a\u{0}@b.c", "a@b\u{1B}.c", "a\u{7F}@b.c", "a@b.c\u{9F}x"])
    func emailWithControlCharacterIsRejected(raw: String) throws {
        try expectRejected(emailRejection(raw), field: "email")
    }

    @Test func emailWithEscapedControlCharacterInJSONIsRejected() throws {
        try expectRejected(rejection(#"{"email":"a\u0001@b.c"}"#), field: "email")
    }

    @Test func emailOf254BytesIsAccepted() throws {
        let email = "a@" + String(repeating: "b", count: 252)
        #expect(email.utf8.count == 254)
        #expect(try Normalization.email(email) == email)
    }

    @Test func emailOf255BytesIsRejected() throws {
        let email = "a@" + String(repeating: "b", count: 253)
        #expect(email.utf8.count == 255)
        let error = try emailRejection(email)
        expectRejected(error, field: "email")
        #expect(error.reason.contains("254"))
    }

    @Test func emailLengthIsCountedInUTF8Bytes() throws {
        // 129 characters, but each "é" is two bytes: 256 bytes in all.
        let email = String(repeating: "é", count: 127) + "@b"
        #expect(email.count == 129)
        try expectRejected(emailRejection(email), field: "email")
    }

    @Test func emailLengthIsCheckedAfterTrimming() throws {
        let email = "a@" + String(repeating: "b", count: 252)
        #expect(try Normalization.email("   " + email + "   ") == email)
    }

    @Test(arguments: ["1", "1.5", "true", "false", #"["a@b.c"]"#, #"{"address":"a@b.c"}"#, "[]", "{}"])
    func nonStringEmailIsRejected(value: String) throws {
        try expectRejected(rejection(#"{"email":\#(value)}"#), field: "email")
    }

    @Test func invalidEmailIsRejectedEvenWithAValidPhoneNumber() throws {
        try expectRejected(rejection(#"{"email":"not-an-address","phoneNumber":"123"}"#), field: "email")
        try expectRejected(rejection(#"{"email":42,"phoneNumber":"123"}"#), field: "email")
    }

    // MARK: - phoneNumber

    @Test func phoneNumberStringAndDigitsOnlyIntegerAreTheSame() throws {
        let fromInteger = try request(#"{"phoneNumber":123456}"#)
        let fromString = try request(#"{"phoneNumber":"123456"}"#)
        #expect(fromInteger == fromString)
        #expect(fromInteger.phoneNumber == "123456")
    }

    @Test(arguments: ["12345678901234567890", "99999999999999999999"])
    func twentyDigitIntegerIsValid(literal: String) throws {
        // Both are beyond Int64, and the second beyond UInt64: the literal text must survive.
        #expect(try request(#"{"phoneNumber":\#(literal)}"#).phoneNumber == literal)
    }

    @Test func twentyOneDigitIntegerIsRejected() throws {
        let error = try rejection(#"{"phoneNumber":123456789012345678901}"#)
        expectRejected(error, field: "phoneNumber")
        #expect(error.reason.contains("20"))
    }

    @Test func twentyOneDigitStringIsRejected() throws {
        try expectRejected(phoneRejection("123456789012345678901"), field: "phoneNumber")
        try expectRejected(phoneRejection("+1 2345-6789-0123-4567-8901"), field: "phoneNumber")
    }

    @Test func twentyDigitsWithSeparatorsAreValid() throws {
        #expect(try Normalization.phoneNumber("+1234-5678-9012-3456-7890") == "+12345678901234567890")
    }

    @Test(arguments: ["-7", "1.5", "1e3", "1E3", "-0", "0.0", "10e0", "1e+3"])
    func numberThatIsNotDigitsOnlyIsRejected(literal: String) throws {
        try expectRejected(rejection(#"{"phoneNumber":\#(literal)}"#), field: "phoneNumber")
    }

    @Test(arguments: ["true", "false", "[123]", #"{"number":"123"}"#])
    func phoneNumberOfAnotherTypeIsRejected(value: String) throws {
        try expectRejected(rejection(#"{"phoneNumber":\#(value)}"#), field: "phoneNumber")
    }

    @Test func phoneNumberSeparatorsAreRemoved() throws {
        #expect(try Normalization.phoneNumber("(555) 010-0199") == "5550100199")
        #expect(try Normalization.phoneNumber("555.010.0199") == "5550100199")
        #expect(try Normalization.phoneNumber("5 5\t5-0.1(0)") == "555010")
        #expect(try request(#"{"phoneNumber":" (555) 010-0199 "}"#).phoneNumber == "5550100199")
    }

    @Test func leadingPlusIsKept() throws {
        #expect(try Normalization.phoneNumber("+44 20 7946 0000") == "+442079460000")
        #expect(try Normalization.phoneNumber("  +1 (555) 010-0199") == "+15550100199")
    }

    @Test(arguments: ["1+2", "++1", "12+", "+1+", "1 +2"])
    func plusAnywhereButTheStartIsRejected(raw: String) throws {
        try expectRejected(phoneRejection(raw), field: "phoneNumber")
    }

    @Test(arguments: ["555-CALL", "12a3", "x", "1 ext 2", "1/2", "1_2", "1,2"])
    func phoneNumberWithOtherCharactersIsRejected(raw: String) throws {
        try expectRejected(phoneRejection(raw), field: "phoneNumber")
    }

    @Test func nonASCIIDigitsAreRejected() throws {
        try expectRejected(phoneRejection("١٢٣"), field: "phoneNumber")
        try expectRejected(phoneRejection("１２３"), field: "phoneNumber")
    }

    @Test(arguments: ["+", " + ", "+ - ( )"])
    func plusWithoutDigitsIsRejected(raw: String) throws {
        try expectRejected(phoneRejection(raw), field: "phoneNumber")
    }

    @Test(arguments: ["-", "( )", "..."])
    func phoneNumberOfSeparatorsOnlyIsRejected(raw: String) throws {
        // Only an empty result of trimming means absent; separators alone leave no digits.
        try expectRejected(phoneRejection(raw), field: "phoneNumber")
    }

    @Test func leadingZerosAreKept() throws {
        #expect(try Normalization.phoneNumber("007") == "007")
        #expect(try Normalization.phoneNumber("+00 44") == "+0044")
        #expect(try request(#"{"phoneNumber":"0012"}"#).phoneNumber == "0012")
        #expect(try request(#"{"phoneNumber":0}"#).phoneNumber == "0")
    }

    @Test func blankPhoneNumberIsAbsent() throws {
        #expect(try Normalization.phoneNumber("") == nil)
        #expect(try Normalization.phoneNumber(" \t ") == nil)
        let parsed = try request(#"{"email":"a@b.c","phoneNumber":"  "}"#)
        #expect(parsed.phoneNumber == nil)
        #expect(parsed.email == "a@b.c")
    }

    // MARK: - The request as a whole

    @Test(arguments: ["{}", #"{"name":"Alice"}"#])
    func requestWithNeitherFieldIsRejected(json: String) throws {
        try expectRejected(rejection(json), field: nil)
    }

    @Test func requestWithBothFieldsNullIsRejected() throws {
        try expectRejected(rejection(#"{"email":null,"phoneNumber":null}"#), field: nil)
    }

    @Test func requestWithBothFieldsBlankIsRejected() throws {
        try expectRejected(rejection(#"{"email":"  ","phoneNumber":"\t"}"#), field: nil)
    }

    @Test func nullFieldIsAllowedBesideAPresentOne() throws {
        let phoneOnly = try request(#"{"email":null,"phoneNumber":"123"}"#)
        #expect(phoneOnly.email == nil)
        #expect(phoneOnly.phoneNumber == "123")
        let emailOnly = try request(#"{"email":"a@b.c","phoneNumber":null}"#)
        #expect(emailOnly.email == "a@b.c")
        #expect(emailOnly.phoneNumber == nil)
    }

    @Test func bothFieldsAreNormalizedTogether() throws {
        let parsed = try request(#"{"phoneNumber":"+1 (555) 010","email":" Bob@Example.org "}"#)
        #expect(parsed.email == "bob@example.org")
        #expect(parsed.phoneNumber == "+1555010")
    }

    @Test func unknownFieldsAreIgnored() throws {
        let json = #"{"name":"A","email":"a@b.c","tags":[1,{"x":null}],"age":3.5,"ok":true,"Email":7}"#
        let parsed = try request(json)
        #expect(parsed.email == "a@b.c")
        #expect(parsed.phoneNumber == nil)
    }

    @Test func duplicateEmailIsRejected() throws {
        try expectRejected(rejection(#"{"email":"a@b.c","email":"a@b.c"}"#), field: "email")
        try expectRejected(rejection(#"{"email":null,"phoneNumber":"1","email":"a@b.c"}"#), field: "email")
    }

    @Test func duplicatePhoneNumberIsRejected() throws {
        try expectRejected(rejection(#"{"phoneNumber":"1","phoneNumber":1}"#), field: "phoneNumber")
    }

    @Test func errorDetailNamesTheField() throws {
        let error = try rejection(#"{"email":true}"#)
        #expect(error.detail.hasPrefix("email: "))
        #expect(error.description == error.detail)
        let whole = try rejection("{}")
        #expect(whole.detail == whole.reason)
    }

    @Test func validatingInitializerAppliesTheSameRules() throws {
        let made = try IdentifyRequest(email: " A@B.C ", phoneNumber: "(0)12")
        #expect(made.email == "a@b.c")
        #expect(made.phoneNumber == "012")
        let error = try #require(throws: RequestError.self) {
            try IdentifyRequest(email: "  ", phoneNumber: " ")
        }
        #expect(error.field == nil)
    }

    // MARK: - Helpers

    private func request(_ json: String) throws -> IdentifyRequest {
        try IdentifyRequest(json: Array(json.utf8))
    }

    private func rejection(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> RequestError {
        try #require(throws: RequestError.self, sourceLocation: sourceLocation) {
            try IdentifyRequest(json: Array(json.utf8))
        }
    }

    private func emailRejection(
        _ raw: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> RequestError {
        try #require(throws: RequestError.self, sourceLocation: sourceLocation) {
            try Normalization.email(raw)
        }
    }

    private func phoneRejection(
        _ raw: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> RequestError {
        try #require(throws: RequestError.self, sourceLocation: sourceLocation) {
            try Normalization.phoneNumber(raw)
        }
    }

    /// The error names `field` and gives a reason a caller can read.
    private func expectRejected(
        _ error: RequestError,
        field: String?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(error.field == field, sourceLocation: sourceLocation)
        #expect(!error.reason.isEmpty, sourceLocation: sourceLocation)
        #expect(!error.detail.isEmpty, sourceLocation: sourceLocation)
        if let field {
            #expect(error.detail.hasPrefix(field), sourceLocation: sourceLocation)
        }
    }
}

/// The ASCII fast paths of `Normalization` against the general Unicode ones, on random ASCII text
/// drawn from the characters the rules care about.
@Suite struct NormalizationFastPathTests {
    private static let alphabet: [UInt8] = Array("aZ09@@ .-()+\t\n\r".utf8) + [0x00, 0x0B, 0x0C, 0x1C, 0x1F, 0x7F]

    private static func outcome(_ body: () throws(RequestError) -> String?) -> String {
        do {
            return try body() ?? "<absent>"
        } catch {
            return "error: \(error.detail)"
        }
    }

    @Test("the ASCII email path agrees with the Unicode one", arguments: [1, 2, 3] as [UInt64])
    func emailPathsAgree(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        for _ in 0..<5000 {
            let length = Int.random(in: 0..<12, using: &random)
            let text = String(decoding: (0..<length).map { _ in Self.alphabet.randomElement(using: &random)! }, as: UTF8.self)
            let fast = Self.outcome { () throws(RequestError) in try Normalization.email(text) }
            let general = Self.outcome { () throws(RequestError) in try Normalization.unicodeEmail(text) }
            #expect(fast == general, "\(Array(text.utf8))")
        }
    }

    @Test("the ASCII phone path agrees with the Unicode one", arguments: [1, 2, 3] as [UInt64])
    func phonePathsAgree(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        for _ in 0..<5000 {
            let length = Int.random(in: 0..<24, using: &random)
            let text = String(decoding: (0..<length).map { _ in Self.alphabet.randomElement(using: &random)! }, as: UTF8.self)
            let fast = Self.outcome { () throws(RequestError) in try Normalization.phoneNumber(text) }
            let general = Self.outcome { () throws(RequestError) in try Normalization.unicodePhoneNumber(text) }
            #expect(fast == general, "\(Array(text.utf8))")
        }
    }
}

import Foundation
import IdentityGraph
import Testing

/// The request reader: RFC 8259 strictness, decoding, skipping, and the writer's escapes read back.
struct JSONObjectReaderTests {
    // MARK: - Malformed input

    @Test(arguments: [
        "{",
        #"{"email""#,
        #"{"email":"#,
        #"{"email":"a@b.c"#,
        #"{"email":"a@b.c""#,
        #"{"email":"a@b.c","#,
        #"{"x":[1,2"#,
        #"{"x":{"a":1"#,
        #"{"x":tru"#,
        #"{"x":nul"#,
        #"{"x":-"#,
        #"{"x":1."#,
        #"{"x":1e"#,
        #"{"x":"\"#,
        #"{"x":"\u00"#,
    ])
    func truncatedBodyIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: [
        #"{"email":"a@b.c"}x"#,
        #"{"email":"a@b.c"}}"#,
        "{}{}",
        "{} 1",
        "{}\u{0}",
    ])
    func trailingGarbageIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: [
        #"{"email":"a@b.c",}"#,
        #"{"x":[1,],"email":"a@b.c"}"#,
        #"{"x":{"a":1,},"email":"a@b.c"}"#,
        #"{,"email":"a@b.c"}"#,
        #"{"x":[,1],"email":"a@b.c"}"#,
    ])
    func trailingOrLeadingCommaIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: [
        "{'email':'a@b.c'}",
        #"{"email":'a@b.c'}"#,
        #"{"x":['a'],"email":"a@b.c"}"#,
    ])
    func singleQuotesAreMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: [
        #"{"email":"a@b.c","#,
        #"{"email" "a@b.c"}"#,
        #"{"email":"a@b.c" "phoneNumber":"1"}"#,
        #"{email:"a@b.c"}"#,
        #"{"x":{"a" 1},"email":"a@b.c"}"#,
        #"{"x":{1:2},"email":"a@b.c"}"#,
        #"{"x":[1 2],"email":"a@b.c"}"#,
        #"{"x":[1}],"email":"a@b.c"}"#,
    ])
    func missingOrWrongPunctuationIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: ["01", "+1", ".5", "1.", "1e", "1e+", "--1", "0x10", "NaN", "Infinity", "-"])
    func invalidNumberIsMalformed(literal: String) throws {
        try expectMalformed(Array(#"{"phoneNumber":\#(literal)}"#.utf8))
        try expectMalformed(Array(#"{"x":[\#(literal)],"email":"a@b.c"}"#.utf8))
    }

    @Test(arguments: ["True", "nul", "nulll", "fals", "undefined", "truex"])
    func misspelledLiteralIsMalformed(literal: String) throws {
        try expectMalformed(Array(#"{"email":\#(literal)}"#.utf8))
        try expectMalformed(Array(#"{"x":[\#(literal)],"email":"a@b.c"}"#.utf8))
    }

    @Test(arguments: [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F] as [UInt8])
    func unescapedControlCharacterInStringIsMalformed(byte: UInt8) throws {
        try expectMalformed(bytes(#"{"email":"a"#, [byte], #"@b.c"}"#))
        try expectMalformed(bytes(#"{"e"#, [byte], #"mail":"a@b.c"}"#))
        try expectMalformed(bytes(#"{"x":["#, [0x22, byte, 0x22], #"],"email":"a@b.c"}"#))
    }

    @Test(arguments: [#"\x41"#, #"\u12"#, #"\u12G4"#, #"\U0041"#, #"\'"#, #"\a"#, #"\0"#, #"\ "#])
    func invalidEscapeIsMalformed(escape: String) throws {
        try expectMalformed(Array(#"{"email":"a\#(escape)@b.c"}"#.utf8))
        try expectMalformed(Array(#"{"x":"\#(escape)","email":"a@b.c"}"#.utf8))
    }

    @Test(arguments: [
        #"\ud800"#,
        #"\udc00"#,
        #"\udfff"#,
        #"\ud800x"#,
        #"\ud800\u0041"#,
        #"\ud800\ud800"#,
        #"\ude00\ud83d"#,
        #"\ud83d\n"#,
    ])
    func loneSurrogateEscapeIsMalformed(escape: String) throws {
        try expectMalformed(Array(#"{"email":"a\#(escape)@b.c"}"#.utf8))
        try expectMalformed(Array(#"{"x":["\#(escape)"],"email":"a@b.c"}"#.utf8))
    }

    @Test(arguments: [
        [0xFF],
        [0xFE],
        [0x80],
        [0xC0, 0x80],
        [0xC1, 0xBF],
        [0xE0, 0x80, 0x80],
        [0xF0, 0x80, 0x80, 0x80],
        [0xED, 0xA0, 0x80],
        [0xF4, 0x90, 0x80, 0x80],
        [0xC3],
        [0xE2, 0x82],
    ] as [[UInt8]])
    func invalidUTF8InStringIsMalformed(sequence: [UInt8]) throws {
        try expectMalformed(bytes(#"{"email":"a"#, sequence, #"@b.c"}"#))
        try expectMalformed(bytes(#"{""#, sequence, #"":1,"email":"a@b.c"}"#))
        try expectMalformed(bytes(#"{"x":{"a":""#, sequence, #""},"email":"a@b.c"}"#))
    }

    @Test(arguments: [
        "[]",
        #"[{"email":"a@b.c"}]"#,
        #""a@b.c""#,
        "1",
        "null",
        "true",
        "email=a@b.c",
    ])
    func nonObjectTopLevelIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    @Test(arguments: ["", " ", "\n\t\r "])
    func emptyBodyIsMalformed(json: String) throws {
        try expectMalformed(Array(json.utf8))
    }

    // MARK: - Strings

    @Test func simpleEscapesDecode() throws {
        let read = try members(#"{"s":"\"\\\/\b\f\n\r\t"}"#)
        #expect(read == [Member("s", .string("\"\\/\u{8}\u{C}\n\r\t"))])
    }

    @Test func newlineEscapeDecodes() throws {
        #expect(try members(#"{"s":"line\nbreak"}"#) == [Member("s", .string("line\nbreak"))])
    }

    @Test func unicodeEscapeDecodes() throws {
        #expect(try members(#"{"s":"caf\u00e9"}"#) == [Member("s", .string("café"))])
        #expect(try members(#"{"s":"caf\u00E9"}"#) == [Member("s", .string("café"))])
        #expect(try members(#"{"s":"\u0000"}"#) == [Member("s", .string("\u{0}"))])
    }

    @Test func surrogatePairEscapeDecodes() throws {
        #expect(try members(#"{"s":"\ud83d\ude00"}"#) == [Member("s", .string("😀"))])
        #expect(try members(#"{"s":"<\uD83D\uDE00>"}"#) == [Member("s", .string("<😀>"))])
    }

    @Test func rawUTF8Decodes() throws {
        #expect(try members(#"{"naïve":"日本 😀"}"#) == [Member("naïve", .string("日本 😀"))])
    }

    @Test func escapedMemberNameDecodes() throws {
        let parsed = try IdentifyRequest(json: Array(#"{"em\u0061il":"a@b.c"}"#.utf8))
        #expect(parsed.email == "a@b.c")
    }

    // MARK: - Values and structure

    @Test func membersAreReportedInOrderWithTheirKinds() throws {
        let read = try members(#" {"s":"x", "n":-1.5e3,"t":true,"f":false,"z":null,"o":{"k":1},"a":[1,"2"]} "#)
        #expect(
            read == [
                Member("s", .string("x")),
                Member("n", .number("-1.5e3")),
                Member("t", .bool(true)),
                Member("f", .bool(false)),
                Member("z", .null),
                Member("o", .object),
                Member("a", .array),
            ]
        )
    }

    @Test func emptyObjectHasNoMembers() throws {
        #expect(try members("{}").isEmpty)
        #expect(try members(" \r\n{ \t}\n").isEmpty)
    }

    @Test func whitespaceAroundTokensIsAllowed() throws {
        let read = try members("\n\t{ \"email\" :\r\n\"a@b.c\" ,\"x\" : [ 1 , { \"y\" : [ ] } ] }\n")
        #expect(read == [Member("email", .string("a@b.c")), Member("x", .array)])
    }

    @Test func nestedUnknownMembersAreSkipped() throws {
        let json = #"{"x":{"a":[1,{"b":null}]},"email":"a@b.c"}"#
        #expect(try members(json) == [Member("x", .object), Member("email", .string("a@b.c"))])
        #expect(try IdentifyRequest(json: Array(json.utf8)).email == "a@b.c")
    }

    @Test func skippedValuesMayHoldEveryKind() throws {
        let json = #"{"x":[{},[],"\"]}",-0.5E-2,true,false,null,{"k":{"l":["m"]}}],"email":"a@b.c"}"#
        #expect(try members(json) == [Member("x", .array), Member("email", .string("a@b.c"))])
    }

    @Test func deepNestingInsideAnUnknownMemberIsRejectedWithoutCrashing() throws {
        let depth = 100_000
        let open = String(repeating: "[", count: depth)
        try expectMalformed(Array(#"{"x":\#(open)"#.utf8))
        try expectMalformed(Array(#"{"x":\#(open)\#(String(repeating: "]", count: depth)),"email":"a@b.c"}"#.utf8))
        let objects = String(repeating: #"{"a":"#, count: depth)
        try expectMalformed(Array(#"{"x":\#(objects)1\#(String(repeating: "}", count: depth))}"#.utf8))
    }

    @Test func moderateNestingIsAccepted() throws {
        let depth = 100
        let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try members(#"{"x":\#(nested),"email":"a@b.c"}"#).count == 2)
    }

    @Test func numbersKeepTheirLiteralText() throws {
        let read = try members(#"{"big":12345678901234567890123,"exp":1E+2,"neg":-0,"frac":0.10}"#)
        #expect(
            read == [
                Member("big", .number("12345678901234567890123")),
                Member("exp", .number("1E+2")),
                Member("neg", .number("-0")),
                Member("frac", .number("0.10")),
            ]
        )
    }

    @Test func errorFromTheMemberCallbackIsRethrown() throws {
        let refusal = RequestError(field: "x", reason: "is refused")
        var seen: [String] = []
        let error = try #require(throws: RequestError.self) {
            try JSONObjectReader.readObject(Array(#"{"a":1,"x":2,"b":3}"#.utf8)) { (key, _) throws(RequestError) in
                seen.append(key)
                if key == "x" { throw refusal }
            }
        }
        #expect(error == refusal)
        #expect(seen == ["a", "x"])
    }

    @Test func readerAcceptsARawBuffer() throws {
        var read: [Member] = []
        let json = Array(#"{"k":"v"}"#.utf8)
        try json.withUnsafeBytes { buffer in
            try JSONObjectReader.readObject(buffer) { key, value in read.append(Member(key, value)) }
        }
        #expect(read == [Member("k", .string("v"))])
    }

    // MARK: - JSONWriter strings

    @Test func writerEscapesQuotesAndBackslashes() {
        var writer = JSONWriter()
        writer.string(#"say "hi" \ bye"#)
        #expect(writer.bytes == Array(#""say \"hi\" \\ bye""#.utf8))
    }

    @Test func writerEscapesEveryControlCharacter() {
        var writer = JSONWriter()
        writer.string(Self.controlCharacters)
        let body = writer.bytes.dropFirst().dropLast()
        #expect(writer.bytes.first == UInt8(ascii: "\""))
        #expect(writer.bytes.last == UInt8(ascii: "\""))
        #expect(!body.contains(where: { $0 < 0x20 }))
        #expect(!body.contains(UInt8(ascii: "\"")))
    }

    @Test(arguments: [
        "",
        "plain",
        #"quote " inside"#,
        #"back\slash and \" both"#,
        "\n\r\t\u{8}\u{C}",
        JSONObjectReaderTests.controlCharacters,
        "café 日本 😀",
        "\u{2028}\u{2029}",
        "</script>",
        #"\u0041 stays literal"#,
        #"\"#,
    ])
    func writerStringRoundTripsThroughTheReader(text: String) throws {
        var writer = JSONWriter()
        writer.raw("{\"s\":")
        writer.string(text)
        writer.raw("}")
        // Foundation's parser, which shares no code with the writer, reads the same string back.
        let parsed = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String: Any]
        let fromFoundation = try #require(parsed?["s"] as? String, "\(String(decoding: writer.bytes, as: UTF8.self))")
        #expect(Array(fromFoundation.utf8) == Array(text.utf8))
        // And so does the project's reader.
        var read: [Member] = []
        try JSONObjectReader.readObject(writer.bytes) { key, value in read.append(Member(key, value)) }
        #expect(read == [Member("s", .string(text))])
        if case .string(let decoded)? = read.first?.value {
            // Byte-for-byte, not only canonically equivalent.
            #expect(Array(decoded.utf8) == Array(text.utf8))
        }
    }

    // MARK: - Helpers

    /// U+0000 through U+001F and U+007F.
    static let controlCharacters = String(decoding: Array(UInt8(0x00)...UInt8(0x1F)) + [0x7F], as: UTF8.self)

    struct Member: Equatable, CustomStringConvertible {
        var key: String
        var value: JSONValue

        init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }

        var description: String { "\(key): \(value)" }
    }

    private func members(_ json: String) throws -> [Member] {
        var read: [Member] = []
        try JSONObjectReader.readObject(Array(json.utf8)) { key, value in read.append(Member(key, value)) }
        return read
    }

    private func bytes(_ before: String, _ middle: [UInt8], _ after: String) -> [UInt8] {
        Array(before.utf8) + middle + Array(after.utf8)
    }

    /// Both the bare reader and the request decoder reject `body` as malformed JSON, naming no field.
    private func expectMalformed(_ body: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fromReader = try #require(throws: RequestError.self, sourceLocation: sourceLocation) {
            try JSONObjectReader.readObject(body) { _, _ in }
        }
        #expect(fromReader.field == nil, sourceLocation: sourceLocation)
        #expect(fromReader.reason.hasPrefix("malformed JSON"), "\(fromReader.reason)", sourceLocation: sourceLocation)
        let fromRequest = try #require(throws: RequestError.self, sourceLocation: sourceLocation) {
            try IdentifyRequest(json: body)
        }
        #expect(fromRequest.field == nil, sourceLocation: sourceLocation)
        #expect(fromRequest.reason.hasPrefix("malformed JSON"), "\(fromRequest.reason)", sourceLocation: sourceLocation)
    }
}

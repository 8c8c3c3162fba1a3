import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// The blocklist's automaton must give `Regex`'s verdict for every pattern it takes and every value it
/// answers for; the patterns it refuses stay with `Regex`.
@Suite struct BlocklistDFATests {
    /// Printable ASCII: the widest alphabet an automaton reads.
    private static let printable = ByteSet(range: 0x20...0x7E)

    // MARK: - Property: random patterns of the subset, random values

    @Test("random patterns of the subset give Regex's verdict on random values and on values built to match")
    func randomPatternsAgreeWithRegex() throws {
        var generator = SeededGenerator(seed: 20261207)
        var taken = 0
        var matched = 0
        var compared = 0
        let rounds = 600
        for _ in 0..<rounds {
            let pattern = RandomPattern.make(using: &generator)
            let source = pattern.source
            // A pattern Regex refuses never reaches the blocklist; the generator rarely writes one.
            guard let regex = try? Blocklist.Pattern(source) else { continue }
            guard let expression = PatternParser.parse(source, alphabet: Self.printable) else {
                // Refused on purpose: under (?i), back-references and classes holding `@` (see below);
                // anchors in repetitions (see `anchors()`). Nothing else the generator writes is.
                #expect(pattern.caseInsensitive || pattern.repeatsAnAnchor, "refused: /\(source)/")
                continue
            }
            // A back-reference to `(.)` after `.*` needs more states than the limit allows: Regex keeps those.
            guard let automaton = BlocklistAutomaton([expression], alphabet: Self.printable, stateLimit: 4096) else {
                #expect(source.contains("\\1"), "too many states: /\(source)/")
                continue
            }
            taken += 1
            for value in pattern.values(using: &generator) {
                let expected = regex.matchesRegex(value)
                #expect(automaton.matches(value) == expected, "/\(source)/ on \"\(value)\"")
                compared += 1
                if expected { matched += 1 }
            }
        }
        #expect(taken > rounds * 3 / 4, "too few patterns taken: \(taken) of \(rounds)")
        #expect(matched > compared / 10, "too few matching values to tell anything: \(matched) of \(compared)")
    }

    @Test("one automaton for many random patterns and values blocks what any of them matches")
    func unionAgreesWithRegex() throws {
        var generator = SeededGenerator(seed: 7)
        var matched = 0
        for _ in 0..<40 {
            let patterns = (0..<Int.random(in: 2...8, using: &generator)).map { _ in
                RandomPattern.make(using: &generator)
            }
            var regexes: [Blocklist.Pattern] = []
            var expressions: [PatternExpression] = []
            for pattern in patterns {
                guard let regex = try? Blocklist.Pattern(pattern.source),
                    let expression = PatternParser.parse(pattern.source, alphabet: Self.printable)
                else { continue }
                regexes.append(regex)
                expressions.append(expression)
            }
            // A back-reference after `.*` can take the union past the state limit; Regex keeps those.
            guard let automaton = BlocklistAutomaton(expressions, alphabet: Self.printable, stateLimit: 4096) else {
                continue
            }
            let sources = regexes.map(\.source)
            for pattern in patterns {
                for value in pattern.values(using: &generator) {
                    let expected = regexes.contains { $0.matchesRegex(value) }
                    #expect(automaton.matches(value) == expected, "\(sources) on \"\(value)\"")
                    if expected { matched += 1 }
                }
            }
        }
        #expect(matched > 100, "too few matching values to tell anything: \(matched)")
    }

    @Test("a random blocklist of values and regexes gives the verdicts of its rules one by one, cached or not")
    func randomBlocklistAgreesWithItsRules() throws {
        var generator = SeededGenerator(seed: 99)
        for _ in 0..<20 {
            var lines: [String] = []
            var regexes: [Blocklist.Pattern] = []
            var exact: Set<String> = []
            var values: [String] = []
            for _ in 0..<Int.random(in: 1...10, using: &generator) {
                let pattern = RandomPattern.make(using: &generator, emailLike: true)
                guard let regex = try? Blocklist.Pattern(pattern.source) else { continue }
                lines.append("email /\(pattern.source)/")
                regexes.append(regex)
                values += pattern.values(using: &generator).map { $0.lowercased() }
            }
            for _ in 0..<Int.random(in: 0...5, using: &generator) {
                let value = RandomPattern.word(using: &generator) + "@" + RandomPattern.word(using: &generator) + ".io"
                lines.append("email \(value)")
                exact.insert(value)
                values.append(value)
            }
            // One regex left to Regex (lookahead), so that the automaton and Regex answer together.
            lines.append("email /(?=x)x.*@.*/")
            regexes.append(try Blocklist.Pattern("(?=x)x.*@.*"))
            values += ["x@y.io", "y@x.io"]
            let blocklist = try Blocklist(parsing: lines.joined(separator: "\n"), source: "random")
            #expect(blocklist.email.residualPatterns.last?.source == "(?=x)x.*@.*")
            var matcher = BlocklistMatcher(blocklist, cacheLimit: 8)
            for value in values + values {
                let expected = exact.contains(value) || regexes.contains { $0.matchesRegex(value) }
                #expect(blocklist.blocks(value, field: .email) == expected, "\(lines) on \"\(value)\"")
                let cached = matcher.isBlocked(value, field: .email)
                #expect(cached == expected, "\(lines) on \"\(value)\"")
            }
        }
    }

    // MARK: - Edge cases

    @Test("an empty branch of an alternation matches the empty text")
    func emptyBranch() throws {
        try expectVerdicts("a|", ["": true, "a": true, "aa": false])
        try expectVerdicts("|a", ["": true, "a": true, "b": false])
        try expectVerdicts("(|b)c", ["c": true, "bc": true, "bbc": false])
        try expectVerdicts("x(a|)(|b)y", ["xy": true, "xay": true, "xby": true, "xaby": true, "xbay": false])
        try expectVerdicts("()", ["": true, "a": false])
    }

    @Test("repetitions nest")
    func nestedRepetition() throws {
        try expectVerdicts("(a*)*b", ["b": true, "aaab": true, "aba": false])
        try expectVerdicts("(a{1,2}){2}", ["a": false, "aa": true, "aaa": true, "aaaa": true, "aaaaa": false])
        try expectVerdicts("((ab)+c?)*", ["": true, "ab": true, "abcab": true, "abcc": false, "ba": false])
        try expectVerdicts("(a|b*)*c", ["c": true, "abbac": true, "abd": false])
        try expectVerdicts("(a+?){2,}", ["a": false, "aa": true, "aaaaa": true])
        try expectVerdicts("(x?){3}y", ["y": true, "xxxy": true, "xxxxy": false])
    }

    @Test("{0} matches only the empty text, and {,n} means {0,n}")
    func zeroRepetition() throws {
        try expectVerdicts("a{0}b", ["b": true, "ab": false])
        try expectVerdicts("(ab){0}", ["": true, "ab": false])
        try expectVerdicts("a{0,0}", ["": true, "a": false])
        try expectVerdicts("a{,2}", ["": true, "aa": true, "aaa": false])
        try expectVerdicts("a{2,}", ["a": false, "aa": true, "aaaaaa": true])
    }

    @Test("classes: ranges, negation, escapes inside, and a dash first or last")
    func classes() throws {
        try expectVerdicts("[a-c]+", ["abc": true, "abcd": false, "": false])
        try expectVerdicts("[^a-c]", ["d": true, "b": false, "@": true, " ": true])
        try expectVerdicts("[-a]", ["-": true, "a": true, "b": false])
        try expectVerdicts("[a-]", ["-": true, "a": true, "b": false])
        try expectVerdicts("[^-]", ["-": false, "a": true])
        try expectVerdicts(#"[\d.]+"#, ["1.2": true, "1a": false])
        try expectVerdicts(#"[^\d]"#, ["1": false, "a": true])
        try expectVerdicts(#"[\W_]"#, ["_": true, "@": true, "a": false])
        try expectVerdicts(#"[\.-9]"#, [".": true, "5": true, "/": true, "a": false])
        try expectVerdicts("[.$*+?(){}|^]", [".": true, "x": false, "^": true, "|": true])
        try expectVerdicts(#"\D\S\W"#, ["a @": false, "aa@": true, "1a@": false])
        try expectVerdicts(#"\s\w"#, [" _": true, "__": false])
        try expectVerdicts("[^^]", ["^": false, "a": true])
    }

    @Test("^ holds only at the start and $ only at the end; a repeated anchor is left to Regex")
    func anchors() throws {
        try expectVerdicts("^a$", ["a": true, "": false])
        try expectVerdicts("a^b", ["ab": false, "a^b": false])
        try expectVerdicts("a$b", ["ab": false])
        try expectVerdicts("$^", ["": true])
        try expectVerdicts("^^a$$", ["a": true])
        try expectVerdicts("x|^", ["": true, "x": true])
        try expectVerdicts("(^a|b)c", ["ac": true, "bc": true, "xac": false])
        // Regex ends a loop after an iteration that matched nothing; with an anchor inside, that shows.
        #expect(try !Blocklist.Pattern("(?:a|^){2,}").matchesRegex("a"))
        for source in ["(?:a|^){2,}", "(^a|b)+", "(a$|b)*", "(?:^)*a", "(x(^|y))?"] {
            #expect(PatternParser.parse(source, alphabet: Self.printable) == nil, "/\(source)/")
        }
    }

    @Test("(?i) folds letters, also in ranges, before a class is negated; without it case counts")
    func caseFolding() throws {
        try expectVerdicts("A", ["a": false, "A": true])
        try expectVerdicts("(?i)a", ["A": true, "a": true])
        try expectVerdicts("(?i)[a-c]x", ["BX": true, "bx": true, "dx": false])
        try expectVerdicts("(?i)[^a]", ["A": false, "a": false, "b": true, "B": true])
        try expectVerdicts("(?i)[^A-Z]", ["a": false, "1": true])
        try expectVerdicts(#"(?i)[Z-a]"#, ["z": true, "A": true, "_": true, "b": false])
        try expectVerdicts(#"(?i)\W"#, ["A": false, "@": true])
    }

    @Test("under (?i) each character, alone or in a class, plain or negated, matches what Regex says")
    func caseFoldingOfEachCharacter() throws {
        let characters = (UInt8(0x20)...0x7E).map { String(UnicodeScalar($0)) }
        var refused: [String] = []
        for byte in UInt8(0x20)...0x7E {
            let character = String(UnicodeScalar(byte))
            let written = ByteSet.word.contains(byte) ? character : "\\" + character
            for source in ["(?i)" + written, "(?i)[" + written + "]", "(?i)[^" + written + "]"] {
                let regex = try Blocklist.Pattern(source)
                guard let expression = PatternParser.parse(source, alphabet: Self.printable) else {
                    refused.append(source)
                    continue
                }
                let automaton = try #require(BlocklistAutomaton([expression], alphabet: Self.printable))
                for value in characters {
                    #expect(automaton.matches(value) == regex.matchesRegex(value), "/\(source)/ on \"\(value)\"")
                }
            }
        }
        // Regex lets `(?i)[@]` match a backtick too; the automaton leaves those classes to it.
        #expect(refused == [#"(?i)[\@]"#, #"(?i)[^\@]"#])
        #expect(try Blocklist.Pattern(#"(?i)[\@]"#).matchesRegex("`"), "if Regex changes, the refusal can go")
    }

    @Test("a back-reference to a one-character group at the top level is expanded")
    func backreferences() throws {
        try expectVerdicts(#"\+?(.)\1{9,}"#, [
            "0000000000": true, "+2222222222": true, "1111111112": false, "222222222": false, "+12": false,
            "+++++++++++": true,
        ])
        try expectVerdicts(#"([a-c])x\1"#, ["axa": true, "axb": false, "dxd": false])
        try expectVerdicts(#"(a)(b)\2\1"#, ["abba": true, "abab": false])
        let phone = BlocklistAutomaton.alphabet(of: .phoneNumber)
        let expression = try #require(PatternParser.parse(#"\+?(.)\1{9,}"#, alphabet: phone))
        let automaton = try #require(BlocklistAutomaton([expression], alphabet: phone))
        #expect(automaton.stateCount < 200, "one branch per phone character, not per ASCII character")
        #expect(automaton.matches("5555555555") == true)
        #expect(automaton.matches("55555 55555") == nil, "a space is outside a phone number's alphabet")
    }

    @Test("an escaped punctuation character stands for itself, in a class or not")
    func escapedPunctuation() throws {
        for byte in UInt8(0x20)...0x7E where !ByteSet.word.contains(byte) || byte == UInt8(ascii: "_") {
            let character = String(UnicodeScalar(byte))
            try expectVerdicts("\\" + character, [character: true, "a": false, "\\" + character: false])
            try expectVerdicts("[\\" + character + "]", [character: true, "a": false])
        }
    }

    @Test("patterns outside the subset are left to Regex")
    func unsupportedPatterns() {
        let refused = [
            "(?=a)a", "(?!a)b", "(?<=a)b", "a*+", "a++b", #"\bfoo"#, "a{x}", "a{ 1}", "a{1, 2}", "[[:alpha:]]",
            "[a&&b]", "[a--b]", "[a~~b]", "(?i)(.)\\1", "é", #"\p{L}"#, "(a)+\\1", "(ab)\\1", "(a)|\\1",
            "(.)\\10", #"\x41"#, #"\Qa\E"#, "a(?i)b", "(?<name>a)", "[a-c-e]", #"[\d-z]"#, "}", "]", "a{2000}",
        ]
        for source in refused {
            #expect(PatternParser.parse(source, alphabet: Self.printable) == nil, "/\(source)/")
        }
    }

    @Test("a value with a byte outside the alphabet is left to Regex, which reads characters, not bytes")
    func valuesOutsideTheAlphabet() throws {
        let blocklist = try Blocklist(parsing: #"email /.@x\.io/"#, source: "test")
        #expect(blocklist.email.automaton != nil)
        #expect(blocklist.email.residualPatterns.isEmpty)
        #expect(blocklist.blocks("a@x.io", field: .email))
        #expect(blocklist.blocks("é@x.io", field: .email), "one character of two bytes")
        #expect(blocklist.blocks("e\u{301}@x.io", field: .email), "one character of two scalars")
        #expect(!blocklist.blocks("ab@x.io", field: .email))
        var matcher = BlocklistMatcher(blocklist)
        let verdict = matcher.isBlocked("é@x.io", field: .email)
        #expect(verdict)
    }

    @Test("an exact value blocks the ASCII value Unicode holds equal to it")
    func canonicallyEquivalentExactValue() throws {
        // U+037E GREEK QUESTION MARK is canonically the semicolon; String equality says so.
        let blocklist = try Blocklist(parsing: "email a\u{37E}b@x.io\nemail plain@x.io", source: "test")
        #expect(blocklist.email.automaton != nil)
        #expect(blocklist.blocks("a;b@x.io", field: .email))
        #expect(blocklist.blocks("plain@x.io", field: .email))
        var matcher = BlocklistMatcher(blocklist)
        let verdicts = [matcher.isBlocked("a;b@x.io", field: .email), matcher.isBlocked("plain@x.io", field: .email)]
        #expect(verdicts == [true, true])
    }

    @Test("a pattern past the state limit is left to Regex, and the others stay in the automaton")
    func stateLimit() throws {
        let exploding = "(a|b)*a(a|b){14}"
        let expression = try #require(PatternParser.parse(exploding, alphabet: Self.printable))
        #expect(BlocklistAutomaton([expression], alphabet: Self.printable, stateLimit: 1000) == nil)
        let blocklist = try Blocklist(
            parsing: "email a@b.io\nemail /\(exploding)/\nemail /x+@x+/", source: "test")
        #expect(blocklist.email.residualPatterns.map(\.source) == [exploding])
        #expect(blocklist.email.automaton != nil)
        let long = "b" + "a" + String(repeating: "b", count: 14)
        var matcher = BlocklistMatcher(blocklist)
        for (value, expected) in [(long, true), ("a@b.io", true), ("xx@x", true), ("ab", false)] {
            #expect(blocklist.blocks(value, field: .email) == expected, "\(value)")
            let cached = matcher.isBlocked(value, field: .email)
            #expect(cached == expected, "\(value)")
        }
    }

    @Test("every rule of the sample blocklist goes into the automata")
    func sampleBlocklistIsCompiled() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let blocklist = try Blocklist(contentsOfFile: root.appendingPathComponent("data/blocklist-100.txt").path)
        for field in [GuardField.email, .phoneNumber] {
            let rules = blocklist.rules(for: field)
            #expect(rules.automaton != nil, "\(field)")
            #expect(!rules.hasResidue, "\(field): \(rules.residualPatterns.map(\.source)) \(rules.residualValues)")
        }
        // Its verdicts agree with its rules one by one.
        let values = [
            "test@test.com", "test12@test.com", "alice@example.com", "noreply@shop.io", "bob@mailinator.com",
            "sales@shop12.test", "xx@x.x", "a@guerrillamail.org", "a+spam@b.c", "12@nowhere.test", "a@b.c",
            "0000000000", "+15550100123", "1234567890", "12345678", "121212", "+000", "123", "+7777777777",
            "+4915112345678", "5551234567",
        ]
        for value in values {
            let field: GuardField = value.contains("@") ? .email : .phoneNumber
            let rules = blocklist.rules(for: field)
            let expected = rules.values.contains(value) || rules.patterns.contains { $0.matchesRegex(value) }
            #expect(blocklist.blocks(value, field: field) == expected, "\(value)")
        }
    }

    // MARK: - Helpers

    /// Checks the automaton's verdicts against the ones given, and both against `Regex`'s.
    private func expectVerdicts(
        _ source: String, _ verdicts: [String: Bool], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let regex = try Blocklist.Pattern(source)
        let expression = try #require(
            PatternParser.parse(source, alphabet: Self.printable), "/\(source)/", sourceLocation: sourceLocation)
        let automaton = try #require(
            BlocklistAutomaton([expression], alphabet: Self.printable), sourceLocation: sourceLocation)
        for (value, expected) in verdicts.sorted(by: { $0.key < $1.key }) {
            #expect(regex.matchesRegex(value) == expected, "Regex: /\(source)/ on \"\(value)\"",
                sourceLocation: sourceLocation)
            #expect(automaton.matches(value) == expected, "/\(source)/ on \"\(value)\"", sourceLocation: sourceLocation)
        }
    }
}

/// A random pattern of the subset the automaton takes, written as text, with a way to make values that
/// match it (roughly: anchors and back-references can spoil a sample, which is fine: Regex judges).
private struct RandomPattern {
    indirect enum Node {
        case literal(UInt8)
        case dot
        case escape(Character)
        case set(members: [String], negated: Bool, sample: [UInt8])
        case group([[Node]], capturing: Bool)
        case repeated(Node, quantifier: String, min: Int, max: Int)
        case start
        case end
        /// `\1`.
        case reference
    }

    var nodes: [[Node]]
    var caseInsensitive: Bool

    /// Characters values are made of: a few letters of both cases, digits and punctuation.
    static let characters = Array("abcAB01@.-_ +x#&~:<=>',/%!\"`".utf8)

    static func make(using generator: inout SeededGenerator, emailLike: Bool = false) -> RandomPattern {
        var pattern = RandomPattern(nodes: [], caseInsensitive: Int.random(in: 0..<6, using: &generator) == 0)
        if emailLike {
            pattern.nodes = [sequence(depth: 1, using: &generator) + [.literal(UInt8(ascii: "@"))]
                + sequence(depth: 1, using: &generator)]
        } else if Int.random(in: 0..<8, using: &generator) == 0 {
            // A back-reference to a top-level group of one character.
            // A group of a few characters: `(.)` expands into one branch per printable character, whose
            // automaton takes long to build in a debug build (the edge cases test one).
            let group = Node.group([[oneCharacter(using: &generator, few: true)]], capturing: true)
            pattern.nodes = [
                sequence(depth: 0, using: &generator) + [group] + sequence(depth: 0, using: &generator)
                    + [quantified(.reference, using: &generator)],
            ]
        } else {
            let branches = Int.random(in: 0..<4, using: &generator) == 0 ? 2 : 1
            pattern.nodes = (0..<branches).map { _ in sequence(depth: 2, using: &generator) }
        }
        return pattern
    }

    static func word(using generator: inout SeededGenerator) -> String {
        String(decoding: (0..<Int.random(in: 1...4, using: &generator)).map { _ in
            Array("abx1".utf8).randomElement(using: &generator)!
        }, as: UTF8.self)
    }

    private static func sequence(depth: Int, using generator: inout SeededGenerator) -> [Node] {
        (0..<Int.random(in: 0...3, using: &generator)).map { _ in
            let atom: Node
            switch Int.random(in: 0..<12, using: &generator) {
            case 0..<4: atom = .literal(characters.randomElement(using: &generator)!)
            case 4..<7: atom = oneCharacter(using: &generator)
            case 7..<9 where depth > 0:
                let branches = (0..<Int.random(in: 1...3, using: &generator)).map { _ in
                    sequence(depth: depth - 1, using: &generator)
                }
                atom = .group(branches, capturing: Bool.random(using: &generator))
            case 9: return Bool.random(using: &generator) ? .start : .end
            default: atom = .literal(characters.randomElement(using: &generator)!)
            }
            return quantified(atom, using: &generator)
        }
    }

    private static func oneCharacter(using generator: inout SeededGenerator, few: Bool = false) -> Node {
        switch few ? 2 : Int.random(in: 0..<4, using: &generator) {
        case 0: return .dot
        case 1: return .escape(Array("dwsDWS").randomElement(using: &generator)!)
        default:
            var members: [String] = []
            var sample: [UInt8] = []
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    let ranges: [(UInt8, UInt8)] = [
                        (0x61, 0x63), (0x41, 0x43), (0x30, 0x39), (0x2B, 0x2E), (0x5A, 0x61),
                    ]
                    let (lower, upper) = ranges.randomElement(using: &generator)!
                    members.append(escaped(lower, inClass: true) + "-" + escaped(upper, inClass: true))
                    sample.append(UInt8.random(in: lower...upper, using: &generator))
                case 1:
                    members.append(["\\d", "\\w", "\\s"].randomElement(using: &generator)!)
                    sample.append(UInt8(ascii: "1"))
                default:
                    let character = characters.randomElement(using: &generator)!
                    members.append(escaped(character, inClass: true))
                    sample.append(character)
                }
            }
            let negated = !few && Int.random(in: 0..<4, using: &generator) == 0
            return .set(members: members, negated: negated, sample: sample)
        }
    }

    private static func quantified(_ atom: Node, using generator: inout SeededGenerator) -> Node {
        let quantifiers: [(String, Int, Int)] = [
            ("*", 0, 3), ("+", 1, 3), ("?", 0, 1), ("{0}", 0, 0), ("{2}", 2, 2), ("{1,3}", 1, 3), ("{2,}", 2, 4),
            ("{,2}", 0, 2), ("*?", 0, 3), ("{0,1}?", 0, 1),
        ]
        guard Int.random(in: 0..<3, using: &generator) == 0 else { return atom }
        let (text, minimum, maximum) = quantifiers.randomElement(using: &generator)!
        return .repeated(atom, quantifier: text, min: minimum, max: maximum)
    }

    private static func escaped(_ byte: UInt8, inClass: Bool) -> String {
        let special = inClass ? Array(#"\]^-["#.utf8) : Array(#"\.^$|?*+()[]{}"#.utf8)
        let character = String(UnicodeScalar(byte))
        return special.contains(byte) ? "\\" + character : character
    }

    /// Whether a `^` or `$` sits inside a quantified atom, which the parser refuses.
    var repeatsAnAnchor: Bool {
        func anchored(_ node: Node) -> Bool {
            switch node {
            case .start, .end: true
            case .group(let branches, _): branches.joined().contains(where: anchored)
            case .repeated(let inner, _, _, _): anchored(inner)
            default: false
            }
        }
        func repeats(_ node: Node) -> Bool {
            switch node {
            case .repeated(let inner, _, _, _): anchored(inner)
            case .group(let branches, _): branches.joined().contains(where: repeats)
            default: false
            }
        }
        return nodes.joined().contains(where: repeats)
    }

    var source: String {
        (caseInsensitive ? "(?i)" : "") + nodes.map { $0.map(Self.render).joined() }.joined(separator: "|")
    }

    private static func render(_ node: Node) -> String {
        switch node {
        case .literal(let byte): escaped(byte, inClass: false)
        case .dot: "."
        case .escape(let letter): "\\\(letter)"
        case .set(let members, let negated, _): "[" + (negated ? "^" : "") + members.joined() + "]"
        case .group(let branches, let capturing):
            (capturing ? "(" : "(?:") + branches.map { $0.map(render).joined() }.joined(separator: "|") + ")"
        case .repeated(let inner, let quantifier, _, _): render(inner) + quantifier
        case .start: "^"
        case .end: "$"
        case .reference: "\\1"
        }
    }

    /// Random values, values made to match, and near misses made from those.
    func values(using generator: inout SeededGenerator) -> [String] {
        var result: [[UInt8]] = []
        for _ in 0..<12 {
            result.append((0..<Int.random(in: 0...6, using: &generator)).map { _ in
                Self.characters.randomElement(using: &generator)!
            })
        }
        for _ in 0..<12 {
            let branch = nodes.randomElement(using: &generator)!
            var captured: UInt8?
            var sample: [UInt8] = []
            for node in branch { Self.sample(node, into: &sample, captured: &captured, using: &generator) }
            if caseInsensitive {
                sample = sample.map { byte in
                    Bool.random(using: &generator) ? Array(String(UnicodeScalar(byte)).uppercased().utf8)[0] : byte
                }
            }
            result.append(sample)
            // A near miss: one character changed, added or removed.
            var miss = sample
            let other = Self.characters.randomElement(using: &generator)!
            switch Int.random(in: 0..<3, using: &generator) {
            case 0 where !miss.isEmpty: miss[Int.random(in: 0..<miss.count, using: &generator)] = other
            case 1 where !miss.isEmpty: miss.remove(at: Int.random(in: 0..<miss.count, using: &generator))
            default: miss.insert(other, at: Int.random(in: 0...miss.count, using: &generator))
            }
            result.append(miss)
        }
        return result.map { String(decoding: $0, as: UTF8.self) }
    }

    private static func sample(
        _ node: Node, into value: inout [UInt8], captured: inout UInt8?, using generator: inout SeededGenerator
    ) {
        switch node {
        case .literal(let byte): value.append(byte)
        case .dot: value.append(characters.randomElement(using: &generator)!)
        case .escape(let letter):
            let choices: [Character: [UInt8]] = [
                "d": Array("0123456789".utf8), "w": Array("aZ_9".utf8), "s": [0x20], "D": Array("a@ ".utf8),
                "W": Array("@. -".utf8), "S": Array("a1@".utf8),
            ]
            value.append(choices[letter]!.randomElement(using: &generator)!)
        case .set(_, let negated, let sample):
            let pool = negated ? characters : sample
            value.append(pool.randomElement(using: &generator)!)
        case .group(let branches, let capturing):
            let start = value.count
            for inner in branches.randomElement(using: &generator)! {
                Self.sample(inner, into: &value, captured: &captured, using: &generator)
            }
            if capturing, value.count == start + 1 { captured = value.last }
        case .repeated(let inner, _, let minimum, let maximum):
            for _ in 0..<Int.random(in: minimum...maximum, using: &generator) {
                Self.sample(inner, into: &value, captured: &captured, using: &generator)
            }
        case .start, .end: break
        case .reference: if let captured { value.append(captured) }
        }
    }
}

import Foundation

/// A field a guard rule applies to.
public enum GuardField: String, Sendable, Hashable {
    case email
    case phoneNumber
}

/// Why a blocklist cannot be used: where (the source and, when one line is at fault, its 1-based
/// number) and what is wrong, in words an operator can act on.
public struct BlocklistError: Error, Sendable, CustomStringConvertible {
    /// Where the rules came from: a file's path, or the name given to ``Blocklist/init(parsing:source:)``.
    public var source: String
    /// The 1-based line at fault; `nil` when the source as a whole is (a file that cannot be read).
    public var line: Int?
    /// A sentence saying what is wrong.
    public var reason: String

    public init(source: String, line: Int?, reason: String) {
        self.source = source
        self.line = line
        self.reason = reason
    }

    /// `source line N: reason`, or `source: reason` when no single line is at fault.
    public var description: String {
        if let line { return "\(source) line \(line): \(reason)" }
        return "\(source): \(reason)"
    }
}

/// The blocklist rules of SPEC.md section 10, parsed and compiled: values such as `test@test.com` or
/// `0000000000` that strangers share, so identify must not link anyone through them.
///
/// One rule a line: `email VALUE`, `phoneNumber VALUE`, `email /REGEX/` or `phoneNumber /REGEX/`;
/// blank lines and lines starting with `#` are ignored. A VALUE is normalized when the list is parsed
/// (section 3), so it blocks however a request spells it. A REGEX must match the whole normalized
/// value; emails are lowercased by then, so a pattern with capitals matches nothing unless it says `(?i)`.
///
/// Most rules of a field, exact values and regexes of a plain subset, are compiled into one
/// ``BlocklistAutomaton`` that reads a value once, byte by byte; `Regex` (and a `Set` for exact values)
/// answers for the rest, and for values the automaton cannot read. Either way the verdict is `Regex`'s.
///
/// Immutable once made, so one instance may be read from any thread. The engine asks through a
/// ``BlocklistMatcher``, which caches the verdicts that needed `Regex`.
public struct Blocklist: Sendable {
    /// The rules of one field.
    struct Rules: Sendable {
        /// Normalized values, blocked exactly.
        var values: Set<String> = []
        /// Regexes, in file order without repeats; a value is blocked when one matches all of it.
        var patterns: [Pattern] = []
        /// Most of the values and regexes above in one automaton (see ``compile(for:)``), which answers
        /// for a value in one pass over its bytes; `nil` when it holds none.
        private(set) var automaton: BlocklistAutomaton?
        /// The values the automaton does not hold.
        private(set) var residualValues: Set<String> = []
        /// The regexes the automaton does not hold, in file order.
        private(set) var residualPatterns: [Pattern] = []

        var isEmpty: Bool { values.isEmpty && patterns.isEmpty }

        var count: Int { values.count + patterns.count }

        /// Whether some rule is left to the set or to `Regex` after the automaton has said no.
        var hasResidue: Bool { !residualValues.isEmpty || !residualPatterns.isEmpty }

        func blocks(_ value: String) -> Bool {
            if let automaton, let verdict = automaton.matches(value) {
                return verdict || residualBlocks(value)
            }
            return values.contains(value) || matchesPattern(value)
        }

        /// The rules the automaton does not hold, for a value it answered no for.
        func residualBlocks(_ value: String) -> Bool {
            (!residualValues.isEmpty && residualValues.contains(value)) || residualPatterns.contains {
                $0.matchesWhole(value)
            }
        }

        func matchesPattern(_ value: String) -> Bool {
            patterns.contains { $0.matchesWhole(value) }
        }

        fileprivate mutating func add(_ rule: Rule) {
            switch rule {
            case .value(let value):
                values.insert(value)
            case .pattern(let pattern):
                // A repeated line would only cost a second match of every value it misses.
                if !patterns.contains(where: { $0.source == pattern.source }) { patterns.append(pattern) }
            }
        }

        /// Builds the automaton once every rule is in. It takes the values made of its alphabet and the
        /// regexes ``PatternParser`` reads; when all of them need too many states, it takes the regexes
        /// alone (the values stay in the set, one hash away), then as many regexes as fit, in file order.
        mutating func compile(for field: GuardField) {
            let alphabet = BlocklistAutomaton.alphabet(of: field)
            var literalValues: [String] = []
            residualValues = []
            for value in values {
                // A value with a byte outside the alphabet can only equal values the automaton never sees.
                if value.utf8.allSatisfy(alphabet.contains) {
                    literalValues.append(value)
                } else {
                    residualValues.insert(value)
                }
            }
            // Each regex alone first: one that needs too many states by itself is found at the cost of one
            // try, not of one in each combination below.
            var parsed: [(source: String, expression: PatternExpression)] = []
            for pattern in patterns {
                guard let expression = PatternParser.parse(pattern.source, alphabet: alphabet),
                    BlocklistAutomaton([expression], alphabet: alphabet) != nil
                else { continue }
                parsed.append((pattern.source, expression))
            }
            var compiled = Set(parsed.map(\.source))
            automaton = nil
            if !literalValues.isEmpty || !parsed.isEmpty {
                let literals = literalValues.map { PatternExpression.literal($0.utf8) }
                if let whole = BlocklistAutomaton(literals + parsed.map(\.expression), alphabet: alphabet) {
                    automaton = whole
                } else {
                    // Values left in the set cost a hash each; regexes left to Regex cost a match each, far more.
                    residualValues.formUnion(literalValues)
                    if let patternsAlone = BlocklistAutomaton(parsed.map(\.expression), alphabet: alphabet) {
                        automaton = patternsAlone
                    } else {
                        var taken: [PatternExpression] = []
                        for (source, expression) in parsed {
                            if let candidate = BlocklistAutomaton(taken + [expression], alphabet: alphabet) {
                                automaton = candidate
                                taken.append(expression)
                            } else {
                                compiled.remove(source)
                            }
                        }
                    }
                }
            }
            residualPatterns = patterns.filter { !compiled.contains($0.source) }
        }
    }

    /// A compiled regex, with the text it was written as.
    ///
    /// `@unchecked Sendable` because the standard library's `Regex` is not declared `Sendable`. It is
    /// safe to share here: the regex is compiled once, in `init`, and never mutated afterwards, and
    /// matching only reads it. The standard library lowers a regex to its matching program lazily, on
    /// the first match, and that first write is not synchronized with later reads; `init` runs one
    /// match itself so the write happens before the value can reach another thread.
    struct Pattern: @unchecked Sendable {
        /// The regex as written between the slashes.
        let source: String
        private let regex: Regex<AnyRegexOutput>
        /// Text that every value the regex matches contains (see ``requiredText(of:)``), or `nil`.
        let required: [UInt8]?

        init(_ source: String) throws {
            self.source = source
            regex = try Regex(source)
            required = Self.requiredText(of: source)
            _ = matchesRegex("")
        }

        func matchesWhole(_ value: String) -> Bool {
            // A regex match costs microseconds; most values lack the pattern's literal text, and
            // looking for it costs nanoseconds. Without it there can be no match.
            if let required, !Self.contains(value, required) { return false }
            return matchesRegex(value)
        }

        /// The regex alone, without the look for its literal text (for tests, which compare the two).
        func matchesRegex(_ value: String) -> Bool {
            // Only custom regex components can throw while matching, and a regex read from text has none.
            (try? regex.wholeMatch(in: value)) != nil
        }

        private static func contains(_ value: String, _ needle: [UInt8]) -> Bool {
            var value = value
            return value.withUTF8 { haystack in
                // Values are short (an email is at most 254 bytes): a plain scan is as good as any.
                guard haystack.count >= needle.count, let first = needle.first else { return needle.isEmpty }
                var start = 0
                while start + needle.count <= haystack.count {
                    if haystack[start] == first, haystack[start..<(start + needle.count)].elementsEqual(needle) {
                        return true
                    }
                    start += 1
                }
                return false
            }
        }

        /// The longest run of literal text (at least two bytes) that any whole match must contain, found
        /// by a deliberately cautious reading: only characters outside groups and classes, with no
        /// quantifier that can skip them, count; a pattern with top-level alternation, inline options
        /// (`(?i)`), or an escape other than a punctuation character or `\d \w \s \b` (and their
        /// capitals) gets none, and is always matched in full. A run may end in a `+`-quantified character,
        /// which appears at least once.
        static func requiredText(of pattern: String) -> [UInt8]? {
            let characters = Array(pattern)
            if pattern.contains("(?") { return nil }
            var runs: [String] = []
            var run = ""
            var index = 0
            func endRun() {
                if !run.isEmpty { runs.append(run) }
                run = ""
            }
            while index < characters.count {
                let character = characters[index]
                var literal: Character?
                switch character {
                case "|": return nil
                case "\\":
                    guard index + 1 < characters.count else { return nil }
                    let escaped = characters[index + 1]
                    index += 1
                    if #".+*?()[]{}|^$\/-@#&%!,:;=_~"#.contains(escaped) {
                        literal = escaped
                    } else if !"dwsbDWSB".contains(escaped) {
                        return nil
                    }
                case "(", "[":
                    guard let end = closing(characters, from: index) else { return nil }
                    index = end
                case ".", "^", "$": break
                case ")", "]", "*", "+", "?", "{", "}": return nil  // unbalanced or dangling: be cautious
                default: literal = character
                }
                index += 1
                // What follows an atom decides whether it must appear.
                let quantifier = index < characters.count ? characters[index] : nil
                switch quantifier {
                case "*", "?", "{":
                    endRun()
                    if quantifier == "{" {
                        guard let end = characters[index...].firstIndex(of: "}") else { return nil }
                        index = end
                    }
                    index += 1
                    if index < characters.count, characters[index] == "?" || characters[index] == "+" { index += 1 }
                case "+":
                    if let literal { run.append(literal) }
                    endRun()
                    index += 1
                    if index < characters.count, characters[index] == "?" || characters[index] == "+" { index += 1 }
                default:
                    if let literal { run.append(literal) } else { endRun() }
                }
            }
            endRun()
            guard let longest = runs.max(by: { $0.utf8.count < $1.utf8.count }), longest.utf8.count >= 2 else {
                return nil
            }
            return Array(longest.utf8)
        }

        /// The index of the `)` or `]` that closes the group or class opening at `start`, skipping escapes
        /// and the classes inside a group; `nil` for anything unusual (a nested class, a class that starts
        /// with `]`, no closing), so that the caller falls back to matching in full.
        private static func closing(_ characters: [Character], from start: Int) -> Int? {
            var depth = 0
            var index = start
            while index < characters.count {
                switch characters[index] {
                case "\\":
                    index += 2
                    continue
                case "[":
                    var end = index + 1
                    if end < characters.count, characters[end] == "^" { end += 1 }
                    if end < characters.count, characters[end] == "]" { return nil }
                    while end < characters.count, characters[end] != "]" {
                        if characters[end] == "[" { return nil }
                        end += characters[end] == "\\" ? 2 : 1
                    }
                    guard end < characters.count else { return nil }
                    if depth == 0 { return end }
                    index = end
                case "(":
                    depth += 1
                case ")":
                    depth -= 1
                    if depth < 0 { return nil }
                    if depth == 0 { return index }
                default:
                    break
                }
                index += 1
            }
            return nil
        }
    }

    fileprivate enum Rule {
        case value(String)
        case pattern(Pattern)
    }

    /// The rules for emails.
    let email: Rules
    /// The rules for phone numbers.
    let phoneNumber: Rules

    /// No rules: nothing is blocked.
    public static let empty = Blocklist(email: Rules(), phoneNumber: Rules())

    private init(email: Rules, phoneNumber: Rules) {
        self.email = email
        self.phoneNumber = phoneNumber
    }

    /// Parses `text` in the blocklist format; `source` names it in errors (usually the file's path).
    ///
    /// Throws on the first bad line: an unknown field, a field with no value, a value that is not a
    /// valid email or phone number, or a regex that is empty or does not compile.
    public init(parsing text: String, source: String) throws(BlocklistError) {
        var email = Rules()
        var phoneNumber = Rules()
        // Split the way editors count lines, so the numbers in errors are the ones an operator sees.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        for (index, line) in lines.enumerated() {
            guard let (field, rule) = try Self.rule(on: line, number: index + 1, source: source) else { continue }
            switch field {
            case .email: email.add(rule)
            case .phoneNumber: phoneNumber.add(rule)
            }
        }
        email.compile(for: .email)
        phoneNumber.compile(for: .phoneNumber)
        self.init(email: email, phoneNumber: phoneNumber)
    }

    /// Reads and parses the UTF-8 file at `path`; errors name the path, and a file that cannot be
    /// read or is not UTF-8 is an error with no line.
    public init(contentsOfFile path: String) throws(BlocklistError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BlocklistError(source: path, line: nil, reason: "cannot be read: \(Self.readFailure(error))")
        }
        guard var text = String(validating: data, as: UTF8.self) else {
            throw BlocklistError(source: path, line: nil, reason: "is not UTF-8 text")
        }
        // Some editors start UTF-8 files with a byte order mark; it would glue itself to the first field.
        if text.unicodeScalars.first == "\u{FEFF}" { text.unicodeScalars.removeFirst() }
        try self.init(parsing: text, source: path)
    }

    /// No rules for either field.
    public var isEmpty: Bool { email.isEmpty && phoneNumber.isEmpty }

    /// The distinct rules of both fields: exact values (as normalized) and regexes.
    public var ruleCount: Int { email.count + phoneNumber.count }

    /// Whether `value`, already normalized, is blocked for `field`: it equals a VALUE rule, or a regex
    /// matches all of it. Uncached; the engine asks through a ``BlocklistMatcher``.
    public func blocks(_ value: String, field: GuardField) -> Bool {
        rules(for: field).blocks(value)
    }

    func rules(for field: GuardField) -> Rules {
        switch field {
        case .email: email
        case .phoneNumber: phoneNumber
        }
    }

    /// Why a file could not be read, as the system says it ("No such file or directory").
    private static func readFailure(_ error: any Error) -> String {
        // Foundation wraps the system's reason in words of its own ("The operation could not be completed.")
        // that tell an operator nothing; the POSIX error underneath names the actual problem.
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error {
            let posix = underlying as NSError
            if posix.domain == NSPOSIXErrorDomain, let message = strerror(Int32(posix.code)) {
                return String(cString: message)
            }
        }
        return error.localizedDescription
    }

    /// The rule on one line, or `nil` for a blank line or a comment.
    private static func rule(
        on line: Substring, number: Int, source: String
    ) throws(BlocklistError) -> (GuardField, Rule)? {
        func failure(_ reason: String) -> BlocklistError {
            BlocklistError(source: source, line: number, reason: reason)
        }
        let text = Normalization.trimmingWhitespace(String(line))
        if text.isEmpty || text.hasPrefix("#") { return nil }

        let scalars = text.unicodeScalars
        let nameEnd = scalars.firstIndex { $0.properties.isWhitespace } ?? scalars.endIndex
        let name = String(Substring(scalars[..<nameEnd]))
        guard let field = GuardField(rawValue: name) else {
            throw failure("unknown field \"\(name)\"; a rule starts with email or phoneNumber")
        }
        let value = Normalization.trimmingWhitespace(String(Substring(scalars[nameEnd...])))
        guard !value.isEmpty else {
            throw failure("\(name) needs a value or a /regex/ after it")
        }

        if value.count >= 2, value.first == "/", value.last == "/" {
            let pattern = String(value.dropFirst().dropLast())
            guard !pattern.isEmpty else { throw failure("empty regex //; it would match nothing") }
            do {
                return (field, .pattern(try Pattern(pattern)))
            } catch {
                throw failure("invalid regex \(value): \(error)")
            }
        }

        // A value that opens a regex but never closes it is a typo, not an address to match exactly.
        if value.first == "/" {
            throw failure("a regex must end with /: \(value)")
        }

        let normalized: String?
        do throws(RequestError) {
            switch field {
            case .email: normalized = try Normalization.email(String(value))
            case .phoneNumber: normalized = try Normalization.phoneNumber(String(value))
            }
        } catch {
            throw failure("\(name) \"\(value)\" is not valid: \(error.reason)")
        }
        // Normalization trims as this parser does, so a value left non-empty here is never absent there.
        guard let normalized else { throw failure("\(name) needs a value or a /regex/ after it") }
        return (field, .value(normalized))
    }
}

/// The blocklist as the engine asks it on the hot path: the automaton's verdict when it gives one and
/// no rule is left outside it; otherwise the verdict for each distinct value cached, so a value is
/// matched against the regexes once.
///
/// The cache holds at most `cacheLimit` verdicts per field and is cleared when it reaches that bound,
/// so memory stays bounded whatever values arrive. Not meant to be shared: one owner (the engine's
/// single-threaded state) holds and mutates it. A reload replaces the whole matcher, which drops its cache.
public struct BlocklistMatcher {
    /// The rules this matcher answers for.
    public let blocklist: Blocklist
    private var email: FieldMatcher
    private var phoneNumber: FieldMatcher

    /// A matcher for `blocklist` that caches up to `cacheLimit` verdicts that needed `Regex`, per field (0: none).
    public init(_ blocklist: Blocklist, cacheLimit: Int = 65_536) {
        precondition(cacheLimit >= 0, "a cache limit cannot be negative")
        self.blocklist = blocklist
        email = FieldMatcher(rules: blocklist.email, cacheLimit: cacheLimit)
        phoneNumber = FieldMatcher(rules: blocklist.phoneNumber, cacheLimit: cacheLimit)
    }

    /// No rules for either field.
    public var isEmpty: Bool { blocklist.isEmpty }

    /// Whether `value`, already normalized, is blocked for `field`; the same verdict as
    /// ``Blocklist/blocks(_:field:)``.
    public mutating func isBlocked(_ value: String, field: GuardField) -> Bool {
        switch field {
        case .email: email.isBlocked(value)
        case .phoneNumber: phoneNumber.isBlocked(value)
        }
    }

    private struct FieldMatcher {
        let rules: Blocklist.Rules
        let cacheLimit: Int
        var verdicts: [String: Bool] = [:]

        mutating func isBlocked(_ value: String) -> Bool {
            // Most deployments have no rules for a field, or only exact ones: neither should pay for
            // hashing the value into the cache.
            if rules.isEmpty { return false }
            // The automaton reads a value in less time than hashing it into the cache would take.
            if let automaton = rules.automaton, let verdict = automaton.matches(value) {
                if verdict || !rules.hasResidue { return verdict }
                let rules = rules
                return cached(value) { rules.residualBlocks($0) }
            }
            if rules.patterns.isEmpty { return rules.values.contains(value) }
            let rules = rules
            return cached(value) { rules.blocks($0) }
        }

        /// `verdict(value)`, computed once per value while the cache holds it.
        private mutating func cached(_ value: String, _ verdict: (String) -> Bool) -> Bool {
            // With regexes, the cache holds the whole verdict (exact or regex), so a value seen
            // before costs one hash, not two: this is on every identify's path.
            if let verdict = verdicts[value] { return verdict }
            let verdict = verdict(value)
            if cacheLimit > 0 {
                // Clearing costs nothing per lookup, unlike tracking recency; values that repeat (the junk
                // a blocklist exists for) are back in the cache within a few requests.
                if verdicts.count >= cacheLimit { verdicts.removeAll(keepingCapacity: true) }
                verdicts[value] = verdict
            }
            return verdict
        }
    }
}

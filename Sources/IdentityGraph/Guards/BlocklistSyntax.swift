/// A set of ASCII bytes: what one position of a pattern may match, or the bytes an automaton reads.
struct ByteSet: Hashable, Sendable {
    private var low: UInt64 = 0
    private var high: UInt64 = 0

    init() {}

    init(_ bytes: some Sequence<UInt8>) {
        for byte in bytes { insert(byte) }
    }

    /// The bytes of `text`, which must be ASCII.
    init(_ text: StaticString) {
        var set = ByteSet()
        text.withUTF8Buffer { for byte in $0 { set.insert(byte) } }
        self = set
    }

    init(range: ClosedRange<UInt8>) {
        for byte in range { insert(byte) }
    }

    /// Every byte a pattern can name: all of ASCII.
    static let ascii = ByteSet(range: 0...0x7F)
    /// `\d` on ASCII.
    static let digits = ByteSet(range: 0x30...0x39)
    /// `\w` on ASCII: letters, digits and `_`.
    static let word = ByteSet(range: 0x30...0x39).union(ByteSet(range: 0x41...0x5A)).union(ByteSet(range: 0x61...0x7A))
        .union(ByteSet("_"))
    /// `\s` on ASCII: space, tab, line feed, vertical tab, form feed, carriage return.
    static let whitespace = ByteSet(range: 0x09...0x0D).union(ByteSet(" "))
    /// `.`: anything but a line break (never in an automaton's alphabet anyway).
    static let dot = ByteSet.ascii.subtracting(ByteSet("\n\r"))

    var isEmpty: Bool { low == 0 && high == 0 }

    var count: Int { low.nonzeroBitCount + high.nonzeroBitCount }

    func contains(_ byte: UInt8) -> Bool {
        byte < 64 ? low & (1 << byte) != 0 : byte < 128 && high & (1 << (byte - 64)) != 0
    }

    mutating func insert(_ byte: UInt8) {
        precondition(byte < 128, "a byte set holds ASCII only")
        if byte < 64 { low |= 1 << byte } else { high |= 1 << (byte - 64) }
    }

    func union(_ other: ByteSet) -> ByteSet {
        var result = self
        result.low |= other.low
        result.high |= other.high
        return result
    }

    func intersection(_ other: ByteSet) -> ByteSet {
        var result = self
        result.low &= other.low
        result.high &= other.high
        return result
    }

    func subtracting(_ other: ByteSet) -> ByteSet {
        var result = self
        result.low &= ~other.low
        result.high &= ~other.high
        return result
    }

    /// The ASCII bytes not in the set.
    var inverted: ByteSet { ByteSet.ascii.subtracting(self) }

    /// The set with both cases of every ASCII letter in it, as `(?i)` compares.
    var caseFolded: ByteSet {
        var result = self
        for byte in UInt8(0x41)...0x5A where contains(byte) || contains(byte + 0x20) {
            result.insert(byte)
            result.insert(byte + 0x20)
        }
        return result
    }

    var bytes: [UInt8] { (0..<128).filter { contains($0) } }
}

/// A pattern of the subset of Swift `Regex` syntax that ``BlocklistAutomaton`` compiles, as a tree.
indirect enum PatternExpression: Equatable, Sendable {
    /// One byte of the set.
    case bytes(ByteSet)
    /// Each in turn; empty matches the empty string.
    case sequence([PatternExpression])
    /// Any one of them; empty matches nothing.
    case choice([PatternExpression])
    case repetition(PatternExpression, min: Int, max: Int?)
    /// `^`: only at the start of the value.
    case start
    /// `$`: only at the end of the value (the alphabets hold no line breaks, before which `$` also matches).
    case end
    /// A capturing group, numbered from 1 in the order its `(` appears.
    case capture(Int, PatternExpression)
    /// `\N`: the text group N captured.
    case backreference(Int)

    /// Whether `^` or `$` is part of it.
    var containsAnchor: Bool {
        switch self {
        case .start, .end: true
        case .sequence(let items), .choice(let items): items.contains { $0.containsAnchor }
        case .repetition(let inner, _, _), .capture(_, let inner): inner.containsAnchor
        case .bytes, .backreference: false
        }
    }

    /// `text` byte by byte, which must be ASCII.
    static func literal(_ text: some Sequence<UInt8>) -> PatternExpression {
        .sequence(text.map { .bytes(ByteSet(CollectionOfOne($0))) })
    }
}

/// Reads a blocklist regex into a ``PatternExpression`` when it keeps to the subset whose meaning on
/// ASCII text is plain and checked (BlocklistDFATests compares every verdict with `Regex`'s):
/// literals, `.`, classes (`[a-z]`, `[^...]`, `\d \w \s` and their capitals), groups `( )` and `(?: )`,
/// alternation, `* + ? {m} {m,} {m,n} {,n}` (lazy or not), `^` and `$` outside repetitions, a leading
/// `(?i)`, and a back-reference to a top-level group of one character (expanded into one branch for
/// each character it can be).
///
/// Anything else is left to `Regex` (the parse returns `nil`): non-ASCII text, other escapes, inline
/// options elsewhere, lookaround, possessive quantifiers, set operations in classes, POSIX classes, a `{`
/// that is not a quantifier, and whatever reads unusually. Only patterns `Regex` accepted are given
/// to it, so it never needs to report a syntax error: refusing is always safe.
struct PatternParser {
    /// The most copies a bounded repetition may make; a larger count is left to `Regex`.
    static let repetitionLimit = 1000
    /// The most branches back-references may expand into.
    static let expansionLimit = 4096

    private struct Unsupported: Error {}

    private let text: [UInt8]
    private var index = 0
    private var caseInsensitive = false
    private var captureCount = 0
    private var closedCaptures: Set<Int> = []
    private var hasBackreference = false

    private init(_ text: [UInt8]) {
        self.text = text
    }

    /// The tree of `source`, with back-references expanded over `alphabet`; `nil` when `source` leaves
    /// the subset.
    static func parse(_ source: String, alphabet: ByteSet) -> PatternExpression? {
        let text = Array(source.utf8)
        // Printable ASCII only: a control character or a non-ASCII one brings Unicode's rules in.
        guard text.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
        var parser = PatternParser(text)
        do throws(Unsupported) {
            return try parser.parseWhole(alphabet: alphabet)
        } catch {
            return nil
        }
    }

    private var peek: UInt8? { index < text.count ? text[index] : nil }

    private func peek(at offset: Int) -> UInt8? { index + offset < text.count ? text[index + offset] : nil }

    private mutating func parseWhole(alphabet: ByteSet) throws(Unsupported) -> PatternExpression {
        if text.starts(with: Array("(?i)".utf8)) {
            caseInsensitive = true
            index = 4
        }
        let expression = try parseChoice()
        guard index == text.count else { throw Unsupported() }
        guard hasBackreference else { return expression }
        // `Regex` compares a back-reference case-sensitively even under (?i); leave that combination to it.
        guard !caseInsensitive else { throw Unsupported() }
        return try Self.expandingBackreferences(expression, alphabet: alphabet)
    }

    private mutating func parseChoice() throws(Unsupported) -> PatternExpression {
        var branches = [try parseSequence()]
        while peek == UInt8(ascii: "|") {
            index += 1
            branches.append(try parseSequence())
        }
        return branches.count == 1 ? branches[0] : .choice(branches)
    }

    private mutating func parseSequence() throws(Unsupported) -> PatternExpression {
        var items: [PatternExpression] = []
        while let byte = peek, byte != UInt8(ascii: "|"), byte != UInt8(ascii: ")") {
            let atom = try parseAtom()
            items.append(try parseQuantifier(of: atom))
        }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    private mutating func parseAtom() throws(Unsupported) -> PatternExpression {
        guard let byte = peek else { throw Unsupported() }
        index += 1
        switch byte {
        case UInt8(ascii: "("):
            var number: Int?
            if peek == UInt8(ascii: "?") {
                guard peek(at: 1) == UInt8(ascii: ":") else { throw Unsupported() }
                index += 2
            } else {
                captureCount += 1
                number = captureCount
            }
            let inner = try parseChoice()
            guard peek == UInt8(ascii: ")") else { throw Unsupported() }
            index += 1
            guard let number else { return inner }
            closedCaptures.insert(number)
            return .capture(number, inner)
        case UInt8(ascii: "."):
            return .bytes(.dot)
        case UInt8(ascii: "["):
            return .bytes(try parseClass())
        case UInt8(ascii: "^"):
            return .start
        case UInt8(ascii: "$"):
            return .end
        case UInt8(ascii: "\\"):
            guard let escaped = peek else { throw Unsupported() }
            index += 1
            if let set = Self.classEscape(escaped) { return .bytes(set) }
            if (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(escaped) {
                // `\12` reads as group 12; a reference to a group not yet closed never matches.
                let number = Int(escaped - UInt8(ascii: "0"))
                guard let next = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(next) else {
                    guard closedCaptures.contains(number) else { throw Unsupported() }
                    hasBackreference = true
                    return .backreference(number)
                }
                throw Unsupported()
            }
            return .bytes(fold(ByteSet(CollectionOfOne(try Self.punctuation(escaped)))))
        case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "{"), UInt8(ascii: "}"),
            UInt8(ascii: "]"), UInt8(ascii: ")"):
            // `{` that opens no quantifier is a literal to `Regex`, and `]`, `}` alone are too; rare enough
            // in a blocklist to leave to it rather than mirror its reading.
            throw Unsupported()
        default:
            return .bytes(fold(ByteSet(CollectionOfOne(byte))))
        }
    }

    private mutating func parseQuantifier(of atom: PatternExpression) throws(Unsupported) -> PatternExpression {
        guard let byte = peek, Self.isQuantifierStart(byte) else { return atom }
        // `Regex` ends a loop after an iteration that matched nothing, so `(?:a|^){2,}` does not match `a`;
        // only an anchor makes that differ from the plain meaning, and a repeated anchor is left to it.
        if atom.containsAnchor { throw Unsupported() }
        let bounds: (min: Int, max: Int?)
        switch byte {
        case UInt8(ascii: "*"): bounds = (0, nil)
        case UInt8(ascii: "+"): bounds = (1, nil)
        case UInt8(ascii: "?"): bounds = (0, 1)
        default: bounds = try parseBraces()
        }
        if byte != UInt8(ascii: "{") { index += 1 }
        // A lazy quantifier matches the same whole values; a possessive one (`+` after it) does not.
        if peek == UInt8(ascii: "?") { index += 1 }
        if let next = peek, Self.isQuantifierStart(next) { throw Unsupported() }
        return .repetition(atom, min: bounds.min, max: bounds.max)
    }

    /// `{m}`, `{m,}`, `{m,n}` or `{,n}`, strictly: `Regex` also reads spaces in them, and `{` as a literal.
    /// Leaves `index` after the `}`.
    private mutating func parseBraces() throws(Unsupported) -> (min: Int, max: Int?) {
        index += 1
        let lower = readNumber()
        var upper = lower
        if peek == UInt8(ascii: ",") {
            index += 1
            upper = readNumber()
            if lower == nil && upper == nil { throw Unsupported() }
        } else if lower == nil {
            throw Unsupported()
        }
        guard peek == UInt8(ascii: "}") else { throw Unsupported() }
        index += 1
        let minimum = lower ?? 0
        if let upper, upper < minimum { throw Unsupported() }
        guard max(minimum, upper ?? 0) <= Self.repetitionLimit else { throw Unsupported() }
        return (minimum, upper)
    }

    private mutating func readNumber() -> Int? {
        var value: Int?
        while let byte = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            index += 1
            // Past the limit the value only needs to stay past it.
            value = min((value ?? 0) * 10 + Int(byte - UInt8(ascii: "0")), Self.repetitionLimit + 1)
        }
        return value
    }

    /// A class after its `[`, through its `]`.
    private mutating func parseClass() throws(Unsupported) -> ByteSet {
        var negated = false
        if peek == UInt8(ascii: "^") {
            negated = true
            index += 1
        }
        var set = ByteSet()
        var first = true
        while true {
            guard let byte = peek else { throw Unsupported() }
            if byte == UInt8(ascii: "]") {
                guard !first else { throw Unsupported() }
                index += 1
                break
            }
            // Nested classes and POSIX classes (`[`), and the set operators `&&`, `--`, `~~`.
            if byte == UInt8(ascii: "[") { throw Unsupported() }
            if [UInt8(ascii: "&"), UInt8(ascii: "-"), UInt8(ascii: "~")].contains(byte), peek(at: 1) == byte {
                throw Unsupported()
            }
            // A `-` is a literal only first or last.
            if byte == UInt8(ascii: "-"), !first, peek(at: 1) != UInt8(ascii: "]") { throw Unsupported() }
            first = false
            let member = try parseClassMember()
            let rangeFollows = peek == UInt8(ascii: "-") && peek(at: 1) != nil && peek(at: 1) != UInt8(ascii: "]")
            switch member {
            case .set(let members):
                if rangeFollows { throw Unsupported() }
                set = set.union(members)
            case .byte(let lower):
                guard rangeFollows else {
                    set = set.union(ByteSet(CollectionOfOne(lower)))
                    continue
                }
                index += 1
                guard peek != UInt8(ascii: "-"), peek != UInt8(ascii: "["),
                    case .byte(let upper) = try parseClassMember(), lower <= upper
                else { throw Unsupported() }
                set = set.union(ByteSet(range: lower...upper))
                // `[a-c-e]`: `Regex` reads the second `-` in a way of its own.
                if peek == UInt8(ascii: "-"), peek(at: 1) != UInt8(ascii: "]") { throw Unsupported() }
            }
        }
        // `Regex` under (?i) lets a class holding `@` match a backtick as well (as if `@` were the capital
        // of it); rather than copy that, leave such a class to it.
        if caseInsensitive, set.contains(UInt8(ascii: "@")) { throw Unsupported() }
        // (?i) folds the members, then a `^` inverts: `(?i)[^a]` matches neither `a` nor `A`.
        set = fold(set)
        return negated ? set.inverted : set
    }

    private enum ClassMember {
        case byte(UInt8)
        case set(ByteSet)
    }

    private mutating func parseClassMember() throws(Unsupported) -> ClassMember {
        guard let byte = peek else { throw Unsupported() }
        index += 1
        guard byte == UInt8(ascii: "\\") else { return .byte(byte) }
        guard let escaped = peek else { throw Unsupported() }
        index += 1
        if let set = Self.classEscape(escaped) { return .set(set) }
        return .byte(try Self.punctuation(escaped))
    }

    private func fold(_ set: ByteSet) -> ByteSet {
        caseInsensitive ? set.caseFolded : set
    }

    private static func classEscape(_ byte: UInt8) -> ByteSet? {
        switch byte {
        case UInt8(ascii: "d"): .digits
        case UInt8(ascii: "D"): ByteSet.digits.inverted
        case UInt8(ascii: "w"): .word
        case UInt8(ascii: "W"): ByteSet.word.inverted
        case UInt8(ascii: "s"): .whitespace
        case UInt8(ascii: "S"): ByteSet.whitespace.inverted
        default: nil
        }
    }

    /// An escaped character that stands for itself: any printable ASCII but a letter or a digit (those
    /// name classes, anchors, code points and more).
    private static func punctuation(_ byte: UInt8) throws(Unsupported) -> UInt8 {
        guard (0x20...0x7E).contains(byte), !ByteSet.word.contains(byte) || byte == UInt8(ascii: "_") else {
            throw Unsupported()
        }
        return byte
    }

    private static func isQuantifierStart(_ byte: UInt8) -> Bool {
        [UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "{")].contains(byte)
    }

    // MARK: - Back-references

    /// `expression` without back-references: a group of one character that a later `\N` repeats
    /// becomes one branch per character of the alphabet it can be. Only groups that every match passes
    /// through once (items of the top-level sequence, not repeated) qualify; the rest are left to `Regex`.
    private static func expandingBackreferences(
        _ expression: PatternExpression, alphabet: ByteSet
    ) throws(Unsupported) -> PatternExpression {
        guard case .sequence(let items) = expression else { throw Unsupported() }
        var referenced: [Int] = []
        for item in items { collectReferences(item, into: &referenced) }
        var branches: [[PatternExpression]] = [items]
        for number in Set(referenced).sorted() {
            guard let position = items.firstIndex(where: { if case .capture(number, _) = $0 { true } else { false } }),
                case .capture(_, .bytes(let set)) = items[position],
                items[...position].allSatisfy({ !containsReference(to: number, in: $0) })
            else { throw Unsupported() }
            let characters = set.intersection(alphabet).bytes
            guard branches.count * max(characters.count, 1) <= expansionLimit else { throw Unsupported() }
            branches = branches.flatMap { branch in
                characters.map { character in
                    let single = PatternExpression.bytes(ByteSet(CollectionOfOne(character)))
                    var expanded = branch
                    expanded[position] = single
                    for index in expanded.indices where index > position {
                        expanded[index] = substituting(number, with: single, in: expanded[index])
                    }
                    return expanded
                }
            }
        }
        return .choice(branches.map { .sequence($0) })
    }

    private static func collectReferences(_ expression: PatternExpression, into numbers: inout [Int]) {
        switch expression {
        case .backreference(let number): numbers.append(number)
        case .sequence(let items), .choice(let items): for item in items { collectReferences(item, into: &numbers) }
        case .repetition(let inner, _, _), .capture(_, let inner): collectReferences(inner, into: &numbers)
        case .bytes, .start, .end: break
        }
    }

    private static func containsReference(to number: Int, in expression: PatternExpression) -> Bool {
        var numbers: [Int] = []
        collectReferences(expression, into: &numbers)
        return numbers.contains(number)
    }

    private static func substituting(
        _ number: Int, with replacement: PatternExpression, in expression: PatternExpression
    ) -> PatternExpression {
        switch expression {
        case .backreference(number): replacement
        case .sequence(let items): .sequence(items.map { substituting(number, with: replacement, in: $0) })
        case .choice(let items): .choice(items.map { substituting(number, with: replacement, in: $0) })
        case .repetition(let inner, let minimum, let maximum):
            .repetition(substituting(number, with: replacement, in: inner), min: minimum, max: maximum)
        case .capture(let other, let inner): .capture(other, substituting(number, with: replacement, in: inner))
        case .bytes, .start, .end, .backreference: expression
        }
    }
}

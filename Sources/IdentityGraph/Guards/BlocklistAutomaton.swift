/// One deterministic automaton for many blocklist rules of a field: it reads a value's bytes once, one
/// table look-up each, and says whether any of its rules matches the whole value.
///
/// It answers only for values made of its alphabet's bytes: ASCII characters that are one `Character`
/// each and that normalization lets into the field, so that byte by byte and `Regex`'s character by
/// character agree. Any other value gets `nil`, and the caller asks `Regex`.
struct BlocklistAutomaton: Sendable {
    /// The most states an automaton may have; past it, ``init(_:alphabet:stateLimit:)`` gives up.
    static let defaultStateLimit = 16_384

    /// For each byte, its column in `transitions`; 0 for a byte outside the alphabet.
    private let columns: [UInt8]
    private let width: Int
    /// `transitions[state * width + column]`: the next state. State 0 matches nothing any more.
    private let transitions: [UInt16]
    /// Whether a value that ends in the state is matched.
    private let accepting: [Bool]
    private static let startState = 1

    /// The number of states, for tests and for deciding what fits.
    var stateCount: Int { accepting.count }

    /// An automaton that matches a value when one of `rules` matches all of it; `nil` when it would need
    /// more than `stateLimit` states (or a pattern more positions than a bounded table can hold).
    init?(_ rules: [PatternExpression], alphabet: ByteSet, stateLimit: Int = defaultStateLimit) {
        precondition(!alphabet.contains(UInt8(ascii: "\n")), "`$` also matches before a final line feed")
        var nfa = NondeterministicAutomaton(positionLimit: 16 * stateLimit)
        guard let entry = nfa.union(rules) else { return nil }
        var determinizer = Determinizer(nfa, alphabet: alphabet, stateLimit: min(stateLimit, Int(UInt16.max)))
        guard let table = determinizer.run(entry: entry) else { return nil }
        (columns, width, transitions, accepting) = table
    }

    /// Whether one of the rules matches all of `value`; `nil` when a byte of it is outside the alphabet.
    func matches(_ value: String) -> Bool? {
        if let verdict = value.utf8.withContiguousStorageIfAvailable({ run($0) }) { return verdict }
        return Array(value.utf8).withUnsafeBufferPointer { run($0) }
    }

    private func run(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool? {
        columns.withUnsafeBufferPointer { columns in
            transitions.withUnsafeBufferPointer { transitions in
                var state = Self.startState
                for byte in bytes {
                    let column = Int(columns[Int(byte)])
                    if column == 0 { return nil }
                    state = Int(transitions[state &* width &+ column])
                }
                return accepting[state]
            }
        }
    }
}

/// Thompson's construction: a graph of positions whose paths spell what the patterns match.
private struct NondeterministicAutomaton {
    enum Position {
        /// Reads one byte of the set, then goes on.
        case bytes(ByteSet, next: Int)
        /// Goes on to any of these without reading.
        case split([Int])
        /// Goes on only at the start of the value.
        case start(next: Int)
        /// Goes on only at the end of the value.
        case end(next: Int)
        case accept
    }

    static let accept = 0
    private(set) var positions: [Position] = [.accept]
    let positionLimit: Int

    init(positionLimit: Int) {
        self.positionLimit = positionLimit
    }

    /// The entry of a graph that accepts what any of `expressions` matches; `nil` past the limit.
    mutating func union(_ expressions: [PatternExpression]) -> Int? {
        var entries: [Int] = []
        for expression in expressions {
            guard let entry = compile(expression, next: Self.accept) else { return nil }
            entries.append(entry)
        }
        return add(.split(entries))
    }

    private mutating func add(_ position: Position) -> Int? {
        guard positions.count < positionLimit else { return nil }
        positions.append(position)
        return positions.count - 1
    }

    /// The entry of a graph for `expression` that continues to `next`; built back to front.
    private mutating func compile(_ expression: PatternExpression, next: Int) -> Int? {
        switch expression {
        case .bytes(let set):
            return add(.bytes(set, next: next))
        case .sequence(let items):
            var entry = next
            for item in items.reversed() {
                guard let itemEntry = compile(item, next: entry) else { return nil }
                entry = itemEntry
            }
            return entry
        case .choice(let branches):
            var entries: [Int] = []
            for branch in branches {
                guard let entry = compile(branch, next: next) else { return nil }
                entries.append(entry)
            }
            return add(.split(entries))
        case .repetition(let inner, let minimum, let maximum):
            var entry = next
            if let maximum {
                // Nested optional copies: e(e(e)?)?, each of which may stop at `next`.
                for _ in 0..<(maximum - minimum) {
                    guard let copy = compile(inner, next: entry), let choice = add(.split([copy, next])) else {
                        return nil
                    }
                    entry = choice
                }
            } else {
                guard let loop = add(.split([])), let copy = compile(inner, next: loop) else { return nil }
                positions[loop] = .split([copy, next])
                entry = loop
            }
            for _ in 0..<minimum {
                guard let copy = compile(inner, next: entry) else { return nil }
                entry = copy
            }
            return entry
        case .start:
            return add(.start(next: next))
        case .end:
            return add(.end(next: next))
        case .capture(_, let inner):
            return compile(inner, next: next)
        case .backreference:
            // The parser expands the back-references it accepts; any other pattern never gets here.
            return nil
        }
    }
}

/// The subset construction: each state of the automaton is a set of positions, and bytes that every
/// position treats alike share one column.
private struct Determinizer {
    private let nfa: NondeterministicAutomaton
    private let stateLimit: Int
    private var columns = [UInt8](repeating: 0, count: 256)
    /// A byte of each column, to compute its moves with.
    private var representatives: [UInt8] = [0]
    private var seen: [Int]
    private var generation = 0

    init(_ nfa: NondeterministicAutomaton, alphabet: ByteSet, stateLimit: Int) {
        self.nfa = nfa
        self.stateLimit = stateLimit
        seen = [Int](repeating: -1, count: nfa.positions.count)
        var sets: [ByteSet] = []
        var known: Set<ByteSet> = []
        for case .bytes(let set, _) in nfa.positions where known.insert(set).inserted { sets.append(set) }
        // Two bytes share a column when every set of the patterns holds both or neither.
        var columnOfSignature: [[Bool]: UInt8] = [:]
        for byte in alphabet.bytes {
            let signature = sets.map { $0.contains(byte) }
            if let column = columnOfSignature[signature] {
                columns[Int(byte)] = column
            } else {
                let column = UInt8(representatives.count)
                columnOfSignature[signature] = column
                columns[Int(byte)] = column
                representatives.append(byte)
            }
        }
    }

    /// The table, or `nil` past the state limit.
    mutating func run(entry: Int) -> (columns: [UInt8], width: Int, transitions: [UInt16], accepting: [Bool])? {
        let width = representatives.count
        // State 0 is the empty set: nothing can match any more. State 1 is the start, kept apart from any
        // later state with the same positions because only there does `^` hold.
        var sets: [[Int32]] = [[], closure(of: [entry], atStart: true, atEnd: false)]
        var accepting = [false, accepts(closure(of: [entry], atStart: true, atEnd: true))]
        var stateOfSet: [[Int32]: Int] = [[]: 0]
        var transitions = [UInt16](repeating: 0, count: 2 * width)
        var state = 1
        while state < sets.count {
            for column in 1..<width {
                let byte = representatives[column]
                var moves: [Int] = []
                for position in sets[state] {
                    if case .bytes(let set, let next) = nfa.positions[Int(position)], set.contains(byte) {
                        moves.append(next)
                    }
                }
                let target = closure(of: moves, atStart: false, atEnd: false)
                let targetState: Int
                if let known = stateOfSet[target] {
                    targetState = known
                } else {
                    guard sets.count < stateLimit else { return nil }
                    targetState = sets.count
                    stateOfSet[target] = targetState
                    sets.append(target)
                    accepting.append(accepts(closure(of: target.map(Int.init), atStart: false, atEnd: true)))
                    transitions.append(contentsOf: repeatElement(0, count: width))
                }
                transitions[state * width + column] = UInt16(targetState)
            }
            state += 1
        }
        return (columns, width, transitions, accepting)
    }

    private func accepts(_ set: [Int32]) -> Bool {
        set.first == Int32(NondeterministicAutomaton.accept)
    }

    /// The positions reachable from `seeds` without reading a byte, kept to those that matter to what
    /// follows (ones that read a byte, wait for the end, or accept), sorted, so equal sets compare equal.
    private mutating func closure(of seeds: [Int], atStart: Bool, atEnd: Bool) -> [Int32] {
        generation += 1
        var result: [Int32] = []
        var stack = seeds
        while let position = stack.popLast() {
            if seen[position] == generation { continue }
            seen[position] = generation
            switch nfa.positions[position] {
            case .bytes, .accept:
                result.append(Int32(position))
            case .split(let nexts):
                stack.append(contentsOf: nexts)
            case .start(let next):
                if atStart { stack.append(next) }
            case .end(let next):
                result.append(Int32(position))
                if atEnd { stack.append(next) }
            }
        }
        result.sort()
        return result
    }
}

extension BlocklistAutomaton {
    /// The bytes an automaton for `field` reads: those normalization lets into the field, so that the
    /// engine's values never leave it to `Regex`. Emails: printable ASCII (a normalized email is
    /// lowercased, but capitals cost nothing); phone numbers: digits and `+`.
    static func alphabet(of field: GuardField) -> ByteSet {
        switch field {
        case .email: ByteSet(range: 0x20...0x7E)
        case .phoneNumber: ByteSet("+0123456789")
        }
    }
}

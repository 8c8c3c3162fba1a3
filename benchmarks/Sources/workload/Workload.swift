import ArgumentParser
import Foundation
import IdentityGraph

/// Writes a seeded, reproducible stream of identify requests modelled on checkout traffic, and
/// prints the mix it produced by replaying it through an in-memory engine.
///
/// The model: a growing population of persons, each with 1–3 emails and 1–2 phone numbers. Each
/// checkout event either brings a new person (`--new-person-rate`) or picks an existing one with
/// a skewed popularity (a few regulars make most of the traffic), and sends email only, phone only,
/// or both, picking one of the person's values at random. With `--junk-rate`, some events carry a
/// shared junk phone number (`0000000000` and friends) that glues unrelated profiles together, as
/// real data does.
@main
struct Workload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate an NDJSON identify workload.")

    @Option(help: "Number of requests.") var requests = 1_000_000
    @Option(help: "Random seed; the same seed gives the same file.") var seed: UInt64 = 1
    @Option(help: "Probability that an event brings a new person.") var newPersonRate = 0.2
    @Option(help: "Probability that an event's phone number is a shared junk value.") var junkRate = 0.0
    @Option(help: "Popularity skew: higher sends more traffic to early (regular) persons.") var skew = 2.0
    @Option(help: "Output file.") var out = "data/generated/workload.ndjson"
    @Flag(help: "Skip replaying the file through the engine to report the mix.") var noReport = false

    struct Person {
        var emails: [String]
        var phones: [String]
    }

    func run() async throws {
        var random = SplitMix(seed: seed)
        var persons: [Person] = []
        let junk = ["0000000000", "1234567890", "1111111111", "9999999999"]
        var text = ""
        text.reserveCapacity(requests * 64)
        var lines: [(String?, String?)] = []
        lines.reserveCapacity(noReport ? 0 : requests)

        for _ in 0..<requests {
            let person: Person
            if persons.isEmpty || random.unit() < newPersonRate {
                let index = persons.count
                let emailCount = 1 + Int(random.next() % 3)
                let phoneCount = 1 + Int(random.next() % 2)
                person = Person(
                    emails: (0..<emailCount).map { "customer\(index).\($0)@example\(index % 97).com" },
                    phones: (0..<phoneCount).map { "+1555\(String(format: "%07d", (index * 2 + $0) % 10_000_000))" }
                )
                persons.append(person)
            } else {
                // u^skew concentrates picks near 0: the oldest persons are the regulars.
                let pick = Int(pow(random.unit(), skew) * Double(persons.count))
                person = persons[min(pick, persons.count - 1)]
            }
            var email: String? = person.emails[Int(random.next() % UInt64(person.emails.count))]
            var phone: String? = person.phones[Int(random.next() % UInt64(person.phones.count))]
            switch random.next() % 10 {
            case 0..<3: phone = nil
            case 3..<5: email = nil
            default: break
            }
            if phone != nil, random.unit() < junkRate { phone = junk[Int(random.next() % UInt64(junk.count))] }
            text += Self.line(email: email, phone: phone)
            if !noReport { lines.append((email, phone)) }
        }
        let url = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        FileHandle.standardError.write(Data("wrote \(requests) requests (\(persons.count) persons) to \(out)\n".utf8))
        if !noReport { try await report(lines) }
    }

    static func line(email: String?, phone: String?) -> String {
        var fields: [String] = []
        if let email { fields.append("\"email\":\"\(email)\"") }
        if let phone { fields.append("\"phoneNumber\":\"\(phone)\"") }
        return "{" + fields.joined(separator: ",") + "}\n"
    }

    /// Replays the requests through an in-memory engine and counts what each one did.
    private func report(_ lines: [(String?, String?)]) async throws {
        let engine = IdentityEngine()
        var creates = 0
        var secondaries = 0
        var merges = 0
        var noOps = 0
        for (email, phone) in lines {
            let request = try IdentifyRequest(email: email, phoneNumber: phone)
            let before = await engine.statistics
            _ = try await engine.identify(request)
            let after = await engine.statistics
            if after.profiles > before.profiles {
                creates += 1
            } else if after.profiles < before.profiles {
                merges += 1
            } else if after.contacts > before.contacts {
                secondaries += 1
            } else {
                noOps += 1
            }
        }
        let total = Double(lines.count)
        func percent(_ count: Int) -> String { String(format: "%5.1f%%", Double(count) * 100 / total) }
        var report = "mix: creates \(percent(creates)), secondaries \(percent(secondaries)), "
            + "merges \(percent(merges)), no-ops \(percent(noOps))\n"
        let statistics = await engine.statistics
        report += "result: \(statistics.contacts) contacts in \(statistics.profiles) profiles\n"
        var sizes: [Int: Int] = [:]
        for contact in try await engine.allContacts() { sizes[contact.linkedId ?? contact.id, default: 0] += 1 }
        let buckets: [(String, ClosedRange<Int>)] = [
            ("1", 1...1), ("2", 2...2), ("3-5", 3...5), ("6-10", 6...10), ("11-100", 11...100), (">100", 101...Int.max),
        ]
        report += "profile sizes:"
        for (name, range) in buckets {
            report += " \(name): \(sizes.values.filter { range.contains($0) }.count)"
        }
        report += ", largest: \(sizes.values.max() ?? 0)\n"
        FileHandle.standardError.write(Data(report.utf8))
    }
}

/// SplitMix64: small, fast and seeded, so a workload is the same on every machine.
struct SplitMix {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A double in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

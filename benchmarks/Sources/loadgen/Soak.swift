import ArgumentParser
import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A steady mixed load over both transports for a long time (issue 17, "Curves" 4): identify of known and new
/// contacts, look-ups, erasures and contact reads, at a fixed rate, while one connection consumes the change
/// stream. Every interval it prints one JSON line: the server's RSS and open file descriptors (from /proc), the
/// throughput and latency percentiles of that interval. At the end it prints a summary line and checks that every
/// change it got an answer for is on the server (look-ups of every value it wrote, tombstones of what it erased)
/// and that the stream delivered every event, one per acknowledged change. Exit status 1 if anything failed.
///
/// Every worker owns the values it writes (tagged with the seed and its index), so its model of them is exact
/// whatever the other workers do, and a read of its own values must agree with it at once (one server, answers
/// only after commit).
struct Soak: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A steady mixed TCP and HTTP load with the change stream consumed; one JSON line per interval."
    )

    @Option(help: "Server address.") var host: String = "127.0.0.1"
    @Option(help: "The server's line-protocol port.") var tcpPort: Int
    @Option(help: "The server's HTTP port.") var httpPort: Int
    @Option(help: "The server's process id: its RSS and open file descriptors are read from /proc/PID.")
    var pid: Int32
    @Option(help: "How long to load: 90s, 30m, 1h.") var duration: String
    @Option(help: "Seconds between two points.") var interval: Double = 10
    @Option(help: "Requests per second, all connections together, paced evenly.") var rate: Double = 1000
    @Option(help: "Line-protocol connections.") var tcpConnections: Int = 4
    @Option(help: "HTTP keep-alive connections, besides the change stream's.") var httpConnections: Int = 4
    @Option(help: "Contacts `populate` wrote into the store (0: none); half the requests identify or look them up.")
    var populated: Int = 0
    @Option(help: "Seeds the request mix and tags the values this run writes (use another on the same store).")
    var seed: Int = 1
    @Option(help: "Seconds a read or write may block before it counts as failed.") var timeout: Int = 30

    func validate() throws {
        guard Self.seconds(duration) != nil else { throw ValidationError("--duration: like 90s, 30m or 1h") }
        guard interval >= 0.5 else { throw ValidationError("--interval must be at least 0.5 seconds") }
        guard rate > 0, tcpConnections >= 0, httpConnections >= 1 else {
            throw ValidationError("need --rate > 0, --tcp-connections >= 0, --http-connections >= 1")
        }
        guard populated >= 0, seed >= 0 else { throw ValidationError("--populated and --seed must not be negative") }
    }

    static func seconds(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let unit = text.last, let scale = units[unit], let value = Double(text.dropLast()), value > 0 {
            return value * scale
        }
        return Double(text).flatMap { $0 > 0 ? $0 : nil }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let length = Self.seconds(duration)!
        let tcpEndpoint = Endpoint(host: host, port: tcpPort, timeoutSeconds: timeout)
        let httpEndpoint = Endpoint(host: host, port: httpPort, timeoutSeconds: timeout)
        let meter = SoakMeter()
        let stop = StopFlag()

        let control = WebClient(endpoint: httpEndpoint)
        let firstSeq = try control.latestSeq()
        let stream = ChangeStream(endpoint: Endpoint(host: host, port: httpPort, timeoutSeconds: 60), after: firstSeq)
        let streamThread = Thread { stream.run() }
        streamThread.name = "soak-changes"
        streamThread.start()

        let connections = tcpConnections + httpConnections
        let perConnection = UInt64(Double(connections) / rate * 1e9)
        let workers = (0..<connections).map { index in
            SoakWorker(
                index: index, transport: index < tcpConnections ? .tcp : .http, seed: seed, populated: populated,
                tcp: tcpEndpoint, http: httpEndpoint, meter: meter, stop: stop,
                pacingNanos: perConnection, offsetNanos: perConnection * UInt64(index) / UInt64(connections)
            )
        }
        let finished = DispatchGroup()
        for worker in workers {
            finished.enter()
            let thread = Thread {
                worker.run()
                finished.leave()
            }
            thread.name = "soak-\(worker.index)"
            thread.start()
        }

        let started = MonotonicClock.nanoseconds()
        var tick = 1
        var serverGone = false
        while true {
            MonotonicClock.sleep(until: started + UInt64(Double(tick) * interval * 1e9))
            let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
            let sample = meter.take()
            let process = ProcessSample(pid: pid)
            if process == nil { serverGone = true }
            emit(SoakPoint(
                t: (elapsed * 10).rounded() / 10, rssBytes: process?.rssBytes ?? 0, fds: process?.fds ?? 0,
                requests: sample.requests, perSecond: (Double(sample.requests) / interval).rounded(),
                p50Micros: sample.p50, p99Micros: sample.p99, tcpP99Micros: sample.tcpP99,
                httpP99Micros: sample.httpP99, errors: sample.errors, acknowledgedChanges: sample.changes,
                streamedChanges: stream.state().events
            ))
            tick += 1
            if serverGone || elapsed + interval / 2 >= length { break }
        }
        stop.set()
        if finished.wait(timeout: .now() + .seconds(timeout + 10)) == .timedOut {
            meter.error("workers did not stop within \(timeout + 10) s")
        }

        // The stream must deliver every event up to the newest, one per acknowledged change, without a gap.
        var latest = firstSeq
        do { latest = try control.latestSeq() } catch { meter.error("reading latestSeq at the end: \(error)") }
        let streamed = stream.finish(through: latest, deadlineSeconds: 60)
        if streamed.lastSeq < latest {
            meter.error("the change stream stopped at seq \(streamed.lastSeq) of \(latest)")
        }

        // Every acknowledged change, read back.
        var verification = Verification()
        for worker in workers {
            for person in worker.persons {
                verification.check(person, with: control, meter: meter)
            }
        }
        let totals = meter.totals()
        let events = Int(latest - firstSeq)
        if events != totals.changes {
            meter.error("\(events) change events in the feed for \(totals.changes) acknowledged changes")
        }
        let summary = SoakSummary(
            seconds: (Double(MonotonicClock.nanoseconds() - started) / 1e8).rounded() / 10,
            requests: totals.requests, rate: rate, tcpConnections: tcpConnections,
            httpConnections: httpConnections, p50Micros: totals.p50, p99Micros: totals.p99,
            p999Micros: totals.p999, acknowledgedChanges: totals.changes, feedEvents: events,
            streamedEvents: streamed.events, streamGaps: streamed.gaps, streamReconnects: streamed.reconnects,
            personsChecked: verification.checked, erasedChecked: verification.erased, lost: verification.lost,
            errors: meter.totals().errors, serverExited: serverGone
        )
        emit(SummaryLine(summary: summary))
        if summary.errors > 0 || summary.lost > 0 || summary.streamGaps > 0 || serverGone {
            throw ExitCode.failure
        }
    }

    private func emit<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let line = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        // Unbuffered, so that a run that is watched (or killed) shows every point so far.
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

struct SoakPoint: Encodable {
    let t: Double
    let rssBytes: Int
    let fds: Int
    let requests: Int
    let perSecond: Double
    let p50Micros: Double
    let p99Micros: Double
    let tcpP99Micros: Double
    let httpP99Micros: Double
    let errors: Int
    let acknowledgedChanges: Int
    let streamedChanges: Int
}

struct SoakSummary: Encodable {
    let seconds: Double
    let requests: Int
    let rate: Double
    let tcpConnections: Int
    let httpConnections: Int
    let p50Micros: Double
    let p99Micros: Double
    let p999Micros: Double
    let acknowledgedChanges: Int
    let feedEvents: Int
    let streamedEvents: Int
    let streamGaps: Int
    let streamReconnects: Int
    let personsChecked: Int
    let erasedChecked: Int
    let lost: Int
    let errors: Int
    let serverExited: Bool
}

struct SummaryLine: Encodable {
    let summary: SoakSummary
}

/// The server's resident memory and open descriptors, or nil once the process is gone.
struct ProcessSample {
    let rssBytes: Int
    let fds: Int

    init?(pid: Int32) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ").compactMap({ Int($0) }).first,
            let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
        else { return nil }
        rssBytes = kilobytes * 1024
        fds = descriptors.count
    }
}

/// A run-wide stop signal for the workers.
/// `@unchecked Sendable`: `stopped` is read and written only under `lock`.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false

    func set() { lock.withLock { stopped = true } }
    var isSet: Bool { lock.withLock { stopped } }
}

enum Transport { case tcp, http }

/// Latencies of the current interval and of the whole run, and the run's counts.
/// `@unchecked Sendable`: every stored var is touched only under `lock`.
final class SoakMeter: @unchecked Sendable {
    struct Sample {
        var requests = 0
        var p50 = 0.0
        var p99 = 0.0
        var p999 = 0.0
        var tcpP99 = 0.0
        var httpP99 = 0.0
        var errors = 0
        var changes = 0
    }

    private let lock = NSLock()
    private var tcp = WorkerResult.makeHistogram()
    private var http = WorkerResult.makeHistogram()
    private var whole = WorkerResult.makeHistogram()
    private var requests = 0
    private var totalRequests = 0
    private var errors = 0
    private var changes = 0

    func record(_ transport: Transport, nanoseconds: UInt64) {
        let value = min(nanoseconds, WorkerResult.maxLatency)
        lock.withLock {
            switch transport {
            case .tcp: tcp.record(value)
            case .http: http.record(value)
            }
            whole.record(value)
            requests += 1
            totalRequests += 1
        }
    }

    func acknowledgedChange() { lock.withLock { changes += 1 } }

    /// Counts a failure and shows the first few on stderr. Messages name ids and seqs, not values.
    func error(_ message: String) {
        let shown = lock.withLock {
            errors += 1
            return errors <= 20
        }
        if shown { FileHandle.standardError.write(Data("soak: \(message)\n".utf8)) }
    }

    /// This interval's figures; starts the next interval.
    func take() -> Sample {
        lock.withLock {
            var merged = tcp
            merged.add(http)
            let sample = Sample(
                requests: requests, p50: Self.micros(merged, 50), p99: Self.micros(merged, 99),
                tcpP99: Self.micros(tcp, 99), httpP99: Self.micros(http, 99), errors: errors, changes: changes
            )
            tcp.reset()
            http.reset()
            requests = 0
            return sample
        }
    }

    func totals() -> Sample {
        lock.withLock {
            Sample(
                requests: totalRequests, p50: Self.micros(whole, 50), p99: Self.micros(whole, 99),
                p999: Self.micros(whole, 99.9), errors: errors, changes: changes
            )
        }
    }

    private static func micros(_ histogram: Histogram<UInt64>, _ percentile: Double) -> Double {
        guard histogram.totalCount > 0 else { return 0 }
        return (Double(histogram.valueAtPercentile(percentile)) / 100).rounded() / 10
    }
}

/// What one worker wrote and got acknowledged: a person's values and the primary that holds them.
struct Person {
    var emails: [String]
    let phone: String
    let primaryID: Int
    var erased = false
}

struct SoakError: Error, CustomStringConvertible {
    let description: String
}

/// SplitMix64: a small seeded generator, so that a run's mix can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One connection's paced requests. The mix, per request: 50% identify of a contact `populate` wrote (or of
/// one of ours when there are none), 30% look-up (half of them ours, checked), 17.5% identify of one of ours
/// (writes nothing, checked), 1% a new person, 0.5% a second email for one of ours; the last 1% reads one of
/// our contacts, except that HTTP erases one of our profiles in half of it.
/// `@unchecked Sendable`: `persons` is written by the worker's thread alone and read after it has finished.
final class SoakWorker: @unchecked Sendable {
    let index: Int
    let transport: Transport
    private let seed: Int
    private let populated: Int
    private let meter: SoakMeter
    private let stop: StopFlag
    private let pacingNanos: UInt64
    private let offsetNanos: UInt64
    private let line: LineClient?
    private let web: WebClient?
    private(set) var persons: [Person] = []
    private var random: SplitMix
    private var created = 0

    init(
        index: Int, transport: Transport, seed: Int, populated: Int, tcp: Endpoint, http: Endpoint,
        meter: SoakMeter, stop: StopFlag, pacingNanos: UInt64, offsetNanos: UInt64
    ) {
        self.index = index
        self.transport = transport
        self.seed = seed
        self.populated = populated
        self.meter = meter
        self.stop = stop
        self.pacingNanos = pacingNanos
        self.offsetNanos = offsetNanos
        line = transport == .tcp ? LineClient(endpoint: tcp) : nil
        web = transport == .http ? WebClient(endpoint: http) : nil
        random = SplitMix(state: UInt64(seed) &* 1_000_003 &+ UInt64(index))
    }

    func run() {
        let start = MonotonicClock.nanoseconds() + offsetNanos
        var n: UInt64 = 0
        while !stop.isSet {
            let due = start + n * pacingNanos
            let now = MonotonicClock.nanoseconds()
            // A worker more than a second behind (a stalled server) drops the requests it missed rather than
            // sending them in a burst: the load stays at its rate.
            if now > due + 1_000_000_000 { n = (now - start) / pacingNanos }
            MonotonicClock.sleep(until: start + n * pacingNanos)
            n += 1
            let sentAt = MonotonicClock.nanoseconds()
            do {
                try step()
                meter.record(transport, nanoseconds: MonotonicClock.nanoseconds() - sentAt)
            } catch {
                meter.error("worker \(index): \(error)")
            }
        }
    }

    private var ownEmailPrefix: String { "soak\(seed)-w\(index)-" }

    /// One request of the mix; throws when its answer is wrong or missing.
    private func step() throws {
        let roll = Double.random(in: 0..<1, using: &random)
        let live = persons.isEmpty ? nil : pickLive()
        switch roll {
        case ..<0.5:
            if populated > 0 {
                try identifyPopulated()
            } else if let live {
                try identifyOwn(live)
            } else {
                try createPerson()
            }
        case ..<0.8:
            if populated > 0, roll < 0.65 {
                try lookupPopulated()
            } else if !persons.isEmpty {
                try lookupOwn(Int.random(in: 0..<persons.count, using: &random))
            } else {
                try createPerson()
            }
        case ..<0.975:
            if let live { try identifyOwn(live) } else { try createPerson() }
        case ..<0.985:
            try createPerson()
        case ..<0.99:
            if let live { try addEmail(live) } else { try createPerson() }
        case ..<0.995 where transport == .http:
            if let live { try erase(live) } else { try createPerson() }
        default:
            if persons.isEmpty { try createPerson() } else { try readContact(Int.random(in: 0..<persons.count, using: &random)) }
        }
    }

    /// A person of ours not erased, or nil (few tries: erasures are rare, so one is almost always found).
    private func pickLive() -> Int? {
        for _ in 0..<4 {
            let candidate = Int.random(in: 0..<persons.count, using: &random)
            if !persons[candidate].erased { return candidate }
        }
        return nil
    }

    private func identify(email: String, phone: String) throws -> [String: Any] {
        let body = #"{"email":"\#(email)","phoneNumber":"\#(phone)"}"#
        let answer: [String: Any]
        if let line {
            answer = try line.request(#"{"email":"\#(email)","phoneNumber":"\#(phone)""#)
        } else {
            answer = try web!.expect(200, "POST", "/identify", body: body)
        }
        guard let contact = answer["contact"] as? [String: Any] else { throw SoakError(description: "no contact") }
        return contact
    }

    private func identifyPopulated() throws {
        // populate's person n has person{n}@example.com and +1555{n}; every fourth one (n % 4 == 3) is a second
        // email of the one before, so those are skipped: this identify matches one contact and writes nothing.
        var person = Int.random(in: 0..<populated, using: &random)
        if person % 4 == 3 { person -= 1 }
        let contact = try identify(email: "person\(person)@example.com", phone: "+1555\(person)")
        guard (contact["emails"] as? [String])?.contains("person\(person)@example.com") == true else {
            throw SoakError(description: "identify of populated person \(person): its email is not in the answer")
        }
    }

    private func lookupPopulated() throws {
        var person = Int.random(in: 0..<populated, using: &random)
        if person % 4 == 3 { person -= 1 }
        let profiles = try lookup(email: "person\(person)@example.com")
        guard profiles.count == 1 else {
            throw SoakError(description: "look-up of populated person \(person): \(profiles.count) profiles")
        }
    }

    private func lookup(email: String) throws -> [[String: Any]] {
        let answer: [String: Any]
        if let line {
            answer = try line.request(#"{"op":"lookup","email":"\#(email)""#)
        } else {
            answer = try web!.expect(200, "GET", "/profiles?email=\(email)")
        }
        guard let profiles = answer["profiles"] as? [[String: Any]] else {
            throw SoakError(description: "look-up: no profiles array")
        }
        return profiles
    }

    private func identifyOwn(_ index: Int) throws {
        let person = persons[index]
        let contact = try identify(email: person.emails[0], phone: person.phone)
        try Verification.expect(contact, holds: person, what: "identify of own person \(index)")
    }

    private func lookupOwn(_ index: Int) throws {
        let person = persons[index]
        let profiles = try lookup(email: person.emails[0])
        if person.erased {
            guard profiles.isEmpty else {
                throw SoakError(description: "look-up of erased primary \(person.primaryID): \(profiles.count) profiles")
            }
        } else {
            guard profiles.count == 1 else {
                throw SoakError(description: "look-up of primary \(person.primaryID): \(profiles.count) profiles")
            }
            try Verification.expect(profiles[0], holds: person, what: "look-up of own person \(index)")
        }
    }

    private func createPerson() throws {
        // Tagged with the seed and the worker, so that no other worker or run writes these values; the phone is
        // 9, the worker in 3 digits, the number in 9: 13 digits that populate's +1555... never takes.
        let email = "\(ownEmailPrefix)\(created)@example.com"
        let phone = "9" + Self.digits(index % 1000, 3) + Self.digits(created + (seed % 100) * 10_000_000, 9)
        created += 1
        let contact = try identify(email: email, phone: phone)
        guard let primary = contact["primaryContactId"] as? Int,
            contact["emails"] as? [String] == [email], contact["phoneNumbers"] as? [String] == [phone]
        else { throw SoakError(description: "a new person's answer is not a profile of its own") }
        persons.append(Person(emails: [email], phone: phone, primaryID: primary))
        meter.acknowledgedChange()
    }

    private static func digits(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    private func addEmail(_ index: Int) throws {
        let email = "\(ownEmailPrefix)\(created)@example.com"
        created += 1
        let contact = try identify(email: email, phone: persons[index].phone)
        var person = persons[index]
        person.emails.append(email)
        try Verification.expect(contact, holds: person, what: "second email of own person \(index)")
        persons[index] = person
        meter.acknowledgedChange()
    }

    private func erase(_ index: Int) throws {
        let answer = try web!.expect(200, "DELETE", "/profiles/\(persons[index].primaryID)")
        guard let erased = answer["erasedContactIds"] as? [Int], erased.count == persons[index].emails.count else {
            throw SoakError(description: "erasure of primary \(persons[index].primaryID): not every contact erased")
        }
        persons[index].erased = true
        meter.acknowledgedChange()
    }

    private func readContact(_ index: Int) throws {
        let person = persons[index]
        let record: [String: Any]?
        if let line {
            record = try line.request(#"{"op":"get","contactId":\#(person.primaryID)"#)["record"] as? [String: Any]
        } else {
            record = try web!.expect(200, "GET", "/contacts/\(person.primaryID)")
        }
        guard let record, record["id"] as? Int == person.primaryID else {
            throw SoakError(description: "get of contact \(person.primaryID): no such record")
        }
        guard (record["deletedAt"] is NSNull) != person.erased else {
            throw SoakError(description: "contact \(person.primaryID): erased is \(!person.erased), expected \(person.erased)")
        }
    }
}

/// The end of the run: every person read back over HTTP.
struct Verification {
    var checked = 0
    var erased = 0
    var lost = 0

    mutating func check(_ person: Person, with client: WebClient, meter: SoakMeter) {
        checked += 1
        do {
            let answer = try client.expect(200, "GET", "/profiles?email=\(person.emails[0])")
            let profiles = answer["profiles"] as? [[String: Any]] ?? []
            if person.erased {
                erased += 1
                let record = try client.expect(200, "GET", "/contacts/\(person.primaryID)")
                guard profiles.isEmpty, record["deletedAt"] is String else {
                    throw SoakError(description: "erased primary \(person.primaryID) is still there")
                }
            } else {
                guard profiles.count == 1 else {
                    throw SoakError(description: "primary \(person.primaryID): \(profiles.count) profiles")
                }
                try Self.expect(profiles[0], holds: person, what: "verification")
            }
        } catch {
            lost += 1
            meter.error("lost: \(error)")
        }
    }

    /// The profile is the person's: the same primary, every email written and the phone.
    static func expect(_ profile: [String: Any], holds person: Person, what: String) throws {
        guard profile["primaryContactId"] as? Int == person.primaryID else {
            throw SoakError(description: "\(what): primary \(profile["primaryContactId"] ?? "none"), not \(person.primaryID)")
        }
        let emails = Set(profile["emails"] as? [String] ?? [])
        guard emails.isSuperset(of: person.emails), (profile["phoneNumbers"] as? [String])?.contains(person.phone) == true
        else { throw SoakError(description: "\(what): primary \(person.primaryID) lacks a value it was given") }
    }
}

/// One line-protocol connection, one request at a time; reconnects after a failure.
final class LineClient {
    private let endpoint: Endpoint
    private var connection: Connection?
    private var input = InputBuffer()
    private var nextID = 1

    init(endpoint: Endpoint) { self.endpoint = endpoint }

    /// Sends `object` (a JSON object without its closing brace, to which the id is added) and returns the
    /// answer; throws on an error answer or a broken connection.
    func request(_ objectWithoutClose: String) throws -> [String: Any] {
        do {
            if connection == nil {
                connection = try Connection(endpoint)
                input = InputBuffer()
            }
            let id = nextID
            nextID += 1
            try connection!.writeAll(Array((objectWithoutClose + #","id":\#(id)}"# + "\n").utf8))
            let line = try input.readLine(from: connection!)
            let data = Data(input.storage[line])
            guard let answer = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw SoakError(description: "line answer is not a JSON object")
            }
            guard answer["id"] as? Int == id else { throw SoakError(description: "answer to another id than \(id)") }
            if let error = answer["error"] as? [String: Any] {
                throw SoakError(description: "line error \(error["status"] ?? "?"): \(error["detail"] ?? "")")
            }
            return answer
        } catch let error as ConnectionError {
            connection = nil
            throw error
        }
    }
}

/// One HTTP/1.1 keep-alive connection, one request at a time; reconnects after a failure or a close.
final class WebClient {
    private let endpoint: Endpoint
    private var connection: Connection?
    private var input = InputBuffer()
    private var body: [UInt8] = []

    init(endpoint: Endpoint) { self.endpoint = endpoint }

    /// The answer's JSON object; throws unless the status is `status`. A GET on a kept-alive connection that the
    /// server closed meanwhile (its idle timeout: the control connection waits out the whole run) is sent again
    /// once on a new connection; nothing else is retried.
    func expect(_ status: Int, _ method: String, _ target: String, body text: String? = nil) throws -> [String: Any] {
        let reused = connection != nil
        do {
            return try send(status, method, target, body: text)
        } catch is ConnectionError where reused && method == "GET" {
            return try send(status, method, target, body: text)
        }
    }

    private func send(_ status: Int, _ method: String, _ target: String, body text: String?) throws -> [String: Any] {
        do {
            if connection == nil {
                connection = try Connection(endpoint)
                input = InputBuffer()
            }
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(endpoint.host):\(endpoint.port)\r\n"
            if let text { head += "Content-Type: application/json\r\nContent-Length: \(text.utf8.count)\r\n" }
            try connection!.writeAll(Array((head + "\r\n" + (text ?? "")).utf8))
            let response = try HTTPWorker.readResponse(from: connection!, input: &input, body: &body)
            if response.closeAfter { connection = nil }
            guard response.status == status else {
                let excerpt = String(decoding: body.prefix(200), as: UTF8.self)
                throw SoakError(description: "\(method) \(target.split(separator: "?")[0]): \(response.status): \(excerpt)")
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
                throw SoakError(description: "\(method): the answer is not a JSON object")
            }
            return object
        } catch let error as ConnectionError {
            connection = nil
            throw error
        }
    }

    func latestSeq() throws -> Int {
        guard let latest = try expect(200, "GET", "/changes?limit=1")["latestSeq"] as? Int else {
            throw SoakError(description: "GET /changes: no latestSeq")
        }
        return latest
    }
}

/// Consumes `GET /changes` as Server-Sent Events from `after` on, checking that the ids come one by one.
/// Reconnects with `after` set to the last id seen if the stream ends.
/// `@unchecked Sendable`: the counters and the socket are touched only under `condition`.
final class ChangeStream: @unchecked Sendable {
    struct State {
        var lastSeq: Int
        var events = 0
        var gaps = 0
        var reconnects = 0
    }

    private let endpoint: Endpoint
    private let condition = NSCondition()
    private var current: State
    private var stopped = false
    private var socket: Int32 = -1

    init(endpoint: Endpoint, after: Int) {
        self.endpoint = endpoint
        current = State(lastSeq: after)
    }

    func state() -> State { condition.withLock { current } }

    func run() {
        var first = true
        while !condition.withLock({ stopped }) {
            if !first {
                condition.withLock { current.reconnects += 1 }
                Thread.sleep(forTimeInterval: 0.2)
            }
            first = false
            do { try follow() } catch {
                if !condition.withLock({ stopped }) {
                    FileHandle.standardError.write(Data("soak: change stream: \(error); reconnecting\n".utf8))
                }
            }
        }
    }

    /// Waits until the stream has delivered `seq` (or the deadline), then ends it.
    func finish(through seq: Int, deadlineSeconds: Double) -> State {
        let deadline = Date().addingTimeInterval(deadlineSeconds)
        condition.lock()
        defer { condition.unlock() }
        while current.lastSeq < seq, condition.wait(until: deadline) {}
        stopped = true
        if socket >= 0 { shutdown(socket, Int32(SHUT_RDWR)) }
        return current
    }

    private func follow() throws {
        let connection = try Connection(endpoint)
        condition.withLock { socket = connection.fd }
        defer { condition.withLock { socket = -1 } }
        let after = condition.withLock { current.lastSeq }
        let request = "GET /changes?after=\(after) HTTP/1.1\r\nHost: \(endpoint.host):\(endpoint.port)\r\n"
            + "Accept: text/event-stream\r\n\r\n"
        try connection.writeAll(Array(request.utf8))
        var input = InputBuffer()
        let status = try input.readLine(from: connection)
        guard String(decoding: input.storage[status], as: UTF8.self).contains(" 200") else {
            throw SoakError(description: "GET /changes stream: \(String(decoding: input.storage[status], as: UTF8.self))")
        }
        var chunked = false
        while true {
            let header = try input.readLine(from: connection)
            if header.isEmpty { break }
            let text = String(decoding: input.storage[header], as: UTF8.self).lowercased()
            if text.hasPrefix("transfer-encoding:"), text.contains("chunked") { chunked = true }
        }
        guard chunked else { throw SoakError(description: "the change stream is not chunked") }
        var pending: [UInt8] = []
        while true {
            let sizeLine = try input.readLine(from: connection)
            let sizeText = String(decoding: input.storage[sizeLine], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else {
                throw SoakError(description: "malformed chunk size in the change stream")
            }
            if size == 0 { throw SoakError(description: "the server ended the change stream") }
            let chunk = try input.read(size, from: connection)
            pending.append(contentsOf: input.storage[chunk])
            _ = try input.readLine(from: connection)
            consume(&pending)
        }
    }

    /// Takes the complete lines out of `pending` and counts each `id:` line.
    private func consume(_ pending: inout [UInt8]) {
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[start..<newline]
            start = newline + 1
            guard line.starts(with: "id: ".utf8),
                let seq = Int(String(decoding: line.dropFirst(4), as: UTF8.self).trimmingCharacters(in: .whitespaces))
            else { continue }
            condition.withLock {
                if seq != current.lastSeq + 1 { current.gaps += 1 }
                current.lastSeq = seq
                current.events += 1
                condition.broadcast()
            }
        }
        pending.removeFirst(start)
    }
}

import ArgumentParser
import Foundation
import IdentityGraph

/// Fills a new store with `--contacts` contacts as fast as the engine takes them: persons with an
/// email and a phone number, every fourth one with a second email on the same phone (a secondary).
/// Relaxed durability (one sync at the end) keeps a 10-million-contact store to minutes.
@main
struct Populate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Build a store of N contacts for benchmarks.")

    @Option(help: "The store to create; it must not exist.") var dataDir: String
    @Option(help: "How many contacts.") var contacts = 1_000_000
    @Flag(help: "Only open the existing store and report how long rebuilding the index took.") var reopen = false
    @Flag(help: "With --reopen: also print the bytes a contact costs in each structure of the index.")
    var breakdown = false
    @Flag(help: "Only run a bare cursor scan of the existing store's rows and report its time (the floor).")
    var scan = false

    func run() throws {
        if scan {
            let started = Date()
            let (rows, _) = try StoredContacts.scan(dataDirectory: dataDir)
            let seconds = Date().timeIntervalSince(started)
            print(#"{"rows":\#(rows),"seconds":\#(seconds)}"#)
            return
        }
        if reopen {
            let residentBefore = residentBytes()
            let started = Date()
            let engine = try IdentityEngine(dataDirectory: dataDir)
            let seconds = Date().timeIntervalSince(started)
            let resident = residentBytes() - residentBefore
            let contacts = blocking { await engine.statistics.contacts }
            print("opened \(dataDir): \(contacts) contacts in " + String(format: "%.3f s", seconds)
                + " (\(engine.indexOrigin)); resident memory +\(resident / max(contacts, 1)) B a contact")
            if breakdown {
                // Where the index's bytes go, per contact, structure by structure.
                let parts = blocking { await engine.indexMemory }
                let total = parts.reduce(0) { $0 + $1.bytes }
                for (structure, bytes) in parts + [("total", total)] {
                    let name = structure.padding(toLength: 16, withPad: " ", startingAt: 0)
                    print("  " + name + String(format: "%7.2f B", Double(bytes) / Double(max(contacts, 1))))
                }
            }
            let closing = Date()
            engine.close()
            print("closed in " + String(format: "%.3f s", Date().timeIntervalSince(closing)))
            return
        }
        guard !FileManager.default.fileExists(atPath: dataDir) else {
            throw ValidationError("\(dataDir) exists; populate writes a new store")
        }
        let started = Date()
        let engine = try IdentityEngine(
            dataDirectory: dataDir, options: .init(initialMapSize: max(64 << 20, contacts * 256), durable: false)
        )
        var written = 0
        var person = 0
        // Batches of 1,000 in one engine call each, at most 16 outstanding, so the open batch stays small.
        let slots = DispatchSemaphore(value: 16)
        while written < contacts {
            let count = min(1000, contacts - written)
            var requests: [IdentityEngine.BatchedRequest] = []
            for _ in 0..<count {
                let wantSecond = person % 4 == 3 && written + 1 < contacts
                let email = wantSecond ? "person\(person - 1).second@example.com" : "person\(person)@example.com"
                let phone = "+1555" + String(wantSecond ? person - 1 : person)
                requests.append(.identify(try IdentifyRequest(email: email, phoneNumber: phone), dryRun: false, head: JSONWriter()))
                person += 1
                written += 1
            }
            slots.wait()
            engine.submit(requests) { answers in
                for case .failed(let error) in answers { fatalError("populate failed: \(error)") }
                slots.signal()
            }
        }
        for _ in 0..<16 { slots.wait() }
        for _ in 0..<16 { slots.signal() }
        let statistics = blocking { await engine.statistics }
        engine.close()
        let seconds = Date().timeIntervalSince(started)
        print("populated \(dataDir): \(statistics.contacts) contacts, \(statistics.profiles) profiles in "
            + String(format: "%.1f s", seconds))
    }
}

/// Runs `body` on the cooperative pool and blocks this (non-async) thread for its result.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    Task {
        box.value = await body()
        box.done.signal()
    }
    box.done.wait()
    return box.value!
}

/// `@unchecked Sendable`: `value` is written once before `done` is signalled, and read after waiting for it.
final class ResultBox<T>: @unchecked Sendable {
    var value: T?
    let done = DispatchSemaphore(value: 0)
}

/// This process's resident memory, from `/proc/self/status` (0 where there is none).
func residentBytes() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
}

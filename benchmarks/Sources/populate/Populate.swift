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

    func run() throws {
        if reopen {
            let started = Date()
            let engine = try IdentityEngine(dataDirectory: dataDir)
            let seconds = Date().timeIntervalSince(started)
            print("opened \(dataDir): \(engine.statistics.contacts) contacts in " + String(format: "%.3f s", seconds))
            engine.close()
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
        let window = 20_000
        while written < contacts {
            // Keep at most `window` requests in flight so the open batch stays small.
            let done = DispatchSemaphore(value: 0)
            let count = min(window, contacts - written)
            let remaining = Protected(count)
            for _ in 0..<count {
                let wantSecond = person % 4 == 3 && written + 1 < contacts
                let email = wantSecond ? "person\(person - 1).second@example.com" : "person\(person)@example.com"
                let phone = "+1555" + String(wantSecond ? person - 1 : person)
                let request = try IdentifyRequest(email: email, phoneNumber: phone)
                engine.identify(request) { result in
                    if case .failure(let error) = result { fatalError("populate failed: \(error)") }
                    if remaining.decrement() == 0 { done.signal() }
                }
                person += 1
                written += 1
            }
            done.wait()
        }
        engine.close()
        let statistics = engine.statistics
        let seconds = Date().timeIntervalSince(started)
        print("populated \(dataDir): \(statistics.contacts) contacts, \(statistics.profiles) profiles in "
            + String(format: "%.1f s", seconds))
    }
}

/// A counter shared with the engine's completions, which run on its writer thread.
/// `@unchecked Sendable`: `count` is only touched under `lock`.
final class Protected: @unchecked Sendable {
    private let lock = NSLock()
    private var count: Int

    init(_ count: Int) { self.count = count }

    func decrement() -> Int {
        lock.lock()
        defer { lock.unlock() }
        count -= 1
        return count
    }
}

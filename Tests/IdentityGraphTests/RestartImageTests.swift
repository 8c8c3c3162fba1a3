import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// The index image (``IndexImage``): a clean stop saves the index, the next start loads it instead of
/// rebuilding, and every doubt about the image (none, stale, truncated, corrupt, another format) means
/// a rebuild with its reason. After each, the engine answers exactly as before.
@Suite struct RestartImageTests {
    /// What an engine answers about a store, compared before and after a restart.
    struct Answers: Equatable {
        var contents: StoreContents
        var profiles: [Profile?]
        var lookups: [[UInt8]]
        var statistics: IdentityEngine.Statistics
    }

    /// A store with merges (links), an unmerge with a keep-apart rule, and erasures; returns the open engine.
    private func buildStore(at path: String) async throws -> IdentityEngine {
        let engine = try IdentityEngine(dataDirectory: path)
        var requests = RequestGenerator(seed: 17, emails: 300, phones: 200)
        for _ in 0..<1500 { _ = try await engine.identify(requests.next()) }
        let links = try await engine.contents().links
        try #require(links.count >= 2, "the workload made too few merges to test with")
        _ = try await engine.unmerge(email: links[0].email, phoneNumber: links[0].phoneNumber, keepApart: true)
        _ = try await engine.erase(.contact(5))
        _ = try await engine.erase(.values(email: "e7@x.io", phoneNumber: nil))
        return engine
    }

    private func answers(of engine: IdentityEngine) async throws -> Answers {
        let contents = try await engine.contents()
        var profiles: [Profile?] = []
        for id in stride(from: 1, through: contents.contacts.count, by: 7) {
            profiles.append(try await engine.profile(containing: id))
        }
        var lookups: [[UInt8]] = []
        for index in stride(from: 0, to: 300, by: 11) {
            lookups.append(try await engine.lookupResponseBody(email: "e\(index)@x.io", phoneNumber: "\(index % 200)"))
        }
        var statistics = await engine.statistics
        statistics.commits = 0  // counted since the engine opened
        return Answers(contents: contents, profiles: profiles, lookups: lookups, statistics: statistics)
    }

    /// The store's NDJSON export (rows, links and rules), read from disk.
    private func export(_ path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        _ = try BulkExport.run(dataDirectory: path, format: .ndjson) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The same follow-up requests on two engines that hold the same store must change it the same
    /// way: the answers, and the rows apart from the clock's timestamps.
    private func expectSameFollowUp(_ first: IdentityEngine, _ second: IdentityEngine) async throws {
        var requests = RequestGenerator(seed: 99, emails: 400, phones: 260)
        for _ in 0..<400 {
            let request = requests.next()
            #expect(try await first.identify(request) == second.identify(request))
        }
        for engine in [first, second] {
            if let link = try await engine.contents().links.last {
                _ = try await engine.unmerge(email: link.email, phoneNumber: link.phoneNumber, keepApart: false)
            }
            _ = try await engine.erase(.profile(11))
        }
        func shape(_ contents: StoreContents) -> [String] {
            contents.contacts.map { "\($0.id) \($0.email ?? "-") \($0.phoneNumber ?? "-") \($0.linkedId ?? 0) \($0.deletedAt == nil)" }
                + contents.links.map { "link \($0.email) \($0.phoneNumber)" }
                + contents.keepApart.map { "rule \($0.email) \($0.phoneNumber)" }
        }
        #expect(shape(try await first.contents()) == shape(try await second.contents()))
    }

    private func copyStore(_ source: String, to destination: String, withImage: Bool) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: destination, withIntermediateDirectories: true)
        try files.copyItem(atPath: source + "/data.mdb", toPath: destination + "/data.mdb")
        if withImage {
            try files.copyItem(atPath: IndexImage.path(in: source), toPath: IndexImage.path(in: destination))
        }
    }

    @Test("a clean stop saves the index; the next start loads it, answers the same, and goes on as a rebuild would")
    func cleanStopTakesTheFastPath() async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try await buildStore(at: store)
        let before = try await answers(of: engine)
        #expect(InvariantCheck(contents: before.contents).isValid)
        let flushFailure = engine.close()
        #expect(flushFailure == nil)
        let saved = try #require(engine.savedIndexImage).get()
        #expect(saved > 0)
        #expect(FileManager.default.fileExists(atPath: IndexImage.path(in: store)))
        let exported = try export(store)
        // A second copy of the same store without its image: the rebuild to compare with.
        try copyStore(store, to: directory.subdirectory("rebuilt"), withImage: false)

        let reopened = try IdentityEngine(dataDirectory: store)
        #expect(reopened.indexOrigin == .image)
        let after = try await answers(of: reopened)
        #expect(after == before)
        #expect(InvariantCheck(contents: after.contents).isValid)

        let rebuilt = try IdentityEngine(dataDirectory: directory.subdirectory("rebuilt"))
        #expect(rebuilt.indexOrigin == .rebuilt(.noImage))
        #expect(try await answers(of: rebuilt) == before)
        try await expectSameFollowUp(reopened, rebuilt)
        let contents = try await reopened.contents()
        reopened.close()
        rebuilt.close()
        #expect(try StoredContacts.readContents(dataDirectory: store) == contents)
        #expect(InvariantCheck(contents: contents).isValid)
        #expect(try export(store) != exported, "the follow-up requests changed nothing")
    }

    /// `image` in memory as a join receives it: in parts of `partBytes`, in `order`, each reported as it is
    /// written, read into a graph on a thread of its own meanwhile (as the join's download does). Parts
    /// left out of `order` never come: the image is then ended. The memory the graph has read is given
    /// back in steps of pages of `releaseUnit` bytes (a join's are huge pages).
    private func arriving(_ image: [UInt8], partBytes: Int, order: [Int], releaseUnit: Int = 2 << 20) -> IndexImageBytes {
        let bytes = IndexImageBytes(count: image.count, partBytes: partBytes, releaseUnit: releaseUnit)
        let decoded = DispatchSemaphore(value: 0)
        Thread {
            bytes.decode()
            decoded.signal()
        }.start()
        for part in order {
            let range = (part * partBytes)..<min((part + 1) * partBytes, image.count)
            image.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: bytes.bytes[range])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
            }
            bytes.arrived(part: part)
        }
        bytes.end()
        decoded.wait()
        return bytes
    }

    @Test("an image in memory, arriving in parts out of order and read behind them, opens the engine as its file does; cut short, damaged or older than the store, the engine rebuilds")
    func imageInMemory() async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try await buildStore(at: store)
        let before = try await answers(of: engine)
        #expect(engine.close() == nil)
        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: IndexImage.path(in: store))))
        let partBytes = 4096
        let parts = (image.count + partBytes - 1) / partBytes
        try #require(parts > 8, "the image is too small to arrive in many parts")
        var random = SeededGenerator(seed: 5)
        let shuffled = Array(0..<parts).shuffled(using: &random)

        let joined = directory.subdirectory("joined")
        try copyStore(store, to: joined, withImage: false)
        let opened = try IdentityEngine(
            dataDirectory: joined, options: .init(image: arriving(image, partBytes: partBytes, order: shuffled))
        )
        #expect(opened.indexOrigin == .image)
        #expect(try await answers(of: opened) == before)

        // The memory the graph has read is given back as it goes, and none it still had to read.
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let releasing = arriving(image, partBytes: partBytes, order: shuffled, releaseUnit: pageSize)
        let released = releasing.released
        let again = directory.subdirectory("released")
        try copyStore(store, to: again, withImage: false)
        let reopened = try IdentityEngine(dataDirectory: again, options: .init(image: releasing))
        #expect(released >= image.count / 2, "the memory read was not given back")
        #expect(reopened.indexOrigin == .image)
        #expect(try await answers(of: reopened) == before)
        reopened.close()

        // The same image, of the store before these writes: stale.
        _ = try await opened.identify(IdentifyRequest(email: "after@x.io", phoneNumber: "1"))
        #expect(opened.close() == nil)
        try FileManager.default.removeItem(atPath: IndexImage.path(in: joined))
        let moved = try IdentityEngine(
            dataDirectory: joined, options: .init(image: arriving(image, partBytes: partBytes, order: shuffled))
        )
        #expect(moved.indexOrigin == .rebuilt(.stale))
        moved.close()

        var damaged = image
        damaged[image.count / 2] ^= 0x10
        for (bytes, reason) in [
            (arriving(image, partBytes: partBytes, order: shuffled.filter { $0 != parts / 3 }), IndexRebuildReason.truncated),
            (arriving(damaged, partBytes: partBytes, order: shuffled), .corrupt),
        ] {
            let copy = directory.subdirectory("copy-\(reason.rawValue)")
            try copyStore(store, to: copy, withImage: false)
            let rebuilt = try IdentityEngine(dataDirectory: copy, options: .init(image: bytes))
            #expect(rebuilt.indexOrigin == .rebuilt(reason))
            #expect(try await answers(of: rebuilt) == before)
            rebuilt.close()
        }
    }

    @Test("a start with no clean stop rebuilds: the first write deletes the image, so no old image outlives it")
    func writeDeletesTheImage() async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try await buildStore(at: store)
        engine.close()

        let reopened = try IdentityEngine(dataDirectory: store)
        defer { reopened.close() }
        #expect(reopened.indexOrigin == .image)
        #expect(FileManager.default.fileExists(atPath: IndexImage.path(in: store)))
        _ = try await reopened.identify(.json(#"{"email":"after@x.io","phoneNumber":"12"}"#))
        #expect(!FileManager.default.fileExists(atPath: IndexImage.path(in: store)))
        let answered = try await answers(of: reopened)

        // What `kill -9` leaves now: the store as committed, and no image.
        let crashed = directory.subdirectory("crashed")
        try copyStore(store, to: crashed, withImage: false)
        let restarted = try IdentityEngine(dataDirectory: crashed)
        defer { restarted.close() }
        #expect(restarted.indexOrigin == .rebuilt(.noImage))
        let after = try await answers(of: restarted)
        #expect(after == answered)
        #expect(InvariantCheck(contents: after.contents).isValid)
    }

    @Test("an image saved before the store moved on is stale: detected, rebuilt, and the answers are the store's")
    func staleImageIsRebuilt() async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try await buildStore(at: store)
        engine.close()
        let old = directory.subdirectory("old.image")
        try FileManager.default.copyItem(atPath: IndexImage.path(in: store), toPath: old)

        let moved = try IdentityEngine(dataDirectory: store)
        _ = try await moved.identify(.json(#"{"email":"e1@x.io","phoneNumber":"199"}"#))
        _ = try await moved.identify(.json(#"{"email":"later@x.io"}"#))
        let current = try await answers(of: moved)
        moved.close()
        let exported = try export(store)
        // The old image put back, as a crash between a write and the image's deletion could not leave
        // it, but a restored backup or a copied directory could.
        try FileManager.default.removeItem(atPath: IndexImage.path(in: store))
        try FileManager.default.copyItem(atPath: old, toPath: IndexImage.path(in: store))

        let restarted = try IdentityEngine(dataDirectory: store)
        #expect(restarted.indexOrigin == .rebuilt(.stale))
        let after = try await answers(of: restarted)
        restarted.close()
        #expect(after == current)
        #expect(InvariantCheck(contents: after.contents).isValid)
        #expect(try export(store) == exported)
    }

    /// Damage done to a saved image, and the reason its start must give.
    struct Damage: Sendable, CustomStringConvertible {
        var description: String
        var reason: IndexRebuildReason
        var apply: @Sendable (inout [UInt8]) -> Void
    }

    static let damages: [Damage] = [
        Damage(description: "cut in the middle", reason: .truncated) { $0.removeLast($0.count / 2) },
        Damage(description: "cut by one byte", reason: .truncated) { $0.removeLast() },
        Damage(description: "cut inside the header", reason: .truncated) { $0.removeLast($0.count - 40) },
        Damage(description: "a flipped bit in the body", reason: .corrupt) { $0[$0.count * 2 / 3] ^= 0x10 },
        Damage(description: "a flipped bit in the stamp", reason: .corrupt) { $0[24] ^= 0x01 },
        Damage(description: "a byte too many", reason: .corrupt) { $0.append(0) },
        Damage(description: "another format version", reason: .otherFormat) { $0[8] &+= 1 },
        Damage(description: "not an image at all", reason: .otherFormat) { $0 = Array(String(repeating: "text\n", count: 40).utf8) },
    ]

    @Test("a damaged image is detected and rebuilt, with the reason, and the answers are unchanged", arguments: damages)
    func damagedImageIsRebuilt(damage: Damage) async throws {
        let directory = TemporaryDirectory()
        let store = directory.subdirectory("store")
        let engine = try await buildStore(at: store)
        let before = try await answers(of: engine)
        engine.close()
        let exported = try export(store)
        let path = IndexImage.path(in: store)
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        damage.apply(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let restarted = try IdentityEngine(dataDirectory: store)
        #expect(restarted.indexOrigin == .rebuilt(damage.reason))
        let after = try await answers(of: restarted)
        restarted.close()
        #expect(after == before)
        #expect(InvariantCheck(contents: after.contents).isValid)
        #expect(try export(store) == exported)
        // The clean stop of the rebuilt engine saved a good image again.
        let again = try IdentityEngine(dataDirectory: store)
        #expect(again.indexOrigin == .image)
        #expect(try await answers(of: again) == before)
        again.close()
    }

    @Test("a stop after a failed commit saves no image, since the index holds changes the store does not")
    func failedCommitSavesNoImage() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        _ = try await engine.identify(.json(#"{"email":"a@x.io","phoneNumber":"1"}"#))
        engine.injectWriteFailures(1_000)
        await #expect(throws: EngineError.self) {
            _ = try await engine.identify(.json(#"{"email":"b@x.io","phoneNumber":"2"}"#))
        }
        engine.close()
        #expect(engine.savedIndexImage == nil)
        #expect(!FileManager.default.fileExists(atPath: IndexImage.path(in: directory.path)))

        let restarted = try IdentityEngine(dataDirectory: directory.path)
        defer { restarted.close() }
        #expect(restarted.indexOrigin == .rebuilt(.noImage))
        #expect(try await restarted.allContacts().map(\.email) == ["a@x.io"])
    }

    @Test("an empty store saves and loads its image too")
    func emptyStoreRoundTrips() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        #expect(engine.indexOrigin == .rebuilt(.noImage))
        engine.close()
        let restarted = try IdentityEngine(dataDirectory: directory.path)
        defer { restarted.close() }
        #expect(restarted.indexOrigin == .image)
        #expect(try await restarted.identify(.json(#"{"email":"a@x.io"}"#)).primaryContactId == 1)
    }
}

import Foundation
import Testing

/// The fuzzer's committed inputs, replayed under `swift test` through the fuzzer's own checks
/// (``RequestPathChecks``), so that an input that once found a bug keeps being tried without a
/// fuzzing build.
@Suite struct FuzzCorpusTests {
    /// `Tests/Fuzz/corpus` (the seeds) and `Tests/Fuzz/crashes` (minimized findings), when present.
    static let inputs: [URL] = {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz")
        return ["corpus", "crashes"].flatMap { folder -> [URL] in
            let directory = fuzz.appendingPathComponent(folder)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return names.sorted().map { directory.appendingPathComponent($0) }
        }
    }()

    @Test("every input of the fuzzer's corpus passes the fuzzer's checks")
    func replayCorpus() async throws {
        #expect(Self.inputs.count >= 20, "the corpus was not found beside the tests: \(Self.inputs)")
        // One engine for the whole run, as in the fuzzer: later inputs meet the contacts of earlier ones.
        let checks = RequestPathChecks()
        for input in Self.inputs {
            let bytes = [UInt8](try Data(contentsOf: input))
            do {
                if let request = try bytes.withUnsafeBytes({ try checks.checkDecoding($0) }) {
                    try await checks.checkIdentify(request)
                }
            } catch {
                Issue.record("\(input.lastPathComponent): \(error)")
            }
        }
    }
}

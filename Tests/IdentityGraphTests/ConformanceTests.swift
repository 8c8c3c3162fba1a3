import ConformanceSupport
import Testing
@testable import IdentityGraph

/// The shared scenarios of `../shared/conformance/identify.json`, against the engine: once in
/// memory and once on a store, with the final rows read back both live and after a reopen.
@Suite struct ConformanceTests {
    @Test("conformance scenario, in memory", arguments: ConformanceScenario.all)
    func scenarioInMemory(_ scenario: ConformanceScenario) async throws {
        let engine = IdentityEngine()
        try await run(scenario, on: engine)
        #expect(try await engine.allContacts().map(ConformanceScenario.Row.init) == scenario.contactsAfter)
    }

    @Test("conformance scenario, on a store, rows kept across a reopen", arguments: ConformanceScenario.all)
    func scenarioOnStore(_ scenario: ConformanceScenario) async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        try await run(scenario, on: engine)
        let live = try await engine.allContacts()
        #expect(live.map(ConformanceScenario.Row.init) == scenario.contactsAfter)
        engine.close()

        let reopened = try IdentityEngine(dataDirectory: directory.path)
        #expect(try await reopened.allContacts() == live)
        reopened.close()
        #expect(InvariantCheck(contacts: live).isValid)
    }

    private func run(_ scenario: ConformanceScenario, on engine: IdentityEngine) async throws {
        for (index, step) in scenario.steps.enumerated() {
            let before = try await engine.allContacts()
            let request: IdentifyRequest
            do {
                request = try IdentifyRequest(json: step.body)
            } catch {
                #expect(step.status == 400, "step \(index) was rejected: \(error.detail)")
                #expect(try await engine.allContacts() == before, "a rejected step \(index) changed rows")
                continue
            }
            #expect(step.status == 200, "step \(index) should have been rejected")
            let profile = try await engine.identify(request)
            #expect(profile == step.response, "step \(index)")
        }
    }
}

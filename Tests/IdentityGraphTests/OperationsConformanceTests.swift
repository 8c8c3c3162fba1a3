import ConformanceSupport
import Foundation
import Testing
@testable import IdentityGraph

/// The shared scenarios of `../shared/conformance/operations.json` against the engine: in memory,
/// and on a store that is closed and reopened after every step, so that every answer also holds
/// across a restart. Rejected steps must change nothing.
@Suite struct OperationsConformanceTests {
    @Test("operations scenario, in memory", arguments: OperationScenario.all)
    func inMemory(_ scenario: OperationScenario) async throws {
        let guards = try Self.guards(scenario)
        var engine = IdentityEngine(options: .init(guards: guards))
        try await run(scenario) { engine }
        let contents = try await engine.contents()
        engine = IdentityEngine()
        Self.expectFinal(contents, scenario)
    }

    @Test("operations scenario, on a store reopened after every step", arguments: OperationScenario.all)
    func acrossRestarts(_ scenario: OperationScenario) async throws {
        let directory = TemporaryDirectory()
        let options = IdentityEngine.Options(guards: try Self.guards(scenario))
        let holder = EngineHolder(try IdentityEngine(dataDirectory: directory.path, options: options))
        try await run(scenario) {
            holder.engine.close()
            holder.engine = try IdentityEngine(dataDirectory: directory.path, options: options)
            return holder.engine
        }
        let contents = try await holder.engine.contents()
        holder.engine.close()
        Self.expectFinal(contents, scenario)
        let stored = try StoredContacts.readContents(dataDirectory: directory.path)
        #expect(stored == contents)
        let check = InvariantCheck(contents: stored)
        #expect(check.isValid, "\(check.violations)")
    }

    /// Runs every step on the engine that `next` gives (a new one per step, for the restarts).
    private func run(_ scenario: OperationScenario, next: () throws -> IdentityEngine) async throws {
        for (index, step) in scenario.steps.enumerated() {
            let engine = try next()
            let before = try await engine.contents()
            let seqBefore = (await engine.latestSeq)
            let (status, body) = await Self.perform(step, on: engine)
            #expect(status == step.status, "step \(index) (\(step.op)): \(String(decoding: body, as: UTF8.self))")
            if let expected = step.response, status == 200 {
                #expect(OperationScenario.canonicalJSON(bytes: body) == expected, "step \(index) (\(step.op))")
            }
            if step.status != 200 || ["dryRun", "lookup", "profile", "explain", "changes"].contains(step.op) {
                #expect(try await engine.contents() == before, "step \(index) (\(step.op)) changed the store")
                #expect((await engine.latestSeq) == seqBefore, "step \(index) (\(step.op)) recorded a change")
            }
        }
    }

    private static func expectFinal(_ contents: StoreContents, _ scenario: OperationScenario) {
        #expect(contents.contacts.map(OperationScenario.Row.init) == scenario.contactsAfter)
        #expect(
            contents.links.map { OperationScenario.Link(email: $0.email, phoneNumber: $0.phoneNumber) }
                == scenario.linksAfter
        )
        #expect(InvariantCheck(contents: contents).isValid)
    }

    static func guards(_ scenario: OperationScenario) throws -> Guards {
        Guards(
            blocklist: try Blocklist(parsing: scenario.blocklistText, source: "scenario"),
            limits: ProfileLimits(maxEmails: scenario.maxEmailsPerProfile, maxPhones: scenario.maxPhonesPerProfile)
        )
    }

    /// One step on the engine: the status and body the HTTP route answers with.
    static func perform(_ step: OperationScenario.Step, on engine: IdentityEngine) async -> (Int, [UInt8]) {
        do {
            switch step.op {
            case "identify", "dryRun":
                let request = try IdentifyRequest(json: step.requestBody)
                return (200, try await engine.identifyResponseBody(request, dryRun: step.op == "dryRun"))
            case "lookup":
                let request = try IdentifyRequest(json: step.requestBody)
                return (200, try await engine.lookupResponseBody(email: request.email, phoneNumber: request.phoneNumber))
            case "profile":
                return (200, try await engine.profileResponseBody(containing: step.integer("contactId")!))
            case "explain":
                return (200, try await engine.explain(from: step.integer("from")!, to: step.integer("to")!).json)
            case "eraseContact":
                return (200, try await engine.erase(.contact(step.integer("contactId")!)))
            case "eraseProfile":
                return (200, try await engine.erase(.profile(step.integer("contactId")!)))
            case "eraseValues":
                let request = try IdentifyRequest(json: step.requestBody)
                return (200, try await engine.erase(.values(email: request.email, phoneNumber: request.phoneNumber)))
            case "unmerge":
                let keepApart = (step.object["request"] as? [String: Any])?["keepApart"] as? Bool ?? false
                let request = try IdentifyRequest(json: step.requestBody)
                guard let email = request.email, let phone = request.phoneNumber else { return (400, []) }
                return (200, try await engine.unmerge(email: email, phoneNumber: phone, keepApart: keepApart))
            case "changes":
                let page = try await engine.changes(after: UInt64(step.integer("after") ?? 0), limit: 1000)
                return (200, page.json)
            default:
                Issue.record("unknown op \(step.op)")
                return (0, [])
            }
        } catch let error as RequestError {
            return (400, Array(error.detail.utf8))
        } catch let error as EngineError {
            let status = switch error {
            case .blocked: 422
            case .notFound: 404
            case .erased: 410
            case .storage: 503
            }
            return (status, Array(error.description.utf8))
        } catch {
            return (500, Array("\(error)".utf8))
        }
    }
}

/// The engine of a test that replaces it at every restart.
private final class EngineHolder: @unchecked Sendable {
    // @unchecked: used by one test task at a time.
    var engine: IdentityEngine

    init(_ engine: IdentityEngine) {
        self.engine = engine
    }
}

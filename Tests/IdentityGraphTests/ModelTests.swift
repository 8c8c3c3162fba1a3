import Testing
@testable import IdentityGraph

/// The engine against ``ReferenceModel``: random request sequences, compared after every request.
@Suite struct ModelTests {
    @Test("random requests give the reference model's answers and rows", arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func matchesReferenceInMemory(seed: UInt64) async throws {
        let engine = IdentityEngine()
        var model = ReferenceModel()
        var requests = RequestGenerator(seed: seed, emails: 6 + Int(seed % 3), phones: 5 + Int(seed % 4))
        for step in 0..<400 {
            let request = requests.next()
            let expected = model.identify(email: request.email, phoneNumber: request.phoneNumber)
            let profile = try await engine.identify(request)
            #expect(profile == expected, "seed \(seed), step \(step): \(request)")
            let rows = try await engine.allContacts()
            #expect(rows.map(ReferenceModel.Row.init) == model.rows, "seed \(seed), step \(step): \(request)")
            if profile != expected { return }
        }
        let check = InvariantCheck(contacts: try await engine.allContacts())
        #expect(check.isValid, "\(check.violations)")
    }

    @Test("random requests on a durable store match the reference model")
    func matchesReferenceOnStore() async throws {
        let directory = TemporaryDirectory()
        let engine = try IdentityEngine(dataDirectory: directory.path)
        var model = ReferenceModel()
        var requests = RequestGenerator(seed: 42)
        for step in 0..<300 {
            let request = requests.next()
            let expected = model.identify(email: request.email, phoneNumber: request.phoneNumber)
            #expect(try await engine.identify(request) == expected, "step \(step): \(request)")
        }
        engine.close()
        let stored = try StoredContacts.read(dataDirectory: directory.path)
        #expect(stored.map(ReferenceModel.Row.init) == model.rows)
        #expect(InvariantCheck(contacts: stored).isValid)
    }
}

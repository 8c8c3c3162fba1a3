import ArgumentParser
import IdentityGraph

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify a store against the invariants of the contact records.",
        discussion: "Prints a summary and every violation; exits 1 when any is found. Safe on a live store."
    )

    @Option(help: "The store to verify (IDENTITY_GRAPH_DATA_DIR).")
    var dataDir: String?

    func run() throws {
        let directory = try Setting.dataDirectory(dataDir, required: true)
        try refuseUnfinishedJoin(directory)
        let contents: StoreContents
        do {
            contents = try StoredContacts.readContents(dataDirectory: directory)
        } catch {
            throw CommandFailure(message: error.message)
        }
        let check = InvariantCheck(contents: contents)
        print(check.summary)
        for violation in check.violations { print("violation: \(violation)") }
        if !check.isValid { throw CommandFailure(message: "\(check.violations.count) violation(s) in \(directory)") }
    }
}

import ArgumentParser
import IdentityGraph

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent, compacted copy of a store, live or stopped.",
        discussion: "The copy holds exactly what was committed when it began; `serve --data-dir OUT` starts from it."
    )

    @Option(help: "The store to copy (IDENTITY_GRAPH_DATA_DIR).")
    var dataDir: String?

    @Option(help: "The directory to write; it must not exist or be empty (IDENTITY_GRAPH_SNAPSHOT_OUT).")
    var out: String?

    func run() throws {
        let source = try Setting.dataDirectory(dataDir, required: true)
        try refuseUnfinishedJoin(source)
        guard let output = Setting.value(out, "IDENTITY_GRAPH_SNAPSHOT_OUT") else {
            throw ValidationError("--out (or IDENTITY_GRAPH_SNAPSHOT_OUT) is required")
        }
        do {
            try StoredContacts.snapshot(dataDirectory: source, to: output)
        } catch {
            throw CommandFailure(message: error.message)
        }
        print("snapshot of \(source) written to \(output)")
    }
}

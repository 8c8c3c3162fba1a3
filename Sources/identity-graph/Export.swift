import ArgumentParser
import Foundation
import IdentityGraph

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write every Contact record of a store, live or stopped, as NDJSON or CSV.",
        discussion: """
            Records in id order, tombstones included; in NDJSON then one {"link": {...}} line per link and \
            one {"keepApart": {...}} line per keep-apart rule, oldest first. CSV holds the records only. \
            The export reads one consistent moment of the store and never blocks a server writing to it.
            """
    )

    @Option(help: "The store to export (IDENTITY_GRAPH_DATA_DIR).")
    var dataDir: String?

    @Option(help: "ndjson (default) or csv (IDENTITY_GRAPH_EXPORT_FORMAT).")
    var format: String?

    @Option(help: "The file to write; default: standard output (IDENTITY_GRAPH_EXPORT_OUT).")
    var out: String?

    func run() throws {
        let directory = try Setting.dataDirectory(dataDir, required: true)
        try refuseUnfinishedJoin(directory)
        let format = try Setting.format(format, "IDENTITY_GRAPH_EXPORT_FORMAT") ?? .ndjson
        let path = Setting.value(out, "IDENTITY_GRAPH_EXPORT_OUT")
        var descriptor: Int32 = 1
        if let path {
            descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw CommandFailure(message: "--out: cannot create \(path): \(String(cString: strerror(errno)))")
            }
        }
        defer { if path != nil { close(descriptor) } }
        do {
            let counts = try BulkExport.run(dataDirectory: directory, format: format) { chunk in
                var offset = 0
                while offset < chunk.count {
                    let written = write(descriptor, chunk.baseAddress! + offset, chunk.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw CommandFailure(message: "cannot write the export: \(String(cString: strerror(errno)))")
                    }
                    offset += written
                }
            }
            if path != nil {
                FileHandle.standardError.write(Data(
                    "exported \(counts.contacts) contacts, \(counts.links) links and \(counts.keepApartRules) keep-apart rules\n".utf8
                ))
            }
        } catch let failure as CommandFailure {
            throw failure
        } catch let error as StorageError {
            throw CommandFailure(message: error.message)
        } catch {
            throw CommandFailure(message: "\(error)")
        }
    }
}

import Foundation
import IdentityGraph
import Logging

/// `--log-format json`: one JSON object a line on standard error, for log collectors:
/// `{"time":"...","level":"info","label":"identity-graph","message":"...","dataDir":"..."}`, with
/// the metadata as members of their own. Lines are written whole, under a lock, so concurrent log
/// calls never interleave.
struct JSONLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String

    private static let output = NSLock()

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var writer = JSONWriter()
        let now = Date().timeIntervalSince1970
        writer.raw("{\"time\":")
        writer.string(Timestamp(millisecondsSince1970: Int64(now * 1000)).rfc3339)
        writer.raw(",\"level\":")
        writer.string(event.level.rawValue)
        writer.raw(",\"label\":")
        writer.string(label)
        writer.raw(",\"message\":")
        writer.string(event.message.description)
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) where !["time", "level", "label", "message"].contains(key) {
            writer.raw(",")
            writer.string(key)
            writer.raw(":")
            writer.string(value.description)
        }
        writer.raw(",\"source\":")
        writer.string(event.source)
        writer.raw("}\n")
        Self.output.lock()
        defer { Self.output.unlock() }
        FileHandle.standardError.write(Data(writer.bytes))
    }
}

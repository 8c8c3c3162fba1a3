import Foundation
import IdentityGraph
import Logging

/// `--log-format json`: one JSON object a line on standard error, for log collectors:
/// `{"time":"...","level":"info","label":"identity-graph","message":"...","dataDir":"...","contacts":0}`,
/// with the metadata as members of their own: numbers and booleans given as such
/// (`.stringConvertible(42)`) are JSON numbers and booleans, so that collectors can compare them.
/// Lines are written whole, under a lock, so concurrent log calls never interleave.
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
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let bytes = Self.line(
            level: event.level, label: label, message: event.message.description, metadata: merged, source: event.source
        )
        Self.output.lock()
        defer { Self.output.unlock() }
        FileHandle.standardError.write(Data(bytes))
    }

    /// One log line as JSON, and its line break.
    static func line(
        level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, source: String
    ) -> [UInt8] {
        var writer = JSONWriter()
        let now = Date().timeIntervalSince1970
        writer.raw("{\"time\":")
        writer.string(Timestamp(millisecondsSince1970: Int64(now * 1000)).rfc3339)
        writer.raw(",\"level\":")
        writer.string(level.rawValue)
        writer.raw(",\"label\":")
        writer.string(label)
        writer.raw(",\"message\":")
        writer.string(message)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key })
        where !["time", "level", "label", "message", "source"].contains(key) {
            writer.raw(",")
            writer.string(key)
            writer.raw(":")
            write(value, into: &writer)
        }
        writer.raw(",\"source\":")
        writer.string(source)
        writer.raw("}\n")
        return writer.bytes
    }

    private static func write(_ value: Logger.Metadata.Value, into writer: inout JSONWriter) {
        switch value {
        case .string(let text):
            writer.string(text)
        case .stringConvertible(let item):
            switch item {
            case is any BinaryInteger, is Bool:
                writer.raw(item.description.utf8)
            case let number as Double where number.isFinite:
                writer.raw(number.description.utf8)
            default:
                writer.string(item.description)
            }
        case .array(let items):
            writer.raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { writer.raw(",") }
                write(item, into: &writer)
            }
            writer.raw("]")
        case .dictionary(let members):
            writer.raw("{")
            for (index, (key, item)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { writer.raw(",") }
                writer.string(key)
                writer.raw(":")
                write(item, into: &writer)
            }
            writer.raw("}")
        }
    }
}

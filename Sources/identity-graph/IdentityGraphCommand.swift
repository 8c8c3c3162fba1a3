import ArgumentParser
import Foundation
import IdentityGraph
import IdentityServer
import Logging
import Synchronization

/// `identity-graph`: the one executable (SPEC.md section 8).
///
/// Exit codes: 0 success, 2 usage error, 1 any other failure, with a one-line message on stderr.
@main
struct IdentityGraphCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity-graph",
        abstract: "A fast, self-hosted identity resolution server.",
        version: BuildInfo.version,
        subcommands: [Serve.self, Snapshot.self, Check.self, Import.self, Export.self]
    )

    static func main() async {
        // Errors found while parsing come before `serve` reads its settings: look for the log format now.
        FatalReport.useJSON(Self.asksForJSONLogs(Array(CommandLine.arguments.dropFirst())))
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            FatalReport.write(failure.message)
            Foundation.exit(1)
        } catch let refusal as ClusterRefusal {
            FatalReport.write(refusal.message)
            Foundation.exit(2)
        } catch let failure as StorageError {
            // A store that cannot be opened or locked (another writer holds it): not a usage error.
            FatalReport.write(failure.message)
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(Self.helpText(fullMessage(for: error)))
                Foundation.exit(0)
            }
            if code == .validationFailure {
                FatalReport.write(message(for: error), hint: "Run '\(Self.invokedCommand) --help' for usage.")
                Foundation.exit(2)
            }
            if error is ExitCode { Foundation.exit(code.rawValue == 0 ? 0 : 1) }
            FatalReport.write(message(for: error))
            Foundation.exit(1)
        }
    }

    /// Whether `serve` is asked for `--log-format json`, by its flag or its variable (the flag wins).
    static func asksForJSONLogs(_ arguments: [String]) -> Bool {
        guard arguments.first == "serve" else { return false }
        var format = ProcessInfo.processInfo.environment["IDENTITY_GRAPH_LOG_FORMAT"]
        for (index, argument) in arguments.enumerated() {
            if argument == "--log-format", index + 1 < arguments.count { format = arguments[index + 1] }
            if argument.hasPrefix("--log-format=") { format = String(argument.dropFirst("--log-format=".count)) }
        }
        return format == "json"
    }

    /// `identity-graph` and the subcommand the arguments name, if any, so that a usage error points
    /// at the help that lists the flag (`identity-graph serve --help`).
    static var invokedCommand: String {
        let names = configuration.subcommands.map { $0.configuration.commandName ?? "\($0)".lowercased() }
        if let first = CommandLine.arguments.dropFirst().first, names.contains(first) { return "identity-graph \(first)" }
        return "identity-graph"
    }

    /// Options a command requires, though the parser takes them as optional because a variable
    /// (`IDENTITY_GRAPH_DATA_DIR`, ...) may give them instead: its usage line shows them without brackets.
    static let requiredOptions = [
        "check": ["data-dir"], "export": ["data-dir"], "import": ["data-dir"], "snapshot": ["data-dir", "out"],
    ]

    static func helpText(_ text: String) -> String {
        let usage = text.split(separator: "\n").first { $0.hasPrefix("USAGE: ") } ?? ""
        guard let (_, options) = requiredOptions.first(where: { usage.hasPrefix("USAGE: identity-graph \($0.key) ") })
        else { return text }
        var text = text
        for option in options {
            text = text.replacingOccurrences(of: "[--\(option) <\(option)>]", with: "--\(option) <\(option)>")
        }
        return text
    }
}

/// How a fatal error reaches stderr: one line, `identity-graph: MESSAGE`, or with `--log-format json`
/// (once `serve` has read it) one JSON object like every other log line, so that a log collector
/// sees why the server never started.
enum FatalReport {
    private static let json = Atomic<Bool>(false)

    static func useJSON(_ on: Bool) {
        json.store(on, ordering: .relaxed)
    }

    static func write(_ message: String, hint: String? = nil) {
        if json.load(ordering: .relaxed) {
            var metadata: Logger.Metadata = [:]
            if let hint { metadata["hint"] = .string(hint) }
            FileHandle.standardError.write(Data(JSONLogHandler.line(
                level: .critical, label: "identity-graph", message: message, metadata: metadata, source: "identity-graph"
            )))
            return
        }
        var text = "identity-graph: \(message)\n"
        if let hint { text += hint + "\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// A failure to report in one line and exit 1.
struct CommandFailure: Error {
    var message: String
}

/// A store that a cluster join installed but never synced to disk (its marker is there; see
/// `LocalCopy.unfinishedJoinMarker`) may have holes after a crash: no command reads or writes it as it
/// is. `serve --cluster` throws it away and joins again.
func refuseUnfinishedJoin(_ directory: String) throws {
    guard LocalCopy.hasUnfinishedJoin(directory) else { return }
    throw CommandFailure(
        message: "\(directory) holds a checkpoint that a cluster join installed but never synced to disk (the "
            + "server stopped first): start `serve --cluster` on it to join again, or empty the directory"
    )
}

/// Cluster mode refuses to start (SPEC.md section 17: a schema of another format, a node name a live
/// server holds): a configuration to fix, reported in one line with exit 2.
struct ClusterRefusal: Error {
    var message: String
}

/// Flag → environment variable → default, for every option (SPEC.md section 8).
enum Setting {
    static func value(_ flag: String?, _ variable: String) -> String? {
        flag ?? ProcessInfo.processInfo.environment[variable].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A flag given on the command line, or its variable set to `1`, `true` or `yes`.
    static func flag(_ flag: Bool, _ variable: String) -> Bool {
        flag || ["1", "true", "yes"].contains(value(nil, variable) ?? "")
    }

    /// An integer from its flag, else its variable, else `fallback`. A message about a bad value
    /// names the flag when the value came from the flag, and the variable when it came from there.
    static func integer(
        _ flag: Int?, _ variable: String, default fallback: Int, range: ClosedRange<Int>, flag name: String
    ) throws -> Int {
        if let flag {
            guard range.contains(flag) else { throw ValidationError("\(name): \(flag) is not in \(range)") }
            return flag
        }
        guard let text = ProcessInfo.processInfo.environment[variable], !text.isEmpty else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw ValidationError("\(variable) must be a whole number in \(range), not \"\(text)\"")
        }
        return value
    }

    /// A text setting and the name to use in a message about it: the flag's when the flag gave it,
    /// the variable's when the variable did.
    static func named(_ flag: String?, _ name: String, _ variable: String) -> (value: String, name: String)? {
        if let flag { return (flag, name) }
        return value(nil, variable).map { ($0, variable) }
    }

    /// `--format` of import and export (`ndjson` or `csv`), or `nil` when neither it nor its variable is set.
    static func format(_ flag: String?, _ variable: String) throws -> BulkImport.Format? {
        guard let (name, source) = named(flag, "--format", variable) else { return nil }
        guard let format = BulkImport.Format(rawValue: name) else {
            throw ValidationError("\(source) must be ndjson or csv, not '\(name)'")
        }
        return format
    }

    static func dataDirectory(_ flag: String?, required: Bool) throws -> String {
        if let path = value(flag, "IDENTITY_GRAPH_DATA_DIR") { return path }
        if required { throw ValidationError("--data-dir (or IDENTITY_GRAPH_DATA_DIR) is required") }
        return defaultDataDirectory
    }

    /// `serve` without a data directory uses `.identity-graph` in the current directory (ignored by
    /// git in this repository), so that a first run needs no set-up.
    static let defaultDataDirectory = ".identity-graph"
}

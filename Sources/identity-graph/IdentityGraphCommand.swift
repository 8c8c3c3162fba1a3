import ArgumentParser
import Foundation
import IdentityGraph

/// `identity-graph`: the one executable (SPEC.md section 8).
///
/// Exit codes: 0 success, 2 usage error, 1 any other failure, with a one-line message on stderr.
@main
struct IdentityGraphCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity-graph",
        abstract: "A fast, self-hosted identity resolution server.",
        subcommands: [Serve.self, Snapshot.self, Check.self, Import.self, Export.self]
    )

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("identity-graph: \(failure.message)\n".utf8))
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            if code == .validationFailure {
                FileHandle.standardError.write(Data("identity-graph: \(message(for: error))\n".utf8))
                FileHandle.standardError.write(Data("Run 'identity-graph --help' for usage.\n".utf8))
                Foundation.exit(2)
            }
            if error is ExitCode { Foundation.exit(code.rawValue == 0 ? 0 : 1) }
            FileHandle.standardError.write(Data("identity-graph: \(message(for: error))\n".utf8))
            Foundation.exit(1)
        }
    }
}

/// A failure to report in one line and exit 1.
struct CommandFailure: Error {
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

    static func integer(
        _ flag: Int?, _ variable: String, default fallback: Int, range: ClosedRange<Int>, flag name: String? = nil
    ) throws -> Int {
        if let flag {
            guard range.contains(flag) else {
                throw ValidationError("\(name ?? variable): \(flag) is not in \(range)")
            }
            return flag
        }
        guard let text = ProcessInfo.processInfo.environment[variable], !text.isEmpty else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw ValidationError("\(variable) must be a whole number in \(range), not \"\(text)\"")
        }
        return value
    }

    /// `--format` of import and export (`ndjson` or `csv`), or `nil` when neither it nor its variable is set.
    static func format(_ flag: String?, _ variable: String) throws -> BulkImport.Format? {
        guard let name = value(flag, variable) else { return nil }
        guard let format = BulkImport.Format(rawValue: name) else {
            throw ValidationError("--format must be ndjson or csv, not '\(name)'")
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

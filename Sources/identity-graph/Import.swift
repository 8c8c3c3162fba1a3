import ArgumentParser
import Foundation
import IdentityGraph
import Synchronization

/// Set by SIGINT; the import polls it between records.
private let interrupted = Atomic<Bool>(false)

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply identify to every record of NDJSON or CSV files, on a store no server has open.",
        discussion: """
            Files are applied in the order given, records in file order, guards included. A bad record is \
            skipped and reported on stderr as FILE:LINE: REASON (never its values); --rejects writes each \
            one, with its text, as an NDJSON object. Every --batch-size records are committed at once, so \
            an interrupted import leaves a valid store holding a prefix of the input. SIGINT stops at the \
            next record, commits, prints the summary and exits 130; a second SIGINT exits at once.

            Restore: Contact records (an export, or the Bitespeed Contact table as CSV) imported into an \
            empty store are kept exactly, ids and timestamps included, in any row order. Every file is read \
            and checked first; any problem is reported as FILE:LINE: REASON, nothing is written, and the \
            exit code is 1.
            """
    )

    @Option(help: "The store's directory, created when missing (IDENTITY_GRAPH_DATA_DIR).")
    var dataDir: String?

    @Option(help: "ndjson or csv for every file; default: by extension (.ndjson, .jsonl, .csv) (IDENTITY_GRAPH_IMPORT_FORMAT).")
    var format: String?

    @Option(help: "Write every bad record to this file, as NDJSON {file, line, reason, record} (IDENTITY_GRAPH_IMPORT_REJECTS).")
    var rejects: String?

    @Flag(help: "Stop at the first bad record and exit 1; what came before it stays committed (IDENTITY_GRAPH_IMPORT_STRICT=1).")
    var strict = false

    @Option(help: "Records per commit (IDENTITY_GRAPH_IMPORT_BATCH_SIZE; default 50000).")
    var batchSize: Int?

    @Option(help: "The CSV column that holds the email, instead of `email` (IDENTITY_GRAPH_IMPORT_EMAIL_COLUMN).")
    var emailColumn: String?

    @Option(help: "The CSV column that holds the phone number, instead of `phoneNumber` (IDENTITY_GRAPH_IMPORT_PHONE_COLUMN).")
    var phoneColumn: String?

    @OptionGroup var guardOptions: GuardOptions

    @Argument(help: "The files to import, in order.")
    var files: [String] = []

    func run() throws {
        let directory = try Setting.dataDirectory(dataDir, required: true)
        try refuseUnfinishedJoin(directory)
        guard !files.isEmpty else { throw ValidationError("name at least one file to import") }
        let format = try Setting.format(self.format, "IDENTITY_GRAPH_IMPORT_FORMAT")
        let batch = try Setting.integer(
            batchSize, "IDENTITY_GRAPH_IMPORT_BATCH_SIZE", default: 50_000, range: 1...10_000_000, flag: "--batch-size"
        )
        let guards = try guardOptions.resolve().guards
        let options = BulkImport.Options(
            guards: guards,
            batchSize: batch, strict: Setting.flag(strict, "IDENTITY_GRAPH_IMPORT_STRICT"), format: format,
            emailColumn: Setting.value(emailColumn, "IDENTITY_GRAPH_IMPORT_EMAIL_COLUMN"),
            phoneColumn: Setting.value(phoneColumn, "IDENTITY_GRAPH_IMPORT_PHONE_COLUMN")
        )
        // One writer per store (SPEC.md section 8): refused at once while a server or an import holds it.
        let writerLock = try WriterLock(directory: directory)
        defer { writerLock.release() }
        var rejectsFile: BufferedFile?
        if let path = Setting.value(rejects, "IDENTITY_GRAPH_IMPORT_REJECTS") {
            guard let file = BufferedFile(path: path) else {
                throw CommandFailure(message: "--rejects: cannot create \(path): \(String(cString: strerror(errno)))")
            }
            rejectsFile = file
        }
        let progress = ProgressLine(enabled: isatty(2) == 1)
        signal(SIGINT) { _ in
            // A second SIGINT does not wait for the commit: the store is still valid (LMDB).
            if interrupted.exchange(true, ordering: .relaxed) { _exit(130) }
        }
        // A parent may start us with SIGINT blocked (the mask is inherited); the import runs on this
        // thread, so let the signal reach it here.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)

        let summary: BulkImport.Summary
        do {
            summary = try BulkImport.run(
                dataDirectory: directory, files: files, options: options,
                onReject: { rejection in
                    progress.clear()
                    // The reason only: the record's values are personal data and stay out of the log.
                    Self.standardError("identity-graph: \(rejection.file):\(rejection.line): \(rejection.reason)\n")
                    rejectsFile?.write(Self.json(rejection))
                },
                onProgress: { progress.show($0) },
                shouldStop: { interrupted.load(ordering: .relaxed) }
            )
        } catch {
            progress.clear()
            rejectsFile?.close()
            if error.isUsage { throw ValidationError(error.message) }
            throw CommandFailure(message: error.message)
        }
        progress.clear()
        rejectsFile?.close()
        let rate = summary.seconds > 0 ? Int(Double(summary.records) / summary.seconds) : summary.records
        let timing = "\(summary.records) records from \(summary.files) file(s) in "
            + String(format: "%.2f", summary.seconds) + " s (\(rate) records/s)"
        if summary.restored {
            if summary.outcome == .completed {
                Self.standardError(
                    "restored \(timing) into an empty store: \(summary.contacts) contacts kept with their ids and "
                        + "timestamps, in \(summary.profiles) profiles; \(summary.links) links"
                        + (summary.derivedLinks > 0 ? " (\(summary.derivedLinks) derived from the rows)" : "")
                        + ", \(summary.keepApartRules) keep-apart rules"
                        + (summary.idsFilled > 0 ? "; \(summary.idsFilled) ids no record held kept as erased contacts" : "")
                        + "\n"
                )
            }
        } else {
            Self.standardError(
                "imported \(timing): "
                    + "\(summary.contactsCreated) contacts created, \(summary.merged) merged, "
                    + "\(summary.rejected) rejected, \(summary.erasedSkipped) erased records skipped, "
                    + "\(summary.keepApartRules) keep-apart rules; the store holds \(summary.contacts) contacts "
                    + "in \(summary.profiles) profiles\n"
            )
        }
        for unused in summary.unusedColumns {
            Self.standardError(
                "\(unused.file): columns not used: " + unused.columns.map { "\"\($0)\"" }.joined(separator: ", ") + "\n"
            )
        }
        switch summary.outcome {
        case .completed:
            if summary.outOfOrder > 0 {
                throw CommandFailure(
                    message: "\(summary.outOfOrder) Contact record(s) came after a larger id and were skipped: into a "
                        + "store that is not empty, records must be sorted by id (or restore them into an empty store)"
                )
            }
        case .refused:
            throw CommandFailure(
                message: "restore refused: \(summary.rejected) problem(s), reported above; nothing was written"
            )
        case .interrupted:
            Self.standardError(
                summary.restored
                    ? "identity-graph: interrupted; a restore writes everything at its end, so nothing was written\n"
                    : "identity-graph: interrupted; every record before the stop is committed\n"
            )
            Foundation.exit(130)
        case .stoppedAtBadRecord(let rejection):
            throw CommandFailure(
                message: "--strict: stopped at \(rejection.file):\(rejection.line); every record before it is committed"
            )
        }
    }

    static func standardError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// `{"file":...,"line":...,"reason":...,"record":...}` and a line break; `record` when it was kept.
    static func json(_ rejection: BulkImport.Rejection) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"file\":")
        writer.string(rejection.file)
        writer.raw(",\"line\":")
        writer.integer(rejection.line)
        writer.raw(",\"reason\":")
        writer.string(rejection.reason)
        if let record = rejection.record {
            writer.raw(",\"record\":")
            writer.string(record)
        }
        writer.raw("}\n")
        return writer.bytes
    }
}

/// The progress line of an import on a terminal: redrawn in place on stderr, at most four times a
/// second (the import calls it no more often).
final class ProgressLine {
    private let enabled: Bool
    private var shown = false

    init(enabled: Bool) {
        self.enabled = enabled
    }

    func show(_ progress: BulkImport.Progress) {
        guard enabled else { return }
        let rate = progress.seconds > 0 ? Double(progress.records) / progress.seconds : 0
        var text = "\(progress.records) records, \(Int(rate)) records/s"
        if progress.totalBytes > 0 {
            let fraction = min(1, Double(progress.bytesRead) / Double(progress.totalBytes))
            text += String(format: ", %.1f%% read", fraction * 100)
            if fraction > 0 {
                let left = Int(progress.seconds / fraction - progress.seconds)
                text += String(format: ", %d:%02d left", left / 60, left % 60)
            }
        }
        Import.standardError("\r" + text + "\u{1B}[K")
        shown = true
    }

    /// Wipes the line, so that a report or the summary starts on a clean one.
    func clear() {
        guard enabled, shown else { return }
        Import.standardError("\r\u{1B}[K")
        shown = false
    }
}

/// A file written through a buffer (for reports that may have many lines).
final class BufferedFile {
    private let handle: FileHandle
    private var buffer: [UInt8] = []

    init?(path: String) {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else { return nil }
        self.handle = handle
    }

    func write(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        handle.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    func close() {
        flush()
        try? handle.close()
    }
}

import Foundation

/// Bulk import (SPEC.md section 16): applies identify, guards included, to every record of a list
/// of files, in order, on a store that no server has open.
///
/// It drives the synchronous engine core (``EngineState``) and the store directly on the caller's
/// thread, without the ``IdentityEngine`` actor: every `batchSize` records the changes gathered so
/// far are committed in one LMDB transaction (one fsync). Whatever stops it (the end, `--strict`,
/// an interruption, `kill -9`) leaves the store valid and holding a prefix of the input: the
/// records up to the last committed batch, or up to the stop when it stops on its own.
///
/// What it reads, line by line (NDJSON) or record by record (CSV, with a header row):
/// - identify bodies (`{"email": ..., "phoneNumber": ...}`; CSV columns `email` and `phoneNumber`);
/// - Contact records, as `export` writes them or as the Bitespeed `Contact` table exported to CSV
///   (a CSV header with `id` and `linkedId` or `deletedAt`). Into an empty store they are restored
///   (see ``Restore``). Otherwise erased ones are skipped, the others are applied as identify of
///   their values; they must come in ascending `id` order within a file (one out of order is a bad
///   record, counted in ``Summary/outOfOrder``). At the end of the file, contacts the
///   file puts in one profile that the store still holds apart are joined by a link (identify of an
///   email of one part with a phone number of another, parts taken oldest first);
/// - `{"link": {...}}` lines, applied as identify of their values, and `{"keepApart": {...}}` lines,
///   whose rules are recorded at the end of their file, after those joins (a rule recorded earlier
///   would refuse joins the exporting store had made); each needs both values carried by live
///   contacts.
///
/// A bad record is skipped and handed to `onReject`; with ``Options/strict`` the import stops there.
public struct BulkImport {
    public enum Format: String, Sendable, CaseIterable {
        case ndjson
        case csv

        /// The format a file's name implies: `.ndjson` or `.jsonl`, `.csv`; `nil` for any other.
        public init?(path: String) {
            let name = path.lowercased()
            if name.hasSuffix(".ndjson") || name.hasSuffix(".jsonl") {
                self = .ndjson
            } else if name.hasSuffix(".csv") {
                self = .csv
            } else {
                return nil
            }
        }
    }

    public struct Options: Sendable {
        public var guards: Guards
        /// Records per commit.
        public var batchSize: Int
        /// Stop at the first bad record.
        public var strict: Bool
        /// The format of every file; `nil`: by each file's extension.
        public var format: Format?
        /// The longest line (NDJSON) or record (CSV) accepted, in bytes.
        public var maximumLineBytes: Int
        /// The CSV columns that hold the email and the phone number, instead of `email` and `phoneNumber`.
        public var emailColumn: String?
        public var phoneColumn: String?

        public init(
            guards: Guards = .none, batchSize: Int = 50_000, strict: Bool = false, format: Format? = nil,
            maximumLineBytes: Int = 1 << 20, emailColumn: String? = nil, phoneColumn: String? = nil
        ) {
            self.guards = guards
            self.batchSize = max(1, batchSize)
            self.strict = strict
            self.format = format
            self.maximumLineBytes = maximumLineBytes
            self.emailColumn = emailColumn
            self.phoneColumn = phoneColumn
        }

        var columns: CSVColumns.Choice { CSVColumns.Choice(email: emailColumn, phone: phoneColumn) }
    }

    /// A bad record: where it is and why. `record` is its text when it could be kept (valid UTF-8,
    /// within the size limit); reports meant for logs should leave it out, since it is personal data.
    public struct Rejection: Sendable, Hashable {
        public var file: String
        public var line: Int
        public var reason: String
        public var record: String?
    }

    /// How far the import is, for a progress display.
    public struct Progress: Sendable {
        public var records: Int
        public var bytesRead: Int
        public var totalBytes: Int
        public var seconds: Double
    }

    /// How an import ended.
    public enum Outcome: Sendable, Hashable {
        /// Every record of every file was read.
        case completed
        /// ``Options/strict``: stopped at this bad record; everything before it is committed.
        case stoppedAtBadRecord(Rejection)
        /// `shouldStop` asked to stop; everything read until then is committed (nothing, in a restore).
        case interrupted
        /// A restore found problems (each handed to `onReject`) and wrote nothing.
        case refused
    }

    /// The columns of a CSV file that the import did not read.
    public struct UnusedColumns: Sendable, Hashable {
        public var file: String
        public var columns: [String]
    }

    public struct Summary: Sendable {
        public var outcome: Outcome = .completed
        public var files = 0
        /// Records read (blank lines are not records), bad ones included.
        public var records = 0
        public var contactsCreated = 0
        /// Profiles merged into others (by identify, link lines and the joins of Contact records).
        public var merged = 0
        public var rejected = 0
        /// Erased Contact records, which are skipped.
        public var erasedSkipped = 0
        public var keepApartRules = 0
        public var seconds = 0.0
        /// The store afterwards.
        public var contacts = 0
        public var profiles = 0
        /// Whether this was a restore into an empty store (SPEC.md section 16): then `contacts` rows
        /// were written as the files hold them.
        public var restored = false
        /// A restore: its links (`derivedLinks` of them derived from the rows, when the files hold
        /// none), and the ids no record held, kept out of use as erased contacts.
        public var links = 0
        public var derivedLinks = 0
        public var idsFilled = 0
        /// Contact records skipped because they came after a larger id (an import into a store that
        /// is not empty applies them in id order). Not a clean run: the command exits 1.
        public var outOfOrder = 0
        /// For each CSV file with columns it did not read, those columns.
        public var unusedColumns: [UnusedColumns] = []
    }

    /// A failure that stops the import before or while writing; the store keeps what was committed.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var message: String
        /// A usage problem (a file whose format cannot be told), as opposed to a failure of a file or
        /// of the store.
        public var isUsage: Bool
        public var description: String { message }
    }

    /// Imports `files` into the store in `dataDirectory` (created when missing). Every file is opened,
    /// and every CSV header read, before anything is written. `shouldStop` is polled between records.
    ///
    /// When the store is empty (no contact and no change event, ever) and the first file that holds a
    /// record begins with a Contact record, this is a restore (see ``Restore``): every file is read as Contact records,
    /// links and keep-apart rules, and kept exactly; a problem anywhere writes nothing.
    public static func run(
        dataDirectory: String, files: [String], options: Options = Options(),
        onReject: @escaping (Rejection) -> Void = { _ in },
        onProgress: @escaping (Progress) -> Void = { _ in },
        shouldStop: @escaping () -> Bool = { false }
    ) throws(Failure) -> Summary {
        let start = Self.now()
        var plans: [(path: String, format: Format, size: Int)] = []
        var unused: [UnusedColumns] = []
        for path in files {
            guard let format = options.format ?? Format(path: path) else {
                throw Failure(
                    message: "\(path): cannot tell its format from its name; name it .ndjson, .jsonl or .csv, "
                        + "or pass --format", isUsage: true
                )
            }
            var status = stat()
            guard stat(path, &status) == 0 else {
                throw Failure(message: "\(path): \(String(cString: strerror(errno)))", isUsage: false)
            }
            guard (status.st_mode & S_IFMT) == S_IFREG || (status.st_mode & S_IFMT) == S_IFIFO else {
                throw Failure(message: "\(path): not a regular file", isUsage: false)
            }
            do {
                var reader = try LineReader(path: path, maximumLineBytes: options.maximumLineBytes)
                if format == .csv, (status.st_mode & S_IFMT) == S_IFREG {
                    let columns = try CSVColumns(
                        reading: &reader, path: path, maximumRecordBytes: options.maximumLineBytes, choice: options.columns
                    )
                    if !columns.unused.isEmpty { unused.append(UnusedColumns(file: path, columns: columns.unused)) }
                }
            } catch {
                throw Failure(message: error.message, isUsage: error.isUsage)
            }
            plans.append((path, format, Int(status.st_size)))
        }
        var importer = try Importer(dataDirectory: dataDirectory, options: options)
        importer.onReject = onReject
        importer.onProgress = onProgress
        importer.shouldStop = shouldStop
        importer.totalBytes = plans.reduce(0) { $0 + $1.size }
        importer.startTime = start
        importer.summary.unusedColumns = unused
        do {
            var restore = false
            // The first file that holds a record decides.
            for plan in plans where importer.isEmptyStore {
                // Looking would consume a pipe's first line: a pipe is imported, never restored.
                var status = stat()
                guard stat(plan.path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { break }
                guard let startsWithRecords = try Restore.startsWithContactRecords(
                    plan.path, format: plan.format, options: options
                ) else { continue }
                restore = startsWithRecords
                break
            }
            if restore {
                try importer.restore(plans)
                var summary = importer.summary
                summary.seconds = Self.now() - start
                return summary
            }
            for plan in plans {
                importer.summary.files += 1
                switch plan.format {
                case .ndjson: try importer.importNDJSON(plan.path)
                case .csv: try importer.importCSV(plan.path)
                }
                importer.bytesBefore += plan.size
                if importer.stopped { break }
            }
            try importer.finish()
        } catch let error as LineReader.ReadError {
            try? importer.commit()
            throw Failure(message: error.message, isUsage: error.isUsage)
        } catch let error as StorageError {
            throw Failure(message: error.message, isUsage: false)
        } catch {
            throw Failure(message: "\(error)", isUsage: false)
        }
        var summary = importer.summary
        summary.seconds = Self.now() - start
        return summary
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

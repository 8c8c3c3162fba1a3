#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One writer per store (SPEC.md section 8): `serve` and `import` hold an exclusive `flock` on
/// `DIR/writer.lock` for as long as they run. LMDB itself lets any number of processes write one
/// environment, and two engines that each keep their own graph in memory then hand out the same
/// ids (`MDB_KEYEXIST` on every later write); this lock keeps the second one out instead.
///
/// The file holds the holder's pid, so that the refused process can name it. It is never deleted:
/// removing a lock file while another process waits to open it would let two processes lock two
/// different files. The kernel releases the lock when the holder exits, however it exits, so a
/// crashed server never leaves a stale lock behind. Readers (`snapshot`, `check`, `export`) do not
/// take it.
public final class WriterLock: Sendable {
    /// The lock file's name inside the data directory.
    public static let fileName = "writer.lock"

    private let descriptor: Int32
    public let directory: String

    /// Creates `directory` when missing and takes its lock, before any store is opened in it.
    /// Throws, at once and without waiting, when another process holds it, naming that process.
    public init(directory: String) throws(StorageError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StorageError(.cannotOpen, "cannot create the data directory \(directory): \(Self.reason(error))")
        }
        let path = directory + "/" + Self.fileName
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StorageError(.cannotOpen, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            close(descriptor)
            guard failure == EWOULDBLOCK else {
                throw StorageError(.cannotOpen, "cannot lock \(path): \(String(cString: strerror(failure)))")
            }
            let holder = Self.holder(of: path).map { "process \($0)" } ?? "another process"
            throw StorageError(
                .cannotOpen,
                "\(directory) is in use by \(holder), which holds its writer lock (one serve or import per store); "
                    + "snapshot, check and export can read it meanwhile"
            )
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        self.descriptor = descriptor
        self.directory = directory
    }

    /// Releases the lock (the process exiting releases it too). Empties the file first, while the
    /// lock is still held, so that it never names a process that no longer holds it.
    public func release() {
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }

    /// The pid written in the lock file. A holder writes it right after taking the lock, so a
    /// process refused in between may find the file empty for a moment: it looks again briefly.
    private static func holder(of path: String) -> Int32? {
        for _ in 0..<50 {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return pid
            }
            usleep(2_000)
        }
        return nil
    }

    private static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error {
            let posix = underlying as NSError
            if posix.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(posix.code))) }
        }
        return error.localizedDescription
    }
}

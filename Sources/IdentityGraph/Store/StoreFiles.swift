#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file-system steps that make a data directory's changes survive a crash, shared by the index image
/// and a cluster join's local copy.
enum StoreFiles {
    /// Syncs `directory` itself, so that the files created, renamed or deleted in it stay so.
    static func syncDirectory(_ directory: String) throws(StorageError) {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageError(.cannotOpen, "cannot open \(directory): errno \(errno)") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StorageError(.unavailable, "cannot sync \(directory): errno \(errno)") }
    }

    /// Deletes `path`; one that is not there is no error.
    static func remove(_ path: String) throws(StorageError) {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw StorageError(.cannotOpen, "cannot remove \(path): errno \(errno)")
        }
    }
}

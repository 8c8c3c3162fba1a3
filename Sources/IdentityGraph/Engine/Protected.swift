import Foundation

/// A value that is only ever read or changed under its lock.
///
/// Used instead of the standard library's `Mutex` because its lock is built from atomics that
/// ThreadSanitizer does not see, so every access under it was reported as a race; a pthread mutex
/// (through `NSLock`) is understood by the sanitizer and costs the same here.
/// `@unchecked Sendable`: `value` is touched only inside `withLock`, while `lock` is held.
final class Protected<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

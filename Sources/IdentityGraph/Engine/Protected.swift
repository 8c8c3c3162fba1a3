import Foundation

/// A value that is only ever read or changed under its lock.
///
/// Used instead of the standard library's `Mutex` because its lock is built from atomics that
/// ThreadSanitizer does not see, so every access under it was reported as a race; a pthread mutex
/// (through `NSLock`) is understood by the sanitizer and costs the same here.
/// Sendable when its value is, as `NIOLockedValueBox` is: `value` is touched only inside `withLock`,
/// while `lock` is held, so only a value that may cross threads can be shared this way.
final class Protected<Value> {
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

extension Protected: @unchecked Sendable where Value: Sendable {}

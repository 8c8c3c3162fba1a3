import Dispatch
import IdentityGraph
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A libFuzzer target for the request path (SPEC.md sections 3 and 4). The checks are
// `RequestPathChecks.swift`, a symbolic link to the file `swift test` runs the committed corpus
// through (`Tests/IdentityGraphTests/FuzzCorpusTests.swift`); a violation is turned into a crash,
// which libFuzzer reports and saves.
//
// libFuzzer calls the entry point from one thread, one input at a time (-jobs and -fork run separate
// processes), so the checks' engine is never used concurrently.

/// The checks, with the engine every accepted request goes through, created once so that requests
/// meet the contacts of earlier ones, as they would on a server.
let checks = RequestPathChecks()

/// Runs one input through the request path and checks its properties; always returns 0, since
/// libFuzzer reserves other values.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // No copy: libFuzzer allocates exactly `size` bytes, so AddressSanitizer sees any read past them.
    let request: IdentifyRequest?
    do {
        request = try checks.checkDecoding(UnsafeRawBufferPointer(start: data, count: size))
    } catch {
        fatalError("\(error)")
    }
    guard let request else { return 0 }
    // Identify is async; libFuzzer's thread waits for it (it is no thread of Swift's task pool).
    let violation = Mutex<RequestPathViolation?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        do throws(RequestPathViolation) {
            try await checks.checkIdentify(request)
        } catch {
            violation.withLock { $0 = error }
        }
        done.signal()
    }
    done.wait()
    if let violation = violation.withLock({ $0 }) { fatalError("\(violation)") }
    return 0
}

// MARK: - Entry point

/// libFuzzer's driver (`FuzzerDriver.cpp`), declared here so that `main` can hand it the command line.
@_extern(c, "LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// The program's entry point, which starts libFuzzer's driver on `fuzzRequest`.
///
/// libFuzzer would bring its own `main`, but SwiftPM links every executable with `main` aliased to
/// `RequestFuzzer_main`, the renamed Swift entry point, so that symbol has to exist: this type
/// provides it and runs the same driver libFuzzer's `main` would.
@main
enum FuzzerEntry {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzRequest))
    }
}
